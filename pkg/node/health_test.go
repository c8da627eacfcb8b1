package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	testingclock "k8s.io/utils/clock/testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		want      health
		wantKnown bool
	}{
		{name: "answer", err: nil, want: healthy, wantKnown: true},
		{name: "timeout", err: &NotRespondingError{Path: "/p", After: time.Second}, want: notResponding, wantKnown: true},
		{name: "ESTALE", err: fmt.Errorf("statfs: %w", unix.ESTALE), want: stale, wantKnown: true},
		{name: "EIO", err: unix.EIO, want: stale, wantKnown: true},
		{name: "ENOTCONN", err: unix.ENOTCONN, want: stale, wantKnown: true},
		{name: "EACCES is no mount problem", err: unix.EACCES, wantKnown: false},
		{name: "ENOENT is no mount problem", err: unix.ENOENT, wantKnown: false},
		{name: "caller gave up", err: context.Canceled, wantKnown: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, known := classify(tc.err)
			if known != tc.wantKnown || (known && got != tc.want) {
				t.Errorf("classify(%v) = %v, %v; want %v, %v", tc.err, got, known, tc.want, tc.wantKnown)
			}
		})
	}
}

func TestCheckerPassesAnswersThrough(t *testing.T) {
	tests := []struct {
		name   string
		answer error
	}{
		{name: "healthy", answer: nil},
		{name: "stale", answer: unix.ESTALE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker(func(string) (unix.Statfs_t, error) { return unix.Statfs_t{Blocks: 7}, tc.answer }, time.Minute, testingclock.NewFakeClock(time.Now()))
			st, err := c.check(context.Background(), "/p")
			if !errors.Is(err, tc.answer) || err != nil && tc.answer == nil {
				t.Errorf("err = %v, want %v", err, tc.answer)
			}
			if st.Blocks != 7 {
				t.Errorf("statfs result lost: %+v", st)
			}
		})
	}
}

// TestCheckerOneStatfsPerPathWhileHung: a statfs that never returns (a hard NFS
// mount of a dead server) costs one goroutine per path, however many checks come.
func TestCheckerOneStatfsPerPathWhileHung(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	statfs := func(path string) (unix.Statfs_t, error) {
		calls.Add(1)
		<-release
		return unix.Statfs_t{Blocks: 1}, nil
	}
	clk := testingclock.NewFakeClock(time.Now())
	c := newChecker(statfs, 5*time.Second, clk)
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { _, err := c.check(ctx, "/staging"); first <- err }()
	waitUntil(t, clk.HasWaiters)
	clk.Step(5 * time.Second)
	var nr *NotRespondingError
	if err := <-first; !errors.As(err, &nr) || nr.After != 5*time.Second || nr.Path != "/staging" {
		t.Fatalf("first check = %v, want not responding after 5s", err)
	}

	clk.Step(time.Minute)
	for i := range 50 {
		_, err := c.check(ctx, "/staging")
		if !errors.As(err, &nr) {
			t.Fatalf("check %d = %v, want not responding at once", i, err)
		}
	}
	if nr.After != 65*time.Second {
		t.Errorf("later checks report %s, want the age of the hung statfs (1m5s)", nr.After)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("statfs ran %d times while hung, want 1", got)
	}
	if got := c.inFlight(); got != 1 {
		t.Errorf("%d statfs in flight, want 1", got)
	}

	close(release)
	waitUntil(t, func() bool { return c.inFlight() == 0 })
	if _, err := c.check(ctx, "/staging"); err != nil {
		t.Errorf("check after the server answered again: %v", err)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("statfs ran %d times, want a fresh one after recovery (2)", got)
	}
}

// TestCheckerJoinsRecentStatfs: a check that arrives while a young statfs is in
// flight waits for the rest of that one's time, and gets its answer.
func TestCheckerJoinsRecentStatfs(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	clk := testingclock.NewFakeClock(time.Now())
	c := newChecker(func(string) (unix.Statfs_t, error) { calls.Add(1); <-release; return unix.Statfs_t{}, unix.ESTALE }, 5*time.Second, clk)
	results := make(chan error, 2)
	go func() { _, err := c.check(context.Background(), "/p"); results <- err }()
	waitUntil(t, clk.HasWaiters)
	clk.Step(2 * time.Second)
	go func() { _, err := c.check(context.Background(), "/p"); results <- err }()
	waitUntil(t, func() bool { return clk.Waiters() == 2 })
	close(release)
	for range 2 {
		if err := <-results; !errors.Is(err, unix.ESTALE) {
			t.Errorf("check = %v, want the shared ESTALE answer", err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("statfs ran %d times, want 1", calls.Load())
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached in 10s")
}
