package command

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/procgroup"
)

// Cmd is a program to run. Name is looked up in PATH unless it contains a slash.
type Cmd struct {
	Name string
	Args []string
	// Env is added to the server's own environment.
	Env []string
}

// String formats the command as a shell would show it, for logs and errors.
func (c Cmd) String() string {
	return strings.Join(append([]string{c.Name}, c.Args...), " ")
}

// Runner runs programs. Exec is the real one; tests pass a fake that records the
// commands and plays their results.
type Runner interface {
	// Run runs c to completion and returns its combined output. When ctx ends first,
	// c's whole process group is killed and the error says so.
	Run(ctx context.Context, c Cmd) ([]byte, error)
	// Start starts c as a long-running helper.
	Start(c Cmd) (Process, error)
}

// Process is a started helper.
type Process interface {
	// Pid is the helper's process ID; its process group has the same ID.
	Pid() int
	// Done is closed when the helper has exited.
	Done() <-chan struct{}
	// Err is the helper's exit: nil for status 0. It is valid once Done is closed.
	Err() error
	// Signal sends sig to the helper's whole process group.
	Signal(sig syscall.Signal) error
}

// Exec runs programs on the host (in the server container).
type Exec struct {
	// KillGrace is how long Run waits for a killed command to be reaped; zero means
	// procgroup.DefaultKillGrace.
	KillGrace time.Duration
}

var _ Runner = Exec{}

// Run implements Runner, with procgroup: the command runs in its own process group,
// killed whole when ctx ends (a hung exportfs may have children that would keep the
// output pipe, and so this call, open forever).
func (e Exec) Run(ctx context.Context, c Cmd) ([]byte, error) {
	return procgroup.Run(ctx, procgroup.Options{KillGrace: e.KillGrace, Env: c.Env}, c.Name, c.Args...)
}

// Start implements Runner. The helper's stdout and stderr are logged line by line
// with the helper's name, so its messages land in the container log next to the
// server's own.
func (e Exec) Start(c Cmd) (Process, error) {
	cmd := exec.Command(c.Name, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A helper must not outlive its supervisor: in the container PID 1's exit
		// ends everything anyway, but in tests an orphaned NFS server would keep its
		// port and its state.
		Pdeathsig: syscall.SIGKILL,
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	p := &process{pid: cmd.Process.Pid, done: make(chan struct{})}
	name := baseName(c.Name)
	var relay sync.WaitGroup
	relay.Add(2)
	go logLines(&relay, stdout, name, p.pid, "stdout")
	go logLines(&relay, stderr, name, p.pid, "stderr")
	go func() {
		// Wait only after the pipes are drained, as os/exec requires.
		relay.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// process is a helper started by Exec; its Wait runs in Start's goroutine.
type process struct {
	pid  int
	done chan struct{}
	err  error
}

// Pid, Done, Err and Signal implement Process.
func (p *process) Pid() int              { return p.pid }
func (p *process) Done() <-chan struct{} { return p.done }
func (p *process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("still running")
	}
}
func (p *process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func logLines(wg *sync.WaitGroup, r io.Reader, helper string, pid int, stream string) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		klog.InfoS("Helper output", "helper", helper, "pid", pid, "stream", stream, "line", sc.Text())
	}
	// A read error means the pipe broke: drain the rest so the helper never blocks
	// on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

func baseName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// ErrKilled says a helper did not exit on SIGTERM before its deadline and was
// killed.
var ErrKilled = errors.New("it ignored SIGTERM and was killed")

// Stop ends p: SIGTERM to its process group, then SIGKILL when ctx ends before it
// exits. It returns p's exit error, or an error when even SIGKILL did not end it
// within killWait.
func Stop(ctx context.Context, p Process, name string, killWait time.Duration) error {
	select {
	case <-p.Done():
		return p.Err()
	default:
	}
	klog.InfoS("Stopping helper", "helper", name, "pid", p.Pid())
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: SIGTERM: %w", name, err)
	}
	select {
	case <-p.Done():
		return p.Err()
	case <-ctx.Done():
	}
	klog.InfoS("Helper did not stop in time, killing it", "helper", name, "pid", p.Pid())
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("stop %s: SIGKILL: %w", name, err)
	}
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-p.Done():
		return fmt.Errorf("stop %s: %w", name, ErrKilled)
	case <-t.C:
		return fmt.Errorf("stop %s: pid %d still runs %s after SIGKILL", name, p.Pid(), killWait)
	}
}

// ExitError describes how a helper exited, for errors that must say why the server
// gives up.
func ExitError(name string, p Process) error {
	err := p.Err()
	if err == nil {
		return fmt.Errorf("%s (pid %d) exited with status 0", name, p.Pid())
	}
	return fmt.Errorf("%s (pid %d) exited: %w", name, p.Pid(), err)
}
