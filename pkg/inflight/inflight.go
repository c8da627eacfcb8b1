// Package inflight keeps two operations on the same volume (or the same volume and
// target path) from running at once. The CO retries an operation whose call timed
// out while the first attempt still runs; the second attempt is refused with Aborted
// instead of racing the first on the same objects or mounts.
package inflight

import "sync"

// Guard tracks the keys of the operations in flight. The zero value is not usable;
// call New.
type Guard struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// New returns an empty Guard.
func New() *Guard { return &Guard{keys: map[string]struct{}{}} }

// TryAcquire marks every key as in flight and returns a function that releases them,
// or false, marking nothing, when any key already is.
func (g *Guard) TryAcquire(keys ...string) (release func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys {
		if _, busy := g.keys[k]; busy {
			return nil, false
		}
	}
	for _, k := range keys {
		g.keys[k] = struct{}{}
	}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, k := range keys {
			delete(g.keys, k)
		}
	}, true
}
