package mounter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Fake is an in-memory Interface for unit tests of the node's decisions (error
// codes, idempotency, which unmount steps run): it changes no real mount. Each
// Mount gets a new device, as each NFS mount gets its own superblock; a Bind copies
// its source's device and root, as a real bind mount does. Tests that need real
// mounts use Mounter with package standin instead.
//
// The hooks are set by a test before it uses the Fake.
type Fake struct {
	// MountHook, when set, runs first in Mount; an error fails the mount. It may
	// block until ctx is done, like a hung mount.nfs.
	MountHook func(ctx context.Context, source, target string, options []string) error
	// UnmountHook, when set, runs first in Unmount; an error fails that step and
	// leaves the mount in place.
	UnmountHook func(ctx context.Context, target string, mode UnmountMode) error
	// StatfsHook, when set, answers Statfs; by default every path is healthy.
	StatfsHook func(path string) (unix.Statfs_t, error)

	mu     sync.Mutex
	mounts []MountPoint
	nextID int
	calls  []string
}

var _ Interface = &Fake{}

// Mount implements Interface.
func (f *Fake) Mount(ctx context.Context, source, target, fstype string, options []string) error {
	f.record("mount -t %s -o %s %s %s", fstype, strings.Join(options, ","), source, target)
	if f.MountHook != nil {
		if err := f.MountHook(ctx, source, target, options); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	opts := []string{"rw"}
	if slices.Contains(options, "ro") {
		opts = []string{"ro"}
	}
	f.mounts = append(f.mounts, MountPoint{
		ID: f.nextID, Path: target, Root: "/", Device: fmt.Sprintf("0:%d", 100+f.nextID),
		FSType: fstype, Source: source, Options: opts,
	})
	return nil
}

// Bind implements Interface. Binding a path that is not a mount point shows it as a
// directory of a local disk ("8:1").
func (f *Fake) Bind(_ context.Context, source, target string, readOnly bool) error {
	f.record("mount --bind %s %s (ro=%v)", source, target, readOnly)
	f.mu.Lock()
	defer f.mu.Unlock()
	src, ok := FindMount(f.mounts, source)
	if !ok {
		src = MountPoint{Device: "8:1", Root: source, FSType: "ext4", Source: "/dev/sda1"}
	}
	f.nextID++
	m := src
	m.ID, m.Path, m.Options = f.nextID, target, []string{"rw"}
	if readOnly {
		m.Options = []string{"ro"}
	}
	f.mounts = append(f.mounts, m)
	return nil
}

// Unmount implements Interface: it removes the topmost mount at target.
func (f *Fake) Unmount(ctx context.Context, target string, mode UnmountMode) error {
	f.record("%s %s", mode, target)
	if f.UnmountHook != nil {
		if err := f.UnmountHook(ctx, target, mode); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.mounts) - 1; i >= 0; i-- {
		if f.mounts[i].Path == target {
			f.mounts = slices.Delete(f.mounts, i, i+1)
			return nil
		}
	}
	return nil
}

// List implements Interface.
func (f *Fake) List() ([]MountPoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.mounts), nil
}

// Statfs implements Interface.
func (f *Fake) Statfs(path string) (unix.Statfs_t, error) {
	if f.StatfsHook != nil {
		return f.StatfsHook(path)
	}
	return unix.Statfs_t{Bsize: 4096, Frsize: 4096, Blocks: 1000, Bfree: 600, Bavail: 500, Files: 100, Ffree: 90}, nil
}

// Add puts m in the table as it is, e.g. to stand for mounts a previous instance
// of the plugin made. A zero ID gets the next one.
func (f *Fake) Add(m MountPoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	if m.ID == 0 {
		m.ID = f.nextID
	}
	f.mounts = append(f.mounts, m)
}

// Calls returns what was asked of the Fake, in order, one line per call.
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *Fake) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}
