package nfsserver

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// defaultFlushTimeout bounds a flush whose caller does not say how long it waits.
const defaultFlushTimeout = time.Minute

// flushHandler serves POST volume.FlushPath: it writes the backend filesystem's dirty
// data and metadata to stable storage (syncfs on the volume root) and answers 200
// once they are. The controller calls it before a backend snapshot or clone, so that
// every write the server acknowledged is in it, also with an async export, whose
// acknowledged writes may sit in the page cache.
//
// At most one syncfs runs at a time: on hung storage it never returns, and piling up
// more would only add blocked threads. A request that finds one running waits for
// it to end and then starts its own, since the running one may have started before
// writes the caller needs; if that does not happen in time it answers 503.
type flushHandler struct {
	root string
	// sync writes the filesystem holding path to stable storage.
	sync func(path string) error
	// slot holds a token while a syncfs runs.
	slot chan struct{}
}

// NewFlushHandler returns the handler of volume.FlushPath for the backend volume
// mounted at root.
func NewFlushHandler(root string) http.Handler {
	return newFlushHandler(root, syncFS)
}

func newFlushHandler(root string, sync func(string) error) *flushHandler {
	return &flushHandler{root: root, sync: sync, slot: make(chan struct{}, 1)}
}

// syncFS is syncfs(2) on the filesystem that holds path.
func syncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", path, err)
	}
	return nil
}

func (h *flushHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "flush: use POST", http.StatusMethodNotAllowed)
		return
	}
	timeout, err := flushTimeout(r.URL.Query().Get(volume.FlushTimeoutParam))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The health server's write deadline is made for quick probes; this answer may
	// come later.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 5*time.Second))
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	start := time.Now()
	err = h.flush(ctx)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err == nil:
		klog.V(2).InfoS("Flushed the backend volume", "volumeRoot", h.root, "duration", took)
		fmt.Fprintf(w, "flushed %s in %s\n", h.root, took)
	case ctx.Err() != nil:
		klog.ErrorS(err, "Flush of the backend volume did not finish in time", "volumeRoot", h.root, "timeout", timeout)
		http.Error(w, fmt.Sprintf("flush of %s did not finish within %s: the backend storage is slow or hung", h.root, timeout), http.StatusServiceUnavailable)
	default:
		klog.ErrorS(err, "Flush of the backend volume failed", "volumeRoot", h.root)
		http.Error(w, fmt.Sprintf("flush of %s failed: %v", h.root, err), http.StatusInternalServerError)
	}
}

// flush runs one syncfs of its own, waiting for a running one first, until ctx ends.
func (h *flushHandler) flush(ctx context.Context) error {
	select {
	case h.slot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("an earlier flush is still running: %w", ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		// The token is given back when syncfs returns, however long after the
		// request ended that is.
		defer func() { <-h.slot }()
		done <- h.sync(h.root)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushTimeout reads the caller's timeout, capped at volume.MaxFlushTimeout.
func flushTimeout(raw string) (time.Duration, error) {
	if raw == "" {
		return defaultFlushTimeout, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("flush: %s=%q is not a positive duration such as \"30s\"", volume.FlushTimeoutParam, raw)
	}
	return min(d, volume.MaxFlushTimeout), nil
}
