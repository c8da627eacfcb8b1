package procgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		cmd      []string
		wantOut  string
		wantCode int // 0: success
		wantErr  bool
	}{
		{name: "success returns the output", cmd: []string{"sh", "-c", "echo mounted"}, wantOut: "mounted\n"},
		{name: "failure keeps exit status and stderr", cmd: []string{"sh", "-c", "echo 'mount.nfs: access denied by server' >&2; exit 32"},
			wantOut: "mount.nfs: access denied by server\n", wantCode: 32, wantErr: true},
		{name: "missing helper is a start error", cmd: []string{"/nonexistent/mount.nfs"}, wantCode: -1, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := Run(ctx, Options{KillGrace: time.Second}, tc.cmd[0], tc.cmd[1:]...)
			if string(out) != tc.wantOut {
				t.Errorf("output = %q, want %q", out, tc.wantOut)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			var he *Error
			if !errors.As(err, &he) {
				t.Fatalf("err = %T %v, want *Error", err, err)
			}
			if he.ExitCode != tc.wantCode || he.Killed {
				t.Errorf("ExitCode = %d, Killed = %v; want %d, false", he.ExitCode, he.Killed, tc.wantCode)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a helper that failed on its own must not look timed out: %v", err)
			}
		})
	}
}

// TestRunKillsWholeProcessGroupAtDeadline runs a helper that hangs the way
// mount.nfs does behind mount(8): a parent waiting for a child. At the deadline
// both must be gone, not just the parent.
func TestRunKillsWholeProcessGroupAtDeadline(t *testing.T) {
	tests := []struct {
		name     string
		deadline bool // false: ctx without deadline, DefaultTimeout applies
	}{
		{name: "ctx deadline", deadline: true},
		{name: "default timeout when ctx has none", deadline: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "child.pid")
			opts := Options{KillGrace: 5 * time.Second, DefaultTimeout: 300 * time.Millisecond}
			ctx := context.Background()
			if tc.deadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
			}
			_, err := Run(ctx, opts, "sh", "-c", `sleep 300 & echo $! > "$1"; wait`, "hung-mount-helper", pidFile)
			var he *Error
			if !errors.As(err, &he) || !he.Killed {
				t.Fatalf("err = %v, want a killed *Error", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
			}
			if !strings.Contains(err.Error(), "killed its process group") {
				t.Errorf("message %q does not say the group was killed", err)
			}
			b, rerr := os.ReadFile(pidFile)
			if rerr != nil {
				t.Fatalf("the helper did not start its child: %v", rerr)
			}
			child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if child <= 0 {
				t.Fatalf("bad child pid %q", b)
			}
			waitGone(t, child)
		})
	}
}

// waitGone waits until pid has exited (gone, or a zombie nobody reaped yet: the
// orphaned child is reparented to a PID 1 that may not reap).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if processGone(pid) {
			return
		}
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Signal(syscall.SIGKILL)
	}
	t.Fatalf("child process %d of the killed helper is still running: its process group was not killed", pid)
}

func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func TestRunAddsEnvironment(t *testing.T) {
	out, err := Run(context.Background(), Options{Env: []string{"PVNFS_TEST=yes"}}, "sh", "-c", "echo $PVNFS_TEST")
	if err != nil || string(out) != "yes\n" {
		t.Errorf("Run = %q, %v", out, err)
	}
}
