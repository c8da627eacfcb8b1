package command

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExecRun(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Cmd
		timeout time.Duration
		wantOut string
		wantErr string
	}{
		{name: "output and success", cmd: Cmd{Name: "sh", Args: []string{"-c", "echo out; echo err >&2"}},
			timeout: 5 * time.Second, wantOut: "out\nerr\n"},
		{name: "environment is added", cmd: Cmd{Name: "sh", Args: []string{"-c", "echo $PVNFS_TEST"}, Env: []string{"PVNFS_TEST=yes"}},
			timeout: 5 * time.Second, wantOut: "yes\n"},
		{name: "exit status", cmd: Cmd{Name: "sh", Args: []string{"-c", "exit 3"}},
			timeout: 5 * time.Second, wantErr: "exit status 3"},
		{name: "missing program", cmd: Cmd{Name: "pvnfs-no-such-program"},
			timeout: 5 * time.Second, wantErr: "executable file not found"},
		// That the child is killed with the group is procgroup's test.
		{name: "deadline kills the process group", cmd: Cmd{Name: "sh", Args: []string{"-c", "sleep 30 & sleep 30"}},
			timeout: 300 * time.Millisecond, wantErr: "killed its process group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			out, err := Exec{}.Run(ctx, tc.cmd)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Run() = %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Run() = %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.wantOut != "" && string(out) != tc.wantOut {
				t.Errorf("output = %q, want %q", out, tc.wantOut)
			}
		})
	}
}

func TestStartAndStop(t *testing.T) {
	tests := []struct {
		name string
		// trap runs before the helper says it is ready, so SIGTERM never arrives
		// before the helper's handling of it is in place; body after.
		trap, body string
		wantErr    string // from Stop
	}{
		{name: "exits on SIGTERM", trap: "trap 'exit 0' TERM", body: "while :; do sleep 0.05; done"},
		{name: "dies of SIGTERM", trap: ":", body: "exec sleep 30", wantErr: "signal: terminated"},
		{name: "ignores SIGTERM and is killed", trap: "trap '' TERM", body: "while :; do sleep 0.05; done",
			wantErr: "ignored SIGTERM and was killed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ready := filepath.Join(dir, "ready")
			p, err := Exec{}.Start(Cmd{Name: "sh", Args: []string{"-c", tc.trap + "; touch " + ready + "; " + tc.body}})
			if err != nil {
				t.Fatal(err)
			}
			waitFile(t, ready)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err = Stop(ctx, p, "test-helper", 5*time.Second)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Stop() = %v, want %q", err, tc.wantErr)
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("process still runs after Stop")
			}
			if err := syscall.Kill(p.Pid(), 0); err == nil {
				t.Error("process still exists after Stop")
			}
		})
	}
}

func TestGroupReportsOnlyUnexpectedExits(t *testing.T) {
	dir := t.TempDir()
	g := NewGroup(Exec{}, 5*time.Second)
	die, ready := filepath.Join(dir, "die"), filepath.Join(dir, "steady-ready")
	if _, err := g.Start("steady", Cmd{Name: "sh", Args: []string{"-c", "trap 'exit 0' TERM; touch " + ready + "; while :; do sleep 0.05; done"}}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, ready) // its SIGTERM handling is in place before Stop sends one
	if _, err := g.Start("fragile", Cmd{Name: "sh", Args: []string{"-c", "while [ ! -e " + die + " ]; do sleep 0.05; done; exit 7"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Exited():
		t.Fatal("reported an exit before any helper exited")
	case <-time.After(200 * time.Millisecond):
	}
	if err := os.WriteFile(die, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the exit of fragile was not reported")
	}
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "fragile") || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("Err() = %v, want fragile's exit status 7", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.Stop(ctx); err != nil && !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("Stop() = %v", err)
	}
	if p := g.Process("steady"); p == nil || p.Err() != nil {
		t.Errorf("steady: %v, want a clean exit on SIGTERM", p)
	}
	if _, err := g.Start("late", Cmd{Name: "true"}); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
}

// A helper that ignores SIGTERM is killed within its share of the deadline, so
// the helper stopped after it still gets the time to exit cleanly, and the stop
// as a whole succeeds.
func TestGroupStopSharesTheDeadline(t *testing.T) {
	dir := t.TempDir()
	g := NewGroup(Exec{}, 5*time.Second)
	slowReady, stuckReady := filepath.Join(dir, "slow-ready"), filepath.Join(dir, "stuck-ready")
	// slow exits on SIGTERM after a short cleanup; stuck (started last, so
	// stopped first) never does.
	if _, err := g.Start("slow", Cmd{Name: "sh", Args: []string{"-c", "trap 'sleep 0.3; exit 0' TERM; touch " + slowReady + "; while :; do sleep 0.05; done"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Start("stuck", Cmd{Name: "sh", Args: []string{"-c", "trap '' TERM; touch " + stuckReady + "; while :; do sleep 0.05; done"}}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, slowReady)
	waitFile(t, stuckReady)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v, want success: every helper ended within the deadline", err)
	}
	if p := g.Process("slow"); p == nil || p.Err() != nil {
		t.Errorf("slow: %v, want a clean exit on SIGTERM within its share of the deadline", p.Err())
	}
	if p := g.Process("stuck"); p == nil || p.Err() == nil {
		t.Error("stuck exited cleanly, want it killed")
	}
}
