package engine

import (
	"context"
	"fmt"
	"os"
)

// The kernel interfaces (the nfsd filesystem, /proc) and a backend volume on broken
// storage can block a read or write for a long time. These helpers bound them by
// ctx: the call returns at the deadline even though the blocked goroutine can only
// finish when the kernel lets it.

// ReadFile reads a whole file before ctx ends.
func ReadFile(ctx context.Context, path string) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(path)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read %s: no answer before the deadline: %w", path, ctx.Err())
	}
}

// WriteControl writes data to an existing control file (nfsd filesystem, /proc) in
// one write call, as those files take one request per write, before ctx ends. It
// never creates the file: a missing file means the filesystem is not mounted, which
// must not be hidden by creating a plain file in its place.
func WriteControl(ctx context.Context, path string, data []byte) error {
	ch := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			ch <- err
			return
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		ch <- err
	}()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("write %s: no answer before the deadline: %w", path, ctx.Err())
	}
}
