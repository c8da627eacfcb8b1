//go:build vmlab

package guest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// workload is the applications of a restart or failover test: writers that
// open, append, fsync and close (every open and every fsync exercises the
// server), one writer that holds its file open, and one reader of a file opened
// before the event.
type workload struct {
	apps []*guest.App
}

// startWorkload starts the applications in node n, on files in dir (a path in
// the node) named after the node and the application, and waits until each has
// succeeded once.
func startWorkload(t *testing.T, ctx context.Context, n *guest.Node, dir string, writers int) *workload {
	t.Helper()
	held := n.Name + "-held.txt"
	if err := os.WriteFile(filepath.Join(n.Path(dir), held), []byte("opened before the event\n"), 0o644); err != nil {
		t.Fatalf("writing the reader's file: %v", err)
	}
	w := &workload{}
	specs := []guest.AppSpec{{Name: n.Name + "-reader", Mode: guest.ModeRead, File: filepath.Join(dir, held), Interval: 50 * time.Millisecond}}
	for i := 1; i <= writers; i++ {
		name := fmt.Sprintf("%s-writer%d", n.Name, i)
		specs = append(specs, guest.AppSpec{Name: name, Mode: guest.ModeAppend, File: filepath.Join(dir, name), Interval: 10 * time.Millisecond, Reopen: true})
	}
	name := n.Name + "-holder"
	specs = append(specs, guest.AppSpec{Name: name, Mode: guest.ModeAppend, File: filepath.Join(dir, name), Interval: 10 * time.Millisecond})
	start := time.Now()
	for _, s := range specs {
		a, err := guest.StartApp(ctx, n, s)
		if err != nil {
			t.Fatal(err)
		}
		w.apps = append(w.apps, a)
	}
	t.Cleanup(func() { w.stop(t) })
	for _, a := range w.apps {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := a.WaitOK(wctx, start)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// stop stops the applications (once), all at the same time: when a test failed
// with no server left, each one waits out its deadline, and one after the other
// they would use up the guest's time.
func (w *workload) stop(t *testing.T) {
	var wg sync.WaitGroup
	errs := make([]error, len(w.apps))
	for i, a := range w.apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.Stop(90 * time.Second)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("stopping %s: %v", w.apps[i].Spec.Name, err)
		}
	}
	w.apps = nil
}

// resumed waits until every application has completed an operation that
// started after ready (the new server was ready), and returns the longest pause
// any of them saw since the event at since: the longest time between the ends
// of two successive successful operations.
func (w *workload) resumed(t *testing.T, ctx context.Context, since, ready time.Time) time.Duration {
	t.Helper()
	var longest time.Duration
	for _, a := range w.apps {
		if _, err := a.WaitOK(ctx, ready); err != nil {
			t.Fatal(err)
		}
		var prev time.Time
		var pause time.Duration
		for _, e := range a.Events() {
			if !e.OK() {
				continue
			}
			end := e.T.Add(e.Took)
			if end.After(since) && !prev.IsZero() && end.Sub(prev) > pause {
				pause = end.Sub(prev)
			}
			prev = end
		}
		t.Logf("%s paused at most %s", a.Spec.Name, pause.Round(time.Millisecond))
		longest = max(longest, pause)
	}
	return longest
}

// resumedAfter waits until every application has completed a successful
// operation after back (the operations blocked until then count) and returns the
// longest time from back to such a completion.
func (w *workload) resumedAfter(t *testing.T, ctx context.Context, back time.Time) time.Duration {
	t.Helper()
	var longest time.Duration
	for _, a := range w.apps {
		for {
			var end time.Time
			for _, e := range a.Events() {
				if e.OK() && e.T.Add(e.Took).After(back) {
					end = e.T.Add(e.Took)
					break
				}
			}
			if !end.IsZero() {
				longest = max(longest, end.Sub(back))
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s did not resume: %v", a.Spec.Name, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return longest
}

// check stops the applications and verifies what they saw: no error at all, and
// every acknowledged append in its file on the backend (dir is the export on the
// backend's mount).
func (w *workload) check(t *testing.T, backendDir string) {
	t.Helper()
	apps := w.apps
	w.stop(t)
	for _, a := range apps {
		evs := a.Events()
		errs := a.Errors()
		for i, e := range errs {
			if i == 10 {
				t.Errorf("%s: ... %d errors in all", a.Spec.Name, len(errs))
				break
			}
			t.Errorf("%s saw an error at %s (operation %d, %s): %s", a.Spec.Name, e.T.Format("15:04:05.000"), e.Seq, e.Took.Round(time.Millisecond), e.Err)
		}
		if a.Spec.Mode != guest.ModeAppend {
			t.Logf("%s: %d reads, %d errors", a.Spec.Name, len(evs), len(errs))
			continue
		}
		acked := a.Acked()
		have := linesOf(t, filepath.Join(backendDir, filepath.Base(a.Spec.File)), a.Spec.Name)
		var lost []int
		for _, seq := range acked {
			if !have[seq] {
				lost = append(lost, seq)
			}
		}
		if len(lost) > 0 {
			t.Errorf("%s: %d of %d acknowledged appends are not on the backend: %v", a.Spec.Name, len(lost), len(acked), head(lost, 20))
		}
		t.Logf("%s: %d appends acknowledged, all on the backend: %v; %d errors", a.Spec.Name, len(acked), len(lost) == 0, len(errs))
	}
}

// linesOf returns the sequence numbers of name's lines in a file.
func linesOf(t *testing.T, path, name string) map[int]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("reading %s on the backend: %v", path, err)
	}
	defer f.Close()
	seqs := map[int]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, s, ok := strings.Cut(sc.Text(), " "); ok && n == name {
			if seq, err := strconv.Atoi(s); err == nil {
				seqs[seq] = true
			}
		}
	}
	return seqs
}

func head(v []int, n int) []int {
	sort.Ints(v)
	if len(v) > n {
		return v[:n]
	}
	return v
}
