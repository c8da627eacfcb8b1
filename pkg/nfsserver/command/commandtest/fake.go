package commandtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
)

// Fake is a command.Runner that runs nothing.
type Fake struct {
	mu    sync.Mutex
	calls []string
	procs []*Proc
	pid   int

	// OnRun plays the result of Run for a program (by name, e.g. "exportfs"). A
	// program without an entry succeeds with no output.
	OnRun map[string]func(c command.Cmd) ([]byte, error)
	// OnStart lets a test fail a helper's start or prepare its fake /proc entries.
	// A program without an entry starts.
	OnStart map[string]func(c command.Cmd, p *Proc) error
}

var _ command.Runner = (*Fake)(nil)

// New returns a Fake whose processes get IDs from firstPid on.
func New(firstPid int) *Fake {
	return &Fake{pid: firstPid - 1, OnRun: map[string]func(command.Cmd) ([]byte, error){},
		OnStart: map[string]func(command.Cmd, *Proc) error{}}
}

// Run implements command.Runner.
func (f *Fake) Run(ctx context.Context, c command.Cmd) ([]byte, error) {
	f.record("run", c)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: killed after its deadline: %w", c, err)
	}
	f.mu.Lock()
	play := f.OnRun[c.Name]
	f.mu.Unlock()
	if play == nil {
		return nil, nil
	}
	return play(c)
}

// Start implements command.Runner.
func (f *Fake) Start(c command.Cmd) (command.Process, error) {
	f.record("start", c)
	f.mu.Lock()
	f.pid++
	p := &Proc{Cmd: c, pid: f.pid, done: make(chan struct{}), ExitOnTerm: true}
	hook := f.OnStart[c.Name]
	f.mu.Unlock()
	if hook != nil {
		if err := hook(c, p); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	return p, nil
}

func (f *Fake) record(kind string, c command.Cmd) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := kind + " " + c.String()
	if len(c.Env) > 0 {
		s += " [env " + strings.Join(c.Env, " ") + "]"
	}
	f.calls = append(f.calls, s)
}

// Calls returns every command so far, as "run <command>" or "start <command>".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Procs returns every process started so far.
func (f *Fake) Procs() []*Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Proc(nil), f.procs...)
}

// Proc returns the last started process of a program, or nil.
func (f *Fake) Proc(name string) *Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.procs) - 1; i >= 0; i-- {
		if f.procs[i].Cmd.Name == name {
			return f.procs[i]
		}
	}
	return nil
}

// Proc is a fake helper process.
type Proc struct {
	// Cmd is the command it was started with.
	Cmd command.Cmd
	// ExitOnTerm makes SIGTERM end the process with status 0, as a well-behaved
	// daemon does; false makes it ignore SIGTERM, so only SIGKILL ends it.
	ExitOnTerm bool

	pid  int
	mu   sync.Mutex
	sigs []syscall.Signal
	done chan struct{}
	err  error
	once sync.Once
}

var _ command.Process = (*Proc)(nil)

// Pid implements command.Process.
func (p *Proc) Pid() int { return p.pid }

// Done implements command.Process.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err implements command.Process.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("still running")
	}
}

// Signal implements command.Process.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	p.sigs = append(p.sigs, sig)
	exitOnTerm := p.ExitOnTerm
	p.mu.Unlock()
	switch {
	case sig == syscall.SIGKILL:
		p.Exit(errors.New("signal: killed"))
	case sig == syscall.SIGTERM && exitOnTerm:
		p.Exit(nil)
	}
	return nil
}

// Signals returns the signals the process received.
func (p *Proc) Signals() []syscall.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]syscall.Signal(nil), p.sigs...)
}

// Exit ends the process with err (nil for status 0), as if it died on its own.
func (p *Proc) Exit(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
