package kubeletsim

import (
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
)

// Index names of the pod informer.
const (
	byNode  = "node"
	byClaim = "claim"
)

func indexByNode(o any) ([]string, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return nil, nil
	}
	return []string{pod.Spec.NodeName}, nil
}

func indexByClaim(o any) ([]string, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var out []string
	for i := range pod.Spec.Volumes {
		if name, _, _ := claimName(pod, &pod.Spec.Volumes[i]); name != "" {
			out = append(out, pod.Namespace+"/"+name)
		}
	}
	return out, nil
}

func unwrap(o any) any {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return o
}

// alive reports whether a pod on a managed node should have its volumes: scheduled
// here, not being deleted, not finished.
func (k *Kubelet) alive(pod *corev1.Pod) bool {
	_, ours := k.nodes[pod.Spec.NodeName]
	return ours && pod.DeletionTimestamp == nil &&
		pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

func (k *Kubelet) podChanged(o any) {
	pod, ok := unwrap(o).(*corev1.Pod)
	if !ok {
		return
	}
	if _, ours := k.nodes[pod.Spec.NodeName]; !ours {
		return
	}
	for _, key := range k.keysOf(pod) {
		k.queue.Add(key)
	}
	if k.alive(pod) && k.unresolved(pod) {
		k.queue.Add(resolveKey(pod.Spec.NodeName))
	}
}

func (k *Kubelet) podDeleted(o any) {
	pod, ok := unwrap(o).(*corev1.Pod)
	if !ok {
		return
	}
	keys := k.keysOf(pod)
	k.mu.Lock()
	delete(k.resolved, pod.UID)
	k.mu.Unlock()
	for _, key := range keys {
		k.queue.Add(key)
	}
}

func (k *Kubelet) claimChanged(claim string) {
	objs, _ := k.pods.ByIndex(byClaim, claim)
	for _, o := range objs {
		k.podChanged(o)
	}
}

// keysOf returns the (node, volume) pairs a pod is involved in: the volumes it
// resolved to and those it has published. The resolved volumes count even for a pod
// that is going: a publish for it may be in flight, and its key must be queued again
// to undo it.
func (k *Kubelet) keysOf(pod *corev1.Pod) []volumeKey {
	var keys []volumeKey
	add := func(key volumeKey) {
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ours := k.nodes[pod.Spec.NodeName]; ours {
		for _, v := range k.resolved[pod.UID] {
			if !v.ignore {
				add(volumeKey{pod.Spec.NodeName, v.volume.Handle})
			}
		}
	}
	for key, s := range k.state {
		if _, ok := s.published[pod.UID]; ok {
			add(key)
		}
	}
	return keys
}

// unresolved reports whether a pod has claim volumes not resolved yet.
func (k *Kubelet) unresolved(pod *corev1.Pod) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if name, _, _ := claimName(pod, v); name != "" {
			if _, ok := k.resolved[pod.UID][v.Name]; !ok {
				return true
			}
		}
	}
	return false
}

// resyncLoop re-queues every volume on every node periodically, and forgets the
// resolved volumes of pods that no longer exist.
func (k *Kubelet) resyncLoop() {
	t := time.NewTicker(k.resync)
	defer t.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-t.C:
		}
		live := map[types.UID]bool{}
		var keys []volumeKey
		for name := range k.nodes {
			keys = append(keys, resolveKey(name))
			objs, _ := k.pods.ByIndex(byNode, name)
			for _, o := range objs {
				pod := o.(*corev1.Pod)
				live[pod.UID] = true
				keys = append(keys, k.keysOf(pod)...)
			}
		}
		k.mu.Lock()
		for key := range k.state {
			keys = append(keys, key)
		}
		for uid := range k.resolved {
			if !live[uid] {
				delete(k.resolved, uid)
			}
		}
		k.mu.Unlock()
		for _, key := range keys {
			k.queue.Add(key)
		}
	}
}
