package command

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// Group supervises the helpers of one NFS server: it reports the first helper that
// exits on its own, because the server cannot work without any of them, and stops
// them all in reverse start order.
type Group struct {
	runner   Runner
	killWait time.Duration

	mu       sync.Mutex
	helpers  []helper
	stopping bool

	exited   chan struct{}
	exitOnce sync.Once
	exitErr  error
}

type helper struct {
	name string
	p    Process
}

// NewGroup returns a Group that starts helpers with r. killWait bounds the wait for
// a helper to die after SIGKILL.
func NewGroup(r Runner, killWait time.Duration) *Group {
	return &Group{runner: r, killWait: killWait, exited: make(chan struct{})}
}

// Start starts a helper and watches it.
func (g *Group) Start(name string, c Cmd) (Process, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return nil, fmt.Errorf("start %s: the server is stopping", name)
	}
	klog.InfoS("Starting helper", "helper", name, "command", c.String())
	p, err := g.runner.Start(c)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	klog.InfoS("Helper started", "helper", name, "pid", p.Pid())
	g.helpers = append(g.helpers, helper{name: name, p: p})
	go g.watch(name, p)
	return p, nil
}

func (g *Group) watch(name string, p Process) {
	<-p.Done()
	g.mu.Lock()
	stopping := g.stopping
	g.mu.Unlock()
	if stopping {
		klog.InfoS("Helper exited", "helper", name, "pid", p.Pid(), "err", p.Err())
		return
	}
	err := ExitError(name, p)
	klog.ErrorS(err, "Helper exited on its own", "helper", name, "pid", p.Pid())
	g.exitOnce.Do(func() {
		g.exitErr = err
		close(g.exited)
	})
}

// Exited is closed when a helper exits without being asked to.
func (g *Group) Exited() <-chan struct{} { return g.exited }

// Err names the helper that exited on its own, once Exited is closed.
func (g *Group) Err() error {
	select {
	case <-g.exited:
		return g.exitErr
	default:
		return nil
	}
}

// Process returns the last started helper of that name, or nil.
func (g *Group) Process(name string) Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.helpers) - 1; i >= 0; i-- {
		if g.helpers[i].name == name {
			return g.helpers[i].p
		}
	}
	return nil
}

// Stop stops every helper, the last started first, each with SIGTERM and, once
// its share of ctx's time is over, SIGKILL. Each helper gets an equal share of
// what is left, so one that hangs on its way out (rpc.mountd has been seen to
// print its goodbye and then not exit for 18 s under load) cannot use up the
// deadline and leave the helpers after it no time at all. Helpers that exit from
// now on are not reported as failures.
//
// A helper that had to be killed is logged, not returned: the engine stops its
// NFS service before its helpers, so nothing a client was told is lost with
// them, and a graceful stop that ended everything within its deadline is a
// clean one.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	g.stopping = true
	helpers := append([]helper(nil), g.helpers...)
	g.mu.Unlock()
	var errs []error
	for i := len(helpers) - 1; i >= 0; i-- {
		h := helpers[i]
		hctx, cancel := shareOf(ctx, i+1)
		err := Stop(hctx, h.p, h.name, g.killWait)
		cancel()
		switch {
		case err == nil, expectedStopError(err):
		case errors.Is(err, ErrKilled):
			klog.ErrorS(err, "Helper had to be killed; the NFS service had already stopped, so no client state is lost", "helper", h.name, "pid", h.p.Pid())
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// shareOf returns a context that ends after 1/n of the time left before ctx's
// deadline (or with ctx, when it has none).
func shareOf(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || n <= 1 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Until(deadline)/time.Duration(n))
}

// expectedStopError tells a helper that died of our SIGTERM (many daemons do not
// catch it) from one that failed while stopping.
func expectedStopError(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ((ws.Signaled() && ws.Signal() == syscall.SIGTERM) ||
		(ws.Exited() && ws.ExitStatus() == 128+int(syscall.SIGTERM)))
}
