package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/pvnfs/pvnfs/pkg/parameters"
)

// ServerRuntime is what the server container needs from its pod for one engine:
// part of the pod's shape, which the controller decides (buildDeployment), next to
// resources, placement and probes. The VM lab runs its server pods with it too, so
// that what it proves holds for the privileges the controller grants.
type ServerRuntime struct {
	// SecurityContext of the server container.
	SecurityContext *corev1.SecurityContext
	// Volumes and Mounts the engine needs besides the backend volume.
	Volumes []corev1.Volume
	Mounts  []corev1.VolumeMount
}

// Scratch directories of the Ganesha server container, whose root filesystem is
// read-only.
const (
	// GaneshaRunDir holds the generated ganesha.conf and dbus.conf, the private
	// D-Bus socket and the pid file (pvnfs-server's --run-dir default).
	GaneshaRunDir = "/run/pvnfs"
	// GaneshaTmpDir is /tmp, where ganesha.nfsd creates a file at start to test
	// whether the kernel has OFD locks; without it, it falls back to process-wide
	// POSIX locks, which mix up the locks of different NFS clients.
	GaneshaTmpDir = "/tmp"
)

// GaneshaCapabilities returns the only capabilities the Ganesha server container keeps,
// each for a reason (docs/security.md, "Server pods"):
//   - DAC_READ_SEARCH: Ganesha's VFS backend opens files by handle
//     (open_by_handle_at), which the kernel allows only with it.
//   - SETUID, SETGID: Ganesha switches its filesystem uid, gid and groups to each
//     request's client credentials, so the kernel checks permissions as for a
//     local user.
//   - CHOWN, DAC_OVERRIDE, FOWNER, FSETID: what root may do to files; Ganesha
//     needs them to act for client root when the export does not squash root,
//     and pvnfs-server needs CHOWN and FOWNER for the export root's owner and mode.
//
// Left out on purpose: NET_BIND_SERVICE (the NFS port 2049 is above 1023),
// SYS_RESOURCE (Ganesha drops it itself), MKNOD (clients cannot create device
// nodes on the share), and everything else of the container runtime's defaults.
func GaneshaCapabilities() []corev1.Capability {
	return []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "SETGID", "SETUID"}
}

// ServerRuntimeFor returns the container runtime needs of an engine.
func ServerRuntimeFor(engine string) ServerRuntime {
	if engine == parameters.EngineGanesha {
		// Userspace: no privileged mode, no new privileges, a read-only root
		// filesystem with two small scratch directories, and only the capabilities
		// above. Root (uid 0) is needed to hold them and to switch to client
		// credentials.
		return ServerRuntime{
			SecurityContext: &corev1.SecurityContext{
				Privileged:               ptr(false),
				AllowPrivilegeEscalation: ptr(false),
				RunAsUser:                ptr(int64(0)),
				RunAsNonRoot:             ptr(false),
				ReadOnlyRootFilesystem:   ptr(true),
				Capabilities: &corev1.Capabilities{
					Drop: []corev1.Capability{"ALL"},
					Add:  GaneshaCapabilities(),
				},
				// The runtime's default seccomp profile allows open_by_handle_at to
				// holders of DAC_READ_SEARCH.
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: []corev1.Volume{
				scratchVolume("ganesha-run", "16Mi"),
				scratchVolume("ganesha-tmp", "16Mi"),
			},
			Mounts: []corev1.VolumeMount{
				{Name: "ganesha-run", MountPath: GaneshaRunDir},
				{Name: "ganesha-tmp", MountPath: GaneshaTmpDir},
			},
		}
	}
	// The kernel server runs in the kernel: pvnfs-server mounts the nfsd and
	// rpc_pipefs filesystems, configures nfsd through them, and rpc.mountd answers
	// nfsd's upcalls through /proc/net/rpc. Container runtimes mask /proc/fs and
	// refuse mounts without CAP_SYS_ADMIN, so it takes a privileged container;
	// nothing more (no host network, no host paths).
	return ServerRuntime{SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)}}
}

// scratchVolume is a size-limited emptyDir: a runaway log or core file fills it,
// not the node's disk.
func scratchVolume(name, size string) corev1.Volume {
	limit := resource.MustParse(size)
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &limit}}}
}
