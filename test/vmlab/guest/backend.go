package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pvnfs/pvnfs/pkg/mounter"
)

// BackendSpec describes a backend volume.
type BackendSpec struct {
	SizeMiB int
	// Delay, when set, puts the device behind dm-delay with these delays, which
	// SetDelay changes later.
	Delay *Delay
}

// Delay is the latency of a slow device: every read and write takes ReadWrite,
// every cache flush (each fsync's) Flush. Network block storage under load.
type Delay struct {
	ReadWrite, Flush time.Duration
}

// Backend is a volume's RWO backend: ext4 on a loop device over a sparse file in
// the lab's tmpfs (behind a dm-delay device when the spec asks for latency),
// mounted at MountPath in the guest's root mount namespace, where the kubelet
// mounts a pod's volumes; the server pod gets a bind of it.
type Backend struct {
	Name      string
	File      string
	Loop      string
	Device    string
	MountPath string

	sectors int
}

// NewBackend creates, formats and mounts a backend.
func NewBackend(ctx context.Context, name string, spec BackendSpec) (*Backend, error) {
	b := &Backend{
		Name:      name,
		File:      filepath.Join(WorkDir, "backends", name+".img"),
		MountPath: filepath.Join(WorkDir, "volumes", name),
	}
	if err := os.MkdirAll(filepath.Dir(b.File), 0o755); err != nil {
		return nil, err
	}
	if _, err := Run(ctx, "truncate", "-s", strconv.Itoa(spec.SizeMiB)+"M", b.File); err != nil {
		return nil, err
	}
	loop, err := Run(ctx, "losetup", "--find", "--show", b.File)
	if err != nil {
		return nil, err
	}
	b.Loop, b.Device = loop, loop
	// Inode tables and journal written now (and before any latency is added):
	// the kernel's lazy initialization would otherwise compete with the tests for
	// the guest's one emulated CPU.
	if _, err := Run(ctx, "mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", loop); err != nil {
		return nil, err
	}
	b.sectors = spec.SizeMiB * 2048 // of 512 bytes
	if spec.Delay != nil {
		if _, err := Run(ctx, "dmsetup", "create", name, "--noudevsync", "--table", b.delayTable(*spec.Delay)); err != nil {
			return nil, err
		}
		// No udev here: dmsetup makes the device node itself.
		if _, err := Run(ctx, "dmsetup", "mknodes", name); err != nil {
			return nil, err
		}
		b.Device = "/dev/mapper/" + name
	}
	return b, b.Mount(ctx)
}

func (b *Backend) delayTable(d Delay) string {
	rw := d.ReadWrite.Milliseconds()
	return fmt.Sprintf("0 %d delay %s 0 %d %s 0 %d %s 0 %d", b.sectors, b.Loop, rw, b.Loop, rw, b.Loop, d.Flush.Milliseconds())
}

// SetDelay changes the delays of a backend made with one, online: I/O in flight
// finishes, new I/O gets the new delays.
func (b *Backend) SetDelay(ctx context.Context, d Delay) error {
	if b.Device == b.Loop {
		return errors.New("the backend was made without a delay device")
	}
	if _, err := Run(ctx, "dmsetup", "reload", b.Name, "--table", b.delayTable(d)); err != nil {
		return err
	}
	_, err := Run(ctx, "dmsetup", "resume", "--noudevsync", b.Name)
	return err
}

// Mount mounts the backend at MountPath.
func (b *Backend) Mount(ctx context.Context) error {
	if err := os.MkdirAll(b.MountPath, 0o755); err != nil {
		return err
	}
	_, err := Run(ctx, "mount", "-t", "ext4", b.Device, b.MountPath)
	return err
}

// Unmount unmounts MountPath, as the kubelet does once the server pod is gone.
func (b *Backend) Unmount(ctx context.Context) error {
	_, err := Run(ctx, "umount", b.MountPath)
	return err
}

// Claimed reports whether anything still holds the device: a mounted filesystem
// (in any namespace, or kept alive by the kernel after its last mount went)
// claims its block device exclusively. A device that nothing claims can be
// detached and attached to another node safely.
func (b *Backend) Claimed() (bool, error) {
	fd, err := unix.Open(b.Device, unix.O_RDONLY|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s O_EXCL: %w", b.Device, err)
	}
	return false, unix.Close(fd)
}

// Grow enlarges the device to sizeMiB and the mounted filesystem with it, online,
// as the backend's CSI driver does on ControllerExpand and NodeExpand.
func (b *Backend) Grow(ctx context.Context, sizeMiB int) error {
	if b.Device != b.Loop {
		return errors.New("growing a backend behind a delay device is not supported")
	}
	if _, err := Run(ctx, "truncate", "-s", strconv.Itoa(sizeMiB)+"M", b.File); err != nil {
		return err
	}
	if _, err := Run(ctx, "losetup", "-c", b.Loop); err != nil {
		return err
	}
	_, err := Run(ctx, "resize2fs", b.Device)
	return err
}

// Statfs returns the mounted filesystem's statfs.
func (b *Backend) Statfs() (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := unix.Statfs(b.MountPath, &st)
	return st, err
}

// Remove unmounts the backend (when mounted), detaches the loop device and
// deletes its file.
func (b *Backend) Remove(ctx context.Context) error {
	var errs []error
	if mounted, _ := isMountPoint(b.MountPath); mounted {
		errs = append(errs, b.Unmount(ctx))
	}
	if b.Device != b.Loop {
		if _, err := Run(ctx, "dmsetup", "remove", "--noudevsync", b.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := Run(ctx, "losetup", "-d", b.Loop); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, os.Remove(b.File))
	return errors.Join(errs...)
}

// isMountPoint reports whether path is a mount point in this mount namespace.
func isMountPoint(path string) (bool, error) {
	table, err := mounter.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	_, found := mounter.FindMount(table, path)
	return found, nil
}
