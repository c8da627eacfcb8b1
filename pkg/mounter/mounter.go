package mounter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	"k8s.io/mount-utils"
)

// Interface is everything the node service does to and asks of mounts. It is small
// so that the NFS leg alone can be stood in for (package standin) while bind mounts,
// unmounts and the mount table stay real.
type Interface interface {
	// Mount mounts source at target as fstype with options: the NFS leg
	// ("10.96.0.10:/data/export", "nfs4"). The caller bounds it with ctx.
	Mount(ctx context.Context, source, target, fstype string, options []string) error
	// Bind bind-mounts source at target, read-only when readOnly. A bind that
	// cannot be made read-only is undone, never left writable.
	Bind(ctx context.Context, source, target string, readOnly bool) error
	// Unmount runs one unmount of target with the given mode. A target that is not
	// mounted is not an error.
	Unmount(ctx context.Context, target string, mode UnmountMode) error
	// List returns the mount table of the caller's mount namespace.
	List() ([]MountPoint, error)
	// Statfs asks the filesystem at path for its usage. On NFS it is a round trip
	// to the server (stat can be answered from the attribute cache), so it is also
	// the health check: it fails with ESTALE or EIO on a stale mount and blocks
	// while the server does not answer. Callers must bound it (package node runs
	// it in a goroutine with a deadline).
	Statfs(path string) (unix.Statfs_t, error)
}

// UnmountMode says how hard one Unmount tries.
type UnmountMode int

const (
	// UnmountNormal is plain umount: detaches the mount, fails while it is busy.
	UnmountNormal UnmountMode = iota
	// UnmountForce is umount -f. For NFS it aborts every pending request of the
	// superblock, so every other mount of the same export (the pods' bind mounts)
	// sees EIO for its requests in flight.
	UnmountForce
	// UnmountLazy is umount -l: detaches the mount from the tree at once and frees
	// it when its last user is gone. It needs no answer from the server.
	UnmountLazy
)

// String is the command the mode runs, for logs and messages.
func (m UnmountMode) String() string {
	switch m {
	case UnmountNormal:
		return "umount"
	case UnmountForce:
		return "umount -f"
	case UnmountLazy:
		return "umount -l"
	}
	return fmt.Sprintf("UnmountMode(%d)", int(m))
}

// MountPoint is one line of mountinfo, with escapes (\040 for a space) decoded.
type MountPoint struct {
	// ID is the mount's unique ID; it tells stacked mounts at one path apart.
	ID int
	// Path is the mount point.
	Path string
	// Root is the directory of the filesystem the mount shows. A bind mount of a
	// subdirectory shows the subdirectory here; a bind mount of a directory that
	// was deleted ends in "//deleted".
	Root string
	// Device is the "major:minor" of the filesystem (for NFS, an anonymous
	// device per superblock).
	Device string
	// FSType is the filesystem type ("nfs4").
	FSType string
	// Source is the mount source ("10.96.0.10:/data/export" for NFS).
	Source string
	// Options are the per-mount options ("ro", "nosuid", ...).
	Options []string
}

// ReadOnly reports whether the mount is read-only.
func (m MountPoint) ReadOnly() bool {
	for _, o := range m.Options {
		if o == "ro" {
			return true
		}
	}
	return false
}

// SameTree reports whether m and o show the same directory of the same
// filesystem, as a bind mount and the mount it was made from do. It is how the
// node tells a pod's bind mount of a volume from a mount of anything else without
// keeping any record of its own.
func (m MountPoint) SameTree(o MountPoint) bool {
	return m.Device == o.Device && m.Root == o.Root
}

// Mounter is the real Interface: mount(8) and umount(8) through a Runner, the
// mount table from mountinfo, statfs(2).
type Mounter struct {
	runner        Runner
	mountInfoPath string
	// undoTimeout bounds the unmount that undoes a bind that could not be made
	// read-only.
	undoTimeout time.Duration
}

var _ Interface = &Mounter{}

// New returns a Mounter that runs its helpers with runner and reads the mount table
// of the calling process.
func New(runner Runner) *Mounter {
	return &Mounter{runner: runner, mountInfoPath: "/proc/self/mountinfo", undoTimeout: 10 * time.Second}
}

