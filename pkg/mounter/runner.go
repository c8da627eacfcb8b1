package mounter

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

// Runner runs a mount helper to completion, or until ctx is done. It exists so that
// tests can see and replace every helper the node runs.
type Runner interface {
	// Run runs name with args and returns its combined output. A helper that exits
	// non-zero, cannot start or is killed returns a *HelperError.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// HelperError is a mount helper that did not succeed. It unwraps to the context's
// error when the helper was killed at its deadline, so errors.Is(err,
// context.DeadlineExceeded) tells a hung helper from one that failed.
type HelperError struct {
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

// Error says which helper failed and how, with its output: what a user needs
// to fix the mount.
func (e *HelperError) Error() string {
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
func (e *HelperError) Unwrap() error { return e.Err }

// ExecRunner runs helpers as child processes, each in a new process group
// (Setpgid), and kills the whole group with SIGKILL when ctx is done. Killing only
// the direct child is not enough: mount(8) forks mount.nfs, and a surviving
// mount.nfs keeps retrying against the dead server, holding the mount point busy.
type ExecRunner struct {
	// DefaultTimeout bounds a helper whose ctx has no deadline: nothing the node
	// runs may block forever.
	DefaultTimeout time.Duration
	// KillGrace is how long Run waits for a killed group to be reaped. A process
	// stuck in an uninterruptible kernel wait ignores SIGKILL; Run then returns
	// anyway and leaves it behind (logged), rather than hang the CSI call.
	KillGrace time.Duration
}

// NewExecRunner returns an ExecRunner with production defaults.
func NewExecRunner() *ExecRunner {
	return &ExecRunner{DefaultTimeout: 2 * time.Minute, KillGrace: 5 * time.Second}
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

// Run implements Runner.
func (r *ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		timeout := r.DefaultTimeout
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	command := strings.Join(append([]string{name}, args...), " ")
	cmd := exec.Command(name, args...)
	// English messages: callers classify some of them (mount.nfs's "Protocol not
	// supported", umount's "not mounted").
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A helper must not outlive the plugin that waits for it. (Pdeathsig
		// follows the thread that started the child; the Go runtime does not end
		// threads of goroutines that are not locked to them.)
		Pdeathsig: syscall.SIGKILL,
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// A grandchild that escaped the group could hold the output pipe open after
	// the helper exited; do not wait for it longer than this.
	cmd.WaitDelay = r.grace()

	start := time.Now()
	klog.V(4).InfoS("Running mount helper", "command", command)
	if err := cmd.Start(); err != nil {
		return nil, &HelperError{Command: command, ExitCode: -1, Err: err}
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	select {
	case err := <-done:
		output := out.Bytes()
		klog.V(4).InfoS("Mount helper finished", "command", command, "duration", time.Since(start), "err", err)
		if err == nil {
			return output, nil
		}
		he := &HelperError{Command: command, Output: strings.TrimSpace(string(output)), ExitCode: -1, Err: err}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			he.ExitCode = exitErr.ExitCode()
		}
		return output, he
	case <-ctx.Done():
	}

	after := time.Since(start)
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		klog.ErrorS(err, "Cannot kill the process group of a mount helper past its deadline", "command", command, "pgid", pgid)
	}
	select {
	case <-done:
	case <-time.After(r.grace()):
		klog.ErrorS(nil, "Mount helper did not exit after SIGKILL (stuck in the kernel?); leaving it behind", "command", command, "pgid", pgid)
	}
	klog.V(2).InfoS("Killed mount helper at its deadline", "command", command, "pgid", pgid, "after", after)
	return out.Bytes(), &HelperError{
		Command: command, Output: strings.TrimSpace(string(out.Bytes())), ExitCode: -1,
		Killed: true, After: after, Err: ctx.Err(),
	}
}

func (r *ExecRunner) grace() time.Duration {
	if r.KillGrace > 0 {
		return r.KillGrace
	}
	return 5 * time.Second
}
