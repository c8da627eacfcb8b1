package kubeletsim

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// Mount is a volume published into a pod.
type Mount struct {
	Node string
	// Pod is "namespace/name".
	Pod    string
	PodUID types.UID
	Handle string
	PV     string
	// Target is the pod's target path on the node.
	Target   string
	ReadOnly bool
}

// Snapshot is what the kubelet has mounted, at one moment.
type Snapshot struct {
	// Staged maps each node to the handles of the volumes staged on it, sorted.
	Staged map[string][]string
	// Mounts are the pods' published volumes, sorted by node, pod and volume.
	Mounts []Mount
	// Failures are the last failed calls of the volumes that have not been synced
	// completely since.
	Failures []Action
}

// Snapshot returns what is mounted now.
func (k *Kubelet) Snapshot() Snapshot {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.snapshotLocked()
}

func (k *Kubelet) snapshotLocked() Snapshot {
	s := Snapshot{Staged: map[string][]string{}}
	for key, st := range k.state {
		if st.staged != nil {
			s.Staged[key.node] = append(s.Staged[key.node], key.handle)
		}
		for uid, p := range st.published {
			s.Mounts = append(s.Mounts, Mount{Node: key.node, Pod: p.pod, PodUID: uid, Handle: key.handle,
				PV: p.volume.PVName, Target: p.target, ReadOnly: p.readOnly})
		}
		if st.failure != nil {
			s.Failures = append(s.Failures, *st.failure)
		}
	}
	for _, h := range s.Staged {
		slices.Sort(h)
	}
	slices.SortFunc(s.Mounts, func(a, b Mount) int {
		return strings.Compare(a.Node+"\x00"+a.Pod+"\x00"+a.Handle, b.Node+"\x00"+b.Pod+"\x00"+b.Handle)
	})
	slices.SortFunc(s.Failures, func(a, b Action) int {
		return strings.Compare(a.Node+"\x00"+a.Handle, b.Node+"\x00"+b.Handle)
	})
	return s
}

// MountsOf returns the mounts of one volume.
func (s Snapshot) MountsOf(handle string) []Mount {
	var out []Mount
	for _, m := range s.Mounts {
		if m.Handle == handle {
			out = append(out, m)
		}
	}
	return out
}

// NodesStaging returns the nodes on which a volume is staged, sorted.
func (s Snapshot) NodesStaging(handle string) []string {
	var out []string
	for node, handles := range s.Staged {
		if slices.Contains(handles, handle) {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

// Published reports whether the pod has the volume mounted, and where.
func (s Snapshot) Published(podUID types.UID, handle string) (Mount, bool) {
	for _, m := range s.Mounts {
		if m.PodUID == podUID && m.Handle == handle {
			return m, true
		}
	}
	return Mount{}, false
}

// FailureSummary describes the failures, one per line; "" when there are none.
func (s Snapshot) FailureSummary() string {
	var b strings.Builder
	for _, f := range s.Failures {
		fmt.Fprintf(&b, "%v\n", f.Err)
	}
	return b.String()
}

// WaitFor waits until cond holds for what is mounted, re-checking after every
// change, and returns the snapshot that satisfied it. When ctx ends first the error
// says so and includes the failures of the moment, which usually tell why.
func (k *Kubelet) WaitFor(ctx context.Context, cond func(Snapshot) bool) (Snapshot, error) {
	for {
		k.mu.Lock()
		s := k.snapshotLocked()
		changed := k.changed
		k.mu.Unlock()
		if cond(s) {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if f := s.FailureSummary(); f != "" {
				return s, fmt.Errorf("%w; the kubelet's failing calls:\n%s", ctx.Err(), f)
			}
			return s, ctx.Err()
		}
	}
}
