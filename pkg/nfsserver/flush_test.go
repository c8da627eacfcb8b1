package nfsserver

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// post sends POST /flush with the timeout parameter to h and returns the answer.
func post(t *testing.T, h http.Handler, timeout string) (int, string) {
	t.Helper()
	url := volume.FlushPath
	if timeout != "" {
		url += "?" + volume.FlushTimeoutParam + "=" + timeout
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, url, nil))
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

func TestFlushHandler(t *testing.T) {
	tests := []struct {
		name     string
		sync     func(string) error
		method   string
		timeout  string
		wantCode int
		wantBody string
	}{
		{name: "a successful syncfs answers 200", sync: func(string) error { return nil }, wantCode: http.StatusOK, wantBody: "flushed /data in"},
		{name: "a failed syncfs answers 500 with its error", sync: func(string) error { return errors.New("syncfs /data: input/output error") },
			wantCode: http.StatusInternalServerError, wantBody: "input/output error"},
		{name: "a hung syncfs answers 503 at the caller's deadline", sync: func(string) error { time.Sleep(time.Second); return nil },
			timeout: "50ms", wantCode: http.StatusServiceUnavailable, wantBody: "did not finish within 50ms"},
		{name: "GET is refused", sync: func(string) error { return nil }, method: http.MethodGet, wantCode: http.StatusMethodNotAllowed},
		{name: "a malformed timeout is refused, naming the parameter", sync: func(string) error { return nil }, timeout: "soon",
			wantCode: http.StatusBadRequest, wantBody: `timeout="soon" is not a positive duration`},
		{name: "a negative timeout is refused", sync: func(string) error { return nil }, timeout: "-1s", wantCode: http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newFlushHandler("/data", tc.sync)
			var code int
			var body string
			if tc.method != "" && tc.method != http.MethodPost {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(tc.method, volume.FlushPath, nil))
				code, body = w.Code, w.Body.String()
				if w.Header().Get("Allow") != http.MethodPost {
					t.Errorf("Allow = %q, want POST", w.Header().Get("Allow"))
				}
			} else {
				code, body = post(t, h, tc.timeout)
			}
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("answer %d %q, want %d containing %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

// TestFlushHandlerOneSyncAtATime: while a syncfs hangs, a second request starts no
// second one; it waits, and once the first returns it runs a syncfs of its own (the
// first may have started before writes the second caller needs flushed).
func TestFlushHandlerOneSyncAtATime(t *testing.T) {
	var running, calls atomic.Int32
	release := make(chan struct{})
	h := newFlushHandler("/data", func(string) error {
		calls.Add(1)
		if running.Add(1) > 1 {
			t.Error("two syncfs calls ran at once")
		}
		defer running.Add(-1)
		<-release
		return nil
	})
	if code, _ := post(t, h, "50ms"); code != http.StatusServiceUnavailable {
		t.Fatalf("first flush = %d, want 503 while its syncfs hangs", code)
	}
	if code, body := post(t, h, "50ms"); code != http.StatusServiceUnavailable || !strings.Contains(body, "did not finish") {
		t.Fatalf("second flush during the hang = %d %q, want 503", code, body)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d syncfs calls during the hang, want 1", n)
	}
	done := make(chan int)
	go func() {
		code, _ := post(t, h, "10s")
		done <- code
	}()
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("flush after the hang ended = %d, want 200", code)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d syncfs calls, want 2: the waiting request must run its own", n)
	}
}

func TestFlushTimeoutIsCapped(t *testing.T) {
	for raw, want := range map[string]time.Duration{"": defaultFlushTimeout, "30s": 30 * time.Second, "1h": volume.MaxFlushTimeout} {
		if got, err := flushTimeout(raw); err != nil || got != want {
			t.Errorf("flushTimeout(%q) = %v, %v; want %v", raw, got, err, want)
		}
	}
}

// TestSyncFSOnARealFilesystem runs the real syncfs(2) on a temporary directory's
// filesystem, and refuses a path that does not exist.
func TestSyncFSOnARealFilesystem(t *testing.T) {
	if err := syncFS(t.TempDir()); err != nil {
		t.Fatalf("syncfs: %v", err)
	}
	if err := syncFS("/nonexistent/pvnfs"); err == nil {
		t.Error("syncfs of a missing path succeeded")
	}
	code, body := post(t, NewFlushHandler(t.TempDir()), "")
	if code != http.StatusOK {
		t.Errorf("POST %s = %d %s", volume.FlushPath, code, body)
	}
}