// Mount implements Interface with mount -t fstype -o options source target. The
// path is not passed through -c: mount.nfs needs it canonicalized and the target
// is a local directory.
func (m *Mounter) Mount(ctx context.Context, source, target, fstype string, options []string) error {
	args := mount.MakeMountArgs(source, target, fstype, options)
	_, err := m.runner.Run(ctx, "mount", args...)
	return err
}

// Bind implements Interface: mount --bind, then a read-only remount (a bind mount
// ignores "ro" on its first mount call on older kernels and mount(8) versions, so
// the remount is explicit). -c keeps mount(8) from stat-ing the source, which is an
// NFS mount point and could hang.
func (m *Mounter) Bind(ctx context.Context, source, target string, readOnly bool) error {
	if _, err := m.runner.Run(ctx, "mount", "-c", "--bind", source, target); err != nil {
		return err
	}
	if !readOnly {
		return nil
	}
	if _, err := m.runner.Run(ctx, "mount", "-c", "-o", "remount,bind,ro", target); err != nil {
		undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.undoTimeout)
		defer cancel()
		if uerr := m.Unmount(undo, target, UnmountLazy); uerr != nil {
			klog.ErrorS(uerr, "Cannot undo a bind mount that could not be made read-only; it is writable", "target", target)
			return fmt.Errorf("making the bind mount at %s read-only: %w (and undoing it failed: %v)", target, err, uerr)
		}
		return fmt.Errorf("making the bind mount at %s read-only (undone): %w", target, err)
	}
	return nil
}

// Unmount implements Interface with umount -c -i [-f|-l]: -c because stat-ing a
// dead NFS mount point hangs, -i because NFSv4 needs no umount.nfs helper (it
// would only canonicalize the path and call umount(2) too).
func (m *Mounter) Unmount(ctx context.Context, target string, mode UnmountMode) error {
	args := []string{"-c", "-i"}
	switch mode {
	case UnmountForce:
		args = append(args, "-f")
	case UnmountLazy:
		args = append(args, "-l")
	}
	args = append(args, target)
	_, err := m.runner.Run(ctx, "umount", args...)
	if IsNotMounted(err) {
		return nil
	}
	return err
}

// List implements Interface.
func (m *Mounter) List() ([]MountPoint, error) { return ReadMountInfo(m.mountInfoPath) }

// Statfs implements Interface with statfs(2).
func (m *Mounter) Statfs(path string) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	return st, err
}

// ReadMountInfo parses a mountinfo file (/proc/<pid>/mountinfo) with mount-utils.
func ReadMountInfo(path string) ([]MountPoint, error) {
	infos, err := mount.ParseMountInfo(path)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table %s: %w", path, err)
	}
	out := make([]MountPoint, 0, len(infos))
	for _, mi := range infos {
		out = append(out, MountPoint{
			ID:      mi.ID,
			Path:    unescape(mi.MountPoint),
			Root:    unescape(mi.Root),
			Device:  fmt.Sprintf("%d:%d", mi.Major, mi.Minor),
			FSType:  mi.FsType,
			Source:  unescape(mi.Source),
			Options: mi.MountOptions,
		})
	}
	return out, nil
}

// unescape decodes the octal escapes the kernel writes in mountinfo for space,
// tab, newline and backslash (mount-utils leaves them as they are).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// IsNotMounted reports whether err is umount's "not mounted": the goal of an
// unmount is reached.
func IsNotMounted(err error) bool {
	var he *HelperError
	return errors.As(err, &he) && !he.Killed && strings.Contains(he.Output, "not mounted")
}

// IsProtocolNotSupported reports whether a mount failed because the server does
// not speak the requested NFS version: mount.nfs prints "Protocol not supported"
// (EPROTONOSUPPORT, from NFS4ERR_MINOR_VERS_MISMATCH), older versions "requested
// NFS version or transport protocol is not supported". The node then tries the
// next older version.
func IsProtocolNotSupported(err error) bool {
	var he *HelperError
	if !errors.As(err, &he) || he.Killed {
		return false
	}
	out := strings.ToLower(he.Output)
	return strings.Contains(out, "protocol not supported") ||
		strings.Contains(out, "version or transport protocol is not supported")
}
