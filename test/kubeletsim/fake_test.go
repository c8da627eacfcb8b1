package kubeletsim

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pvnfs/pvnfs/test/simnode"
)

// fakeNode is a node plugin in memory. It checks what kubelet guarantees a plugin
// and records every violation: no two calls for one volume at once, publish only
// after stage, unstage only when nothing is published.
type fakeNode struct {
	name string
	caps []csi.NodeServiceCapability_RPC_Type
	// delay is how long each call takes, to widen the windows for races.
	delay time.Duration

	mu         sync.Mutex
	inFlight   map[string]bool                // handle
	staged     map[string]simnode.Volume      // handle
	published  map[string]map[string]bool     // handle -> pod UID -> readOnly
	calls      map[string]int                 // "op handle"
	violations []string                       //
	failNext   map[string]int                 // "op handle" -> calls left to fail
	lastPub    map[string]publishedForTesting // pod UID -> last publish
}

type publishedForTesting struct {
	volume   simnode.Volume
	readOnly bool
}

func newFakeNode(name string) *fakeNode {
	return &fakeNode{
		name: name,
		caps: []csi.NodeServiceCapability_RPC_Type{csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
			csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER},
		inFlight: map[string]bool{}, staged: map[string]simnode.Volume{}, published: map[string]map[string]bool{},
		calls: map[string]int{}, failNext: map[string]int{}, lastPub: map[string]publishedForTesting{},
	}
}

func (f *fakeNode) Name() string { return f.name }

func (f *fakeNode) Capabilities(context.Context) ([]csi.NodeServiceCapability_RPC_Type, error) {
	return f.caps, nil
}

// enter marks a call on a volume in flight; exit ends it. They record overlapping
// calls on one volume and injected failures.
func (f *fakeNode) enter(op, handle string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inFlight[handle] {
		f.violations = append(f.violations, fmt.Sprintf("%s: %s of %s while another call on it is in flight", f.name, op, handle))
	}
	f.inFlight[handle] = true
	f.calls[op+" "+handle]++
	if f.failNext[op+" "+handle] > 0 {
		f.failNext[op+" "+handle]--
		return fmt.Errorf("injected failure of %s", op)
	}
	return nil
}

func (f *fakeNode) exit(handle string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.inFlight, handle)
}

func (f *fakeNode) wait(ctx context.Context) error {
	if f.delay == 0 {
		return nil
	}
	select {
	case <-time.After(f.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// begin starts a call: it records it (enter), then takes the node's delay. On
// success the caller ends the call with done.
func (f *fakeNode) begin(ctx context.Context, op, handle string) (done func(), err error) {
	if err := f.enter(op, handle); err != nil {
		f.exit(handle)
		return nil, err
	}
	if err := f.wait(ctx); err != nil {
		f.exit(handle)
		return nil, err
	}
	return func() { f.exit(handle) }, nil
}

func (f *fakeNode) Stage(ctx context.Context, v simnode.Volume) (string, error) {
	done, err := f.begin(ctx, "stage", v.Handle)
	if err != nil {
		return "", err
	}
	defer done()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.staged[v.Handle] = v
	return filepath.Join("/kubelet/plugins", v.Handle, "globalmount"), nil
}

func (f *fakeNode) Publish(ctx context.Context, v simnode.Volume, podUID string, readOnly bool) (string, error) {
	done, err := f.begin(ctx, "publish", v.Handle)
	if err != nil {
		return "", err
	}
	defer done()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.staged[v.Handle]; !ok {
		f.violations = append(f.violations, fmt.Sprintf("%s: publish of %s for %s before stage", f.name, v.Handle, podUID))
	}
	if f.published[v.Handle] == nil {
		f.published[v.Handle] = map[string]bool{}
	}
	f.published[v.Handle][podUID] = readOnly
	f.lastPub[podUID] = publishedForTesting{volume: v, readOnly: readOnly}
	return filepath.Join("/kubelet/pods", podUID, "volumes/kubernetes.io~csi", v.PVName, "mount"), nil
}

func (f *fakeNode) Unpublish(ctx context.Context, v simnode.Volume, podUID string) error {
	done, err := f.begin(ctx, "unpublish", v.Handle)
	if err != nil {
		return err
	}
	defer done()
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.published[v.Handle], podUID)
	return nil
}

func (f *fakeNode) Unstage(ctx context.Context, v simnode.Volume) error {
	done, err := f.begin(ctx, "unstage", v.Handle)
	if err != nil {
		return err
	}
	defer done()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.published[v.Handle]); n > 0 {
		f.violations = append(f.violations, fmt.Sprintf("%s: unstage of %s with %d pods still published", f.name, v.Handle, n))
	}
	delete(f.staged, v.Handle)
	return nil
}

// mounted returns the staged handles and the published pod UIDs of a volume.
func (f *fakeNode) mounted(handle string) (staged bool, pods []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, staged = f.staged[handle]
	for uid := range f.published[handle] {
		pods = append(pods, uid)
	}
	slices.Sort(pods)
	return staged, pods
}

func (f *fakeNode) lastPublish(podUID types.UID) publishedForTesting {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastPub[string(podUID)]
}

func (f *fakeNode) count(op, handle string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op+" "+handle]
}

func (f *fakeNode) failures() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.violations...)
}
