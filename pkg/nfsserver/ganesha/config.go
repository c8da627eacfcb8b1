package ganesha

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// Limits of Ganesha 4.3's configuration (ganesha-core-config(8)): values beyond them
// make Ganesha refuse to start. They are part of the settings' rules
// (serverconfig.Validate), so the controller refuses them from the StorageClass
// and the server from its flags, with the same check CheckSettings applies.
const (
	MaxLeaseSeconds = serverconfig.GaneshaMaxLeaseSeconds
	MaxGraceSeconds = serverconfig.GaneshaMaxGraceSeconds
)

// ExportID is the Export_Id of the volume's export. 0 is the pseudo root.
const ExportID = 1

// AnonymousID is the uid and gid squashed users get: nobody and nogroup, what the
// kernel server uses, so that switching engines changes nothing clients see.
const AnonymousID = 65534

// RecoverySubdir is the directory below the state directory that is Ganesha's
// RecoveryRoot: its client records (v4recov/, v4old/) live on the backend volume.
const RecoverySubdir = "ganesha"

// File names in the run directory.
const (
	configName  = "ganesha.conf"
	dbusConf    = "dbus.conf"
	socketName  = "dbus.sock"
	pidFileName = "ganesha.pid"
)

// CheckSettings refuses settings Ganesha cannot serve.
func CheckSettings(s engine.Settings) error {
	// Whatever --engine said: these are the settings Ganesha is about to be given.
	errs := []error{serverconfig.CheckEngineLimits(serverconfig.EngineGanesha, s.LeaseSeconds, s.GraceSeconds)}
	for _, p := range []string{s.ExportDir, s.StateDir} {
		if strings.ContainsAny(p, "\"\\\n;{}") {
			errs = append(errs, fmt.Errorf("path %q: Ganesha's configuration cannot hold quotes, backslashes, newlines, ';' or braces", p))
		}
	}
	return errors.Join(errs...)
}

// Config returns ganesha.conf for s, with Ganesha's scratch files in runDir. Every
// block states why it is as it is; the generated file is the documentation an
// operator reads in the pod.
func Config(s engine.Settings, runDir string) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Written by pvnfs-server for volume %s; rewritten at every start.", s.VolumeID)
	w("NFS_CORE_PARAM {")
	w("\t# NFSv4 only: no MOUNT, NLM, RQUOTA or UDP listeners, so only the NFS port is opened.")
	w("\tProtocols = 4;")
	w("\tNFS_Port = %d;", s.NFSPort)
	if s.BindAddress != "" {
		w("\tBind_addr = %s;", s.BindAddress)
	}
	w("\tEnable_NLM = false;")
	w("\tEnable_RQUOTA = false;")
	w("\tEnable_UDP = false;")
	w("\t# --threads: the most RPC worker threads Ganesha runs at once.")
	w("\tRPC_Ioq_ThrdMax = %d;", s.Threads)
	w("\t# Per-operation counters for /metrics.")
	w("\tEnable_FULLV4_Stats = true;")
	w("}")
	w("NFS_KRB5 {")
	w("\t# AUTH_SYS only: no keytab in the pod. The callback credential cache goes to the")
	w("\t# writable run directory, as the root filesystem is read-only.")
	w("\tActive_krb5 = false;")
	w("\tCCacheDir = \"%s\";", runDir)
	w("}")
	w("NFSv4 {")
	w("\t# Client records on the backend volume: they follow it to another node, so clients reclaim their state.")
	w("\tRecoveryBackend = fs;")
	w("\tRecoveryRoot = \"%s\";", filepath.Join(s.StateDir, RecoverySubdir))
	w("\tLease_Lifetime = %d;", s.LeaseSeconds)
	w("\tGrace_Period = %d;", s.GraceSeconds)
	w("\tMinor_Versions = %s;", joinInts(s.MinorVersions))
	w("\t# Owners as numbers, as the kernel server sends them for AUTH_SYS: names would need the same ID mapping domain on every node, or files show up owned by nobody.")
	w("\tAllow_Numeric_Owners = true;")
	w("\tOnly_Numeric_Owners = true;")
	w("\t# Fixed server scope and owner: NFSv4.1 clients reclaim only from a server whose scope did not change, and the pod's hostname does.")
	w("\tServer_Scope = \"%s\";", s.ServerName)
	w("\tServer_Owner = \"%s\";", s.ServerName)
	w("}")
	w("EXPORT {")
	w("\tExport_Id = %d;", ExportID)
	w("\tPath = \"%s\";", s.ExportDir)
	w("\t# Clients mount the same path as with the kernel engine.")
	w("\tPseudo = \"%s\";", s.ExportDir)
	if len(s.ClientNetworks) > 0 {
		w("\t# --clients: only these networks may use the export (the CLIENT block below); every other address is refused.")
		w("\tAccess_Type = None;")
	} else {
		w("\tAccess_Type = RW;")
	}
	if s.RootSquash {
		w("\tSquash = Root_Squash;")
	} else {
		w("\tSquash = No_Root_Squash;")
	}
	w("\t# Squashed users become nobody (65534), as with the kernel server; Ganesha's own default is 4294967294.")
	w("\tAnonymous_uid = %d;", AnonymousID)
	w("\tAnonymous_gid = %d;", AnonymousID)
	w("\tProtocols = 4;")
	w("\tTransports = TCP;")
	w("\tSecType = sys;")
	w("\t# Derived from the volume ID: the same on every node and after every restart.")
	w("\tFilesystem_id = %d.%d;", s.FSIDMajor, s.FSIDMinor)
	if len(s.ClientNetworks) > 0 {
		nets := make([]string, len(s.ClientNetworks))
		for i, c := range s.ClientNetworks {
			nets[i] = c.String()
		}
		w("\tCLIENT {")
		w("\t\tClients = %s;", strings.Join(nets, ", "))
		w("\t\tAccess_Type = RW;")
		w("\t}")
	}
	w("\tFSAL {")
	w("\t\tName = VFS;")
	w("\t}")
	w("}")
	return []byte(b.String())
}

// DBusConfig returns the configuration of the private bus: one socket in the run
// directory, root only, on which Ganesha may own its name.
func DBusConfig(runDir string) []byte {
	return []byte(fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Written by pvnfs-server: a private bus for NFS-Ganesha's statistics. -->
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny user="*"/>
    <allow user="root"/>
    <allow own="org.ganesha.nfsd"/>
    <allow send_destination="*" eavesdrop="false"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`, filepath.Join(runDir, socketName)))
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
