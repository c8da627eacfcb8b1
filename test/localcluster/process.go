package localcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is a long-running binary of a test setup (a control-plane component, the
// driver, a sidecar), logging to a file and restartable with the same arguments.
type Process struct {
	name string
	path string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// NewProcess describes a process; Start runs it.
func NewProcess(name, path, log string, args ...string) *Process {
	return &Process{name: name, path: path, log: log, args: args}
}

// Name, Log and PID describe the process.
func (p *Process) Name() string { return p.name }

// Log is the file its output goes to.
func (p *Process) Log() string { return p.log }

// PID is the process ID of the running process, 0 when it is not running.
func (p *Process) PID() int {
	if !p.Running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Start starts the process.
func (p *Process) Start() error { return p.start() }

// Running reports whether the process has not exited.
func (p *Process) Running() bool { return p.running() }

// Stop sends SIGTERM and, after grace, SIGKILL.
func (p *Process) Stop(grace time.Duration) { p.stop(grace) }

// Kill kills the process group at once, as a crash or an OOM kill would.
func (p *Process) Kill() {
	if !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// ExitError explains a process that exited, with the end of its log.
func (p *Process) ExitError() error { return p.exitError() }

func (p *Process) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so stop takes its children too; and die with the test
	// process, so a crashed test leaves no control plane behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return nil
}

// running reports whether the process has not exited.
func (p *Process) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group and SIGKILL after grace.
func (p *Process) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// exitError explains a process that died, with the end of its log.
func (p *Process) exitError() error {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Errorf("%s exited (%s); end of %s:\n%s", p.name, p.cmd.ProcessState, filepath.Base(p.log), b)
}
