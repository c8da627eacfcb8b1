package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	roleApp    = "app"
	appSpecEnv = "PVNFS_LAB_APP"
)

// Modes of an application.
const (
	// ModeAppend appends a numbered line to File and fsyncs it, pausing Interval
	// between appends; a line is acknowledged once its fsync returned success.
	ModeAppend = "append"
	// ModeRead opens File once and reads it whole through that descriptor,
	// pausing Interval between reads: an open file held across whatever the
	// server goes through.
	ModeRead = "read"
	// ModeLoad writes File in 1 MiB blocks, each fsynced, as fast as it can (Interval
	// is the pause between blocks), wrapping around after 32 MiB: heavy synchronous
	// write load.
	ModeLoad = "load"
)

// loadBlock and loadSpan shape ModeLoad's writes.
const (
	loadBlock = 1 << 20
	loadSpan  = 32 << 20
)

// AppSpec is what an application does.
type AppSpec struct {
	Name     string
	Mode     string
	File     string
	Interval time.Duration
	// Reopen opens and closes the file for every append (ModeAppend); otherwise
	// one descriptor serves them all.
	Reopen bool
}

// AppEvent is one operation of an application, as it saw it.
type AppEvent struct {
	T    time.Time     `json:"t"`
	Seq  int           `json:"seq"`
	Err  string        `json:"err,omitempty"`
	Took time.Duration `json:"took"`
	Size int64         `json:"size,omitempty"`
}

// OK reports whether the operation succeeded.
func (e AppEvent) OK() bool { return e.Err == "" }

// App is an application process in a node's mount namespace, reading or writing
// through the node's mount like a pod does, recording every error it sees.
type App struct {
	Spec AppSpec

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	evs  []AppEvent
	wait error
}

// StartApp starts the application in node's namespaces.
func StartApp(ctx context.Context, node *Node, spec AppSpec) (*App, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(spec)
	a := &App{Spec: spec, done: make(chan struct{})}
	a.cmd = node.Command(self)
	a.cmd.Env = []string{roleEnv + "=" + roleApp, appSpecEnv + "=" + string(b)}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	a.cmd.Stderr = os.Stderr
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting app %s: %w", spec.Name, err)
	}
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e AppEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				a.mu.Lock()
				a.evs = append(a.evs, e)
				a.mu.Unlock()
			}
		}
		a.wait = a.cmd.Wait()
	}()
	return a, nil
}

// Events returns the operations so far.
func (a *App) Events() []AppEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AppEvent(nil), a.evs...)
}

// Errors returns the failed operations so far.
func (a *App) Errors() []AppEvent {
	var out []AppEvent
	for _, e := range a.Events() {
		if !e.OK() {
			out = append(out, e)
		}
	}
	return out
}

// Acked returns the sequence numbers of the appends that succeeded.
func (a *App) Acked() []int {
	var out []int
	for _, e := range a.Events() {
		if e.OK() {
			out = append(out, e.Seq)
		}
	}
	return out
}

// WaitOK waits for a successful operation that started after t, and returns it.
func (a *App) WaitOK(ctx context.Context, after time.Time) (AppEvent, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, e := range a.Events() {
			if e.OK() && e.T.After(after) {
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return AppEvent{}, fmt.Errorf("app %s: no successful operation since %s: %w", a.Spec.Name, after.Format(time.TimeOnly), ctx.Err())
		case <-a.done:
			return AppEvent{}, fmt.Errorf("app %s exited: %v", a.Spec.Name, a.wait)
		case <-tick.C:
		}
	}
}

// Stop asks the application to finish its operation in progress and exit, and
// kills it when it does not within timeout (an operation blocked on a server
// that never answers). A process that SIGKILL cannot end either (asleep in the
// kernel, uninterruptibly) is left behind after another timeout, with an error.
func (a *App) Stop(timeout time.Duration) error {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return a.wait
	case <-time.After(timeout):
	}
	if err := a.Kill(timeout); err != nil {
		return err
	}
	return fmt.Errorf("app %s did not stop within %s (an operation was blocked) and was killed", a.Spec.Name, timeout)
}

// Kill sends SIGKILL and waits up to timeout for the process to end.
func (a *App) Kill(timeout time.Duration) error {
	_ = a.cmd.Process.Kill()
	select {
	case <-a.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("app %s (pid %d) survived SIGKILL for %s: it sleeps in the kernel uninterruptibly", a.Spec.Name, a.cmd.Process.Pid, timeout)
	}
}

// PID is the application's process ID in the guest.
func (a *App) PID() int { return a.cmd.Process.Pid }

// Exited is closed when the application has exited.
func (a *App) Exited() <-chan struct{} { return a.done }

// runApp is the application process: it runs the spec's operation every
// Interval between operations until SIGTERM, writing one JSON event per operation to stdout.
func runApp(specJSON string) error {
	var s AppSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	enc := json.NewEncoder(os.Stdout)
	var op func(seq int) (int64, error)
	switch s.Mode {
	case ModeAppend:
		op = appender(s)
	case ModeRead:
		f, err := os.Open(s.File)
		if err != nil {
			return err
		}
		defer f.Close()
		op = func(int) (int64, error) { return readAll(f) }
	case ModeLoad:
		f, err := os.OpenFile(s.File, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		block := make([]byte, loadBlock)
		op = func(seq int) (int64, error) {
			off := int64(seq-1) * loadBlock % loadSpan
			if _, err := f.WriteAt(block, off); err != nil {
				return 0, err
			}
			return loadBlock, f.Sync()
		}
	default:
		return fmt.Errorf("unknown mode %q", s.Mode)
	}
	for seq := 1; ; seq++ {
		start := time.Now()
		size, err := op(seq)
		e := AppEvent{T: start, Seq: seq, Took: time.Since(start), Size: size}
		if err != nil {
			e.Err = err.Error()
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-time.After(s.Interval):
		}
	}
}

// appender returns the append operation: open (once, or every time), write one
// line, fsync, close. The error names the step that failed.
func appender(s AppSpec) func(int) (int64, error) {
	var held *os.File
	return func(seq int) (int64, error) {
		f := held
		if f == nil {
			var err error
			if f, err = os.OpenFile(s.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
				return 0, err
			}
			if !s.Reopen {
				held = f
			}
		}
		line := s.Name + " " + strconv.Itoa(seq) + "\n"
		_, err := f.WriteString(line)
		if err == nil {
			if err = f.Sync(); err != nil {
				err = fmt.Errorf("fsync: %w", err)
			}
		}
		if s.Reopen {
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("close: %w", cerr)
			}
		}
		return int64(len(line)), err
	}
}

func readAll(f *os.File) (int64, error) {
	var n int64
	buf := make([]byte, 64*1024)
	for {
		m, err := f.ReadAt(buf, n)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
