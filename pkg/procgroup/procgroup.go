// Package procgroup runs helper programs (mount, umount, exportfs, ...) to
// completion with a deadline, each in its own process group, and kills the whole
// group when the deadline passes. Killing only the direct child is not enough: mount
// forks mount.nfs, and a surviving grandchild keeps retrying against a dead server
// and holds the output pipe — and the caller — open. Every helper the node plugin
// and the NFS server run to completion goes through here.
//
// It knows nothing of what the helpers do; callers classify their errors.
package procgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// Defaults for Options left zero.
const (
	DefaultTimeout   = 2 * time.Minute
	DefaultKillGrace = 5 * time.Second
)

// Options tune Run.
type Options struct {
	// DefaultTimeout bounds a helper whose ctx has no deadline: nothing may block
	// forever. Zero means DefaultTimeout.
	DefaultTimeout time.Duration
	// KillGrace is how long Run waits for a killed group to be reaped. A process
	// stuck in an uninterruptible kernel wait ignores SIGKILL; Run then returns
	// anyway and leaves it behind (logged) rather than hang its caller. Zero means
	// DefaultKillGrace.
	KillGrace time.Duration
	// Env is added to the caller's environment.
	Env []string
}

// Error is a helper that did not succeed. It unwraps to the context's error when
// the helper was killed at its deadline, so errors.Is(err, context.DeadlineExceeded)
// tells a hung helper from one that failed.
type Error struct {
	// Command is the command line, for messages.
	Command string
	// Output is what the helper wrote to stdout and stderr, trimmed.
	Output string
	// ExitCode is the helper's exit status, or -1 when it did not exit on its own.
	ExitCode int
	// Killed is set when the helper ran past its deadline and its process group
	// was killed.
	Killed bool
	// After is how long the helper ran before it was killed.
	After time.Duration
	// Err is the underlying error: an *exec.ExitError, a start error, or the
	// context's error when Killed.
	Err error
}

// Error says which helper failed and how, with its output: what a user needs to
// act on it.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", e.Command)
	switch {
	case e.Killed:
		fmt.Fprintf(&b, "no result after %s (%v); killed its process group", e.After.Round(time.Millisecond), e.Err)
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, "exit status %d", e.ExitCode)
	default:
		fmt.Fprintf(&b, "%v", e.Err)
	}
	if e.Output != "" {
		fmt.Fprintf(&b, ": %s", e.Output)
	}
	return b.String()
}

// Unwrap returns the underlying error, so that errors.Is sees a deadline.
func (e *Error) Unwrap() error { return e.Err }

// Run runs name with args in a new process group and returns its combined output.
// When ctx ends first, the whole group gets SIGKILL. A helper that exits non-zero,
// cannot start or is killed returns an *Error.
func Run(ctx context.Context, o Options, name string, args ...string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		timeout := o.DefaultTimeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	grace := o.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	command := strings.Join(append([]string{name}, args...), " ")
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A helper must not outlive the process that waits for it. (Pdeathsig
		// follows the thread that started the child; the Go runtime does not end
		// threads of goroutines that are not locked to them.)
		Pdeathsig: syscall.SIGKILL,
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// A grandchild that escaped the group could hold the output pipe open after
	// the helper exited; do not wait for it longer than this.
	cmd.WaitDelay = grace

	start := time.Now()
	klog.V(4).InfoS("Running helper", "command", command)
	if err := cmd.Start(); err != nil {
		return nil, &Error{Command: command, ExitCode: -1, Err: err}
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	select {
	case err := <-done:
		output := out.Bytes()
		klog.V(4).InfoS("Helper finished", "command", command, "duration", time.Since(start), "err", err)
		if err == nil {
			return output, nil
		}
		e := &Error{Command: command, Output: strings.TrimSpace(string(output)), ExitCode: -1, Err: err}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			e.ExitCode = exitErr.ExitCode()
		}
		return output, e
	case <-ctx.Done():
	}

	after := time.Since(start)
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		klog.ErrorS(err, "Cannot kill the process group of a helper past its deadline", "command", command, "pgid", pgid)
	}
	select {
	case <-done:
	case <-time.After(grace):
		klog.ErrorS(nil, "Helper did not exit after SIGKILL (stuck in the kernel?); leaving it behind", "command", command, "pgid", pgid)
	}
	klog.V(2).InfoS("Killed helper at its deadline", "command", command, "pgid", pgid, "after", after)
	return out.Bytes(), &Error{
		Command: command, Output: strings.TrimSpace(string(out.Bytes())), ExitCode: -1,
		Killed: true, After: after, Err: ctx.Err(),
	}
}

// syncBuffer is a bytes.Buffer safe for the copying goroutine of an abandoned
// helper writing while Run reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer for the helper's output.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written so far.
func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
