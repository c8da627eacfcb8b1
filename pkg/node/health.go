package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// health is what a check found out about a mount.
type health int

const (
	// healthy: the server answered.
	healthy health = iota
	// stale: the server answered that it no longer knows the export (ESTALE) or
	// the mount failed hard (EIO); only a new mount helps.
	stale
	// notResponding: no answer within the stat timeout. On a hard mount requests
	// wait until the server is back.
	notResponding
)

// String names the health in logs.
func (h health) String() string {
	switch h {
	case healthy:
		return "healthy"
	case stale:
		return "stale"
	case notResponding:
		return "not responding"
	}
	return fmt.Sprintf("health(%d)", int(h))
}

// NotRespondingError is a health check that got no answer in time.
type NotRespondingError struct {
	// Path is the mount that was checked.
	Path string
	// After is how long the check has been waiting.
	After time.Duration
}

// Error names the path and how long it has not answered.
func (e *NotRespondingError) Error() string {
	return fmt.Sprintf("statfs %s: no answer after %s", e.Path, e.After.Round(time.Millisecond))
}

// classify tells what a check's error means: nil is healthy, a timeout is not
// responding, ESTALE, EIO and a lost connection are stale. Anything else (ENOENT,
// EACCES) is not a mount problem a remount fixes; the caller reports it.
func classify(err error) (health, bool) {
	var nr *NotRespondingError
	switch {
	case err == nil:
		return healthy, true
	case errors.As(err, &nr):
		return notResponding, true
	case errors.Is(err, unix.ESTALE), errors.Is(err, unix.EIO), errors.Is(err, unix.ENOTCONN), errors.Is(err, unix.EHOSTDOWN):
		return stale, true
	}
	return healthy, false
}

// checker runs statfs with a deadline. statfs on a hard NFS mount of a dead server
// blocks in the kernel and cannot be cancelled, so it runs in a goroutine that is
// abandoned at the deadline. At most one such goroutine exists per path: a check
// of a path whose previous statfs has not returned waits for that one instead of
// starting another, and when that one is already older than the timeout, the
// answer is "not responding" at once.
type checker struct {
	statfs  func(string) (unix.Statfs_t, error)
	timeout time.Duration
	clock   clock.Clock

	mu     sync.Mutex
	probes map[string]*probe
}

type probe struct {
	started time.Time
	done    chan struct{}
	st      unix.Statfs_t
	err     error
}

func newChecker(statfs func(string) (unix.Statfs_t, error), timeout time.Duration, c clock.Clock) *checker {
	return &checker{statfs: statfs, timeout: timeout, clock: c, probes: map[string]*probe{}}
}

// check returns statfs of path, or a *NotRespondingError when it does not return
// within the timeout, or ctx's error.
func (c *checker) check(ctx context.Context, path string) (unix.Statfs_t, error) {
	c.mu.Lock()
	p, running := c.probes[path]
	if !running {
		p = &probe{started: c.clock.Now(), done: make(chan struct{})}
		c.probes[path] = p
		go c.run(path, p)
	}
	c.mu.Unlock()

	wait := c.timeout - c.clock.Since(p.started)
	if running {
		klog.V(4).InfoS("Health check joins the one in flight", "path", path, "runningFor", c.clock.Since(p.started))
	}
	if wait <= 0 {
		select {
		case <-p.done:
			return p.st, p.err
		default:
			return unix.Statfs_t{}, &NotRespondingError{Path: path, After: c.clock.Since(p.started)}
		}
	}
	timer := c.clock.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.st, p.err
	case <-timer.C():
		// The timer was set to fire when the statfs reached the timeout.
		return unix.Statfs_t{}, &NotRespondingError{Path: path, After: c.timeout}
	case <-ctx.Done():
		return unix.Statfs_t{}, ctx.Err()
	}
}

func (c *checker) run(path string, p *probe) {
	p.st, p.err = c.statfs(path)
	c.mu.Lock()
	if c.probes[path] == p {
		delete(c.probes, path)
	}
	c.mu.Unlock()
	close(p.done)
	if d := c.clock.Since(p.started); d > c.timeout {
		klog.V(2).InfoS("Health check returned after its deadline", "path", path, "duration", d, "err", p.err)
	}
}

// inFlight is how many statfs calls have not returned, for tests.
func (c *checker) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.probes)
}
