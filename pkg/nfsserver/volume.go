package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// probeFile is the file the backend write probe rewrites in the state directory.
const probeFile = "health-probe"

// remedyVolume is what to do when the backend volume is not usable.
const remedyVolume = "check that the backend PVC is bound and mounted at --volume-root " +
	"(the server Deployment's volumeMounts) and that its filesystem is writable by root"

// prepareVolume lays out the backend volume: the export directory and the state
// directory below the volume root, so that clients never see lost+found or the
// server's state, and the export root's owner and mode when asked. Only the export
// root itself is changed, never the tree below it: a recursive walk on every start
// would take minutes on a large volume and override what applications set.
func prepareVolume(ctx context.Context, c serverconfig.Config) error {
	// Directory operations on hung storage block in the kernel; the deadline lets
	// the server fail with a message instead of hanging with it.
	done := make(chan error, 1)
	go func() { done <- layoutVolume(c) }()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return engine.Fail("prepare the backend volume",
			fmt.Errorf("%s did not answer before the deadline", c.VolumeRoot), "the backend storage may be hung: "+remedyVolume)
	}
	if err := writeProbe(ctx, c.StateDir()); err != nil {
		return engine.Fail("check the backend volume is writable", err, remedyVolume)
	}
	return nil
}

// layoutVolume creates the directories and applies the export root's owner and mode.
func layoutVolume(c serverconfig.Config) error {
	root := c.VolumeRoot
	st, err := os.Stat(root)
	if err != nil {
		return engine.Fail("prepare the backend volume", err, remedyVolume)
	}
	if !st.IsDir() {
		return engine.Fail("prepare the backend volume", fmt.Errorf("%s is not a directory", root), remedyVolume)
	}
	if parent, err := os.Stat(filepath.Dir(filepath.Clean(root))); err == nil && sameDevice(st, parent) {
		// Not fatal (tests use a plain directory), but in a pod it means the data
		// would go to the container's disk and vanish with it.
		klog.ErrorS(nil, "The volume root is not a mount point: is the backend volume mounted?", "volumeRoot", root)
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{c.ExportDir(), 0o755}, {c.StateDir(), 0o700}} {
		if err := mkdir(d.path, d.mode); err != nil {
			return engine.Fail("prepare the backend volume", err, remedyVolume)
		}
	}
	if err := applyOwner(c.ExportDir(), c.ExportOwner); err != nil {
		return engine.Fail("set the export root's owner", err, "the server container needs CAP_CHOWN")
	}
	if err := applyMode(c.ExportDir(), c.ExportMode); err != nil {
		return engine.Fail("set the export root's mode", err, "the server container needs CAP_FOWNER")
	}
	return nil
}

func sameDevice(a, b os.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev == sb.Dev
}

func mkdir(path string, mode os.FileMode) error {
	err := os.Mkdir(path, mode)
	if err == nil {
		klog.InfoS("Directory created", "path", path, "mode", fmt.Sprintf("%04o", mode))
		return nil
	}
	if errors.Is(err, os.ErrExist) {
		if st, serr := os.Stat(path); serr == nil && !st.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", path)
		}
		return nil
	}
	return err
}

// applyOwner sets the export root's owner when it differs.
func applyOwner(path string, owner *serverconfig.Owner) error {
	if owner == nil {
		return nil
	}
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int64(sys.Uid) == owner.UID && int64(sys.Gid) == owner.GID {
		return nil
	}
	if err := os.Lchown(path, int(owner.UID), int(owner.GID)); err != nil {
		return err
	}
	klog.InfoS("Export root owner changed", "path", path, "from", fmt.Sprintf("%d:%d", sys.Uid, sys.Gid), "to", owner.String())
	return nil
}

// applyMode sets the export root's permission bits (setgid and sticky included)
// when they differ.
func applyMode(path string, mode *serverconfig.Mode) error {
	if mode == nil {
		return nil
	}
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	have := serverconfig.Mode(st.Sys().(*syscall.Stat_t).Mode & 0o7777)
	if have == *mode {
		return nil
	}
	// syscall.Chmod takes the raw bits, setgid and sticky included, which
	// os.FileMode spells differently.
	if err := syscall.Chmod(path, uint32(*mode)); err != nil {
		return &os.PathError{Op: "chmod", Path: path, Err: err}
	}
	klog.InfoS("Export root mode changed", "path", path, "from", have.String(), "to", mode.String())
	return nil
}

// writeProbe rewrites a small file in the state directory and syncs it, before ctx
// ends.
func writeProbe(ctx context.Context, stateDir string) error {
	done := make(chan error, 1)
	go func() { done <- writeSync(filepath.Join(stateDir, probeFile)) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("a write to %s did not complete before the deadline: the backend storage may be hung", stateDir)
	}
}

func writeSync(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeProber runs the backend write probe for the health loop. A write stuck in
// the kernel cannot be cancelled; the prober never starts a second one beside it,
// and reports the stuck one until it returns.
//
// Slow is not hung. Under heavy synchronous load on slow storage one fsync can
// take seconds (it waits for the journal commit of everyone's writes); failing
// the check then would have the kubelet restart a server that is merely busy, and
// a restart cannot make storage faster but costs every client a grace period. The
// check fails only once a write has been blocked for hungAfter.
type writeProber struct {
	dir       string
	hungAfter time.Duration
	// write is writeSync; tests replace it.
	write func(path string) error

	mu       sync.Mutex
	inFlight bool
	since    time.Time
}

func newWriteProber(dir string, hungAfter time.Duration) *writeProber {
	return &writeProber{dir: dir, hungAfter: hungAfter, write: writeSync}
}

// probe returns nil when the volume took a synced write, or when the write has
// not finished yet but has been in flight for less than hungAfter. A full volume
// (ENOSPC, EDQUOT) counts as healthy: a restart cannot free space, and reads
// still work.
func (p *writeProber) probe(ctx context.Context) error {
	p.mu.Lock()
	if p.inFlight {
		since := p.since
		p.mu.Unlock()
		return p.slowOrHung(since)
	}
	p.inFlight, p.since = true, time.Now()
	since := p.since
	p.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		err := p.write(filepath.Join(p.dir, probeFile))
		p.mu.Lock()
		p.inFlight = false
		p.mu.Unlock()
		if d := time.Since(since); d > p.hungAfter/4 {
			klog.InfoS("A write to the backend volume was slow", "duration", d.Round(time.Millisecond), "err", err)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			klog.ErrorS(err, "The backend volume is full: clients' writes fail until space is freed or the volume is expanded")
			return nil
		}
		return err
	case <-ctx.Done():
		return p.slowOrHung(since)
	}
}

// slowOrHung judges a write in flight since since.
func (p *writeProber) slowOrHung(since time.Time) error {
	d := time.Since(since)
	if d < p.hungAfter {
		klog.V(2).InfoS("A write to the backend volume is still in flight; slow storage, not yet hung", "for", d.Round(time.Millisecond), "hungAfter", p.hungAfter)
		return nil
	}
	return fmt.Errorf("a write to the backend volume has been blocked since %s (%s): the storage is hung", since.Format(time.RFC3339), d.Round(time.Second))
}
