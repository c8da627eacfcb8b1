package inflight

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestTryAcquire(t *testing.T) {
	g := New()
	release, ok := g.TryAcquire("vol-1")
	if !ok {
		t.Fatal("first acquire refused")
	}
	if _, ok := g.TryAcquire("vol-1"); ok {
		t.Fatal("second acquire of the same key allowed")
	}
	if _, ok := g.TryAcquire("vol-2", "vol-1"); ok {
		t.Fatal("acquire of a set holding a busy key allowed")
	}
	r2, ok := g.TryAcquire("vol-2")
	if !ok {
		t.Fatal("a failed multi-key acquire left vol-2 marked")
	}
	r2()
	release()
	if r, ok := g.TryAcquire("vol-1"); !ok {
		t.Fatal("released key still busy")
	} else {
		r()
	}
}

func TestTryAcquireConcurrent(t *testing.T) {
	g := New()
	var inside, max atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				release, ok := g.TryAcquire("k")
				if !ok {
					continue
				}
				n := inside.Add(1)
				if n > max.Load() {
					max.Store(n)
				}
				inside.Add(-1)
				release()
			}
		}()
	}
	wg.Wait()
	if max.Load() != 1 {
		t.Errorf("%d holders of one key at once", max.Load())
	}
}
