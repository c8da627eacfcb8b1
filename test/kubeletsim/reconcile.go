package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pvnfs/pvnfs/test/simnode"
)

// want is a pod that wants a volume on the node.
type want struct {
	pod *corev1.Pod
	vol podVolume
}

func (k *Kubelet) work() {
	for {
		key, shutdown := k.queue.Get()
		if shutdown {
			return
		}
		var err error
		if key.handle == "" {
			err = k.resolveNode(key.node)
		} else {
			err = k.sync(key)
		}
		switch {
		case err == nil:
			k.queue.Forget(key)
			k.clearFailure(key)
		case k.ctx.Err() == nil:
			k.queue.AddRateLimited(key)
		}
		k.queue.Done(key)
	}
}

// resolveNode resolves the claim volumes of the node's live pods that are not
// resolved yet, and queues the volumes found. A claim that is not bound yet is left
// for the event that binds it; a failed read is retried.
func (k *Kubelet) resolveNode(node string) error {
	objs, _ := k.pods.ByIndex(byNode, node)
	var errs []error
	for _, o := range objs {
		pod := o.(*corev1.Pod)
		if !k.alive(pod) || !k.unresolved(pod) {
			continue
		}
		for i := range pod.Spec.Volumes {
			v := &pod.Spec.Volumes[i]
			if name, _, _ := claimName(pod, v); name == "" {
				continue
			}
			k.mu.Lock()
			_, done := k.resolved[pod.UID][v.Name]
			k.mu.Unlock()
			if done {
				continue
			}
			ctx, cancel := context.WithTimeout(k.ctx, 30*time.Second)
			pv, err := k.resolve(ctx, pod, v)
			cancel()
			switch {
			case errors.Is(err, errWaiting):
				continue
			case errors.Is(err, errNotOurs):
				pv = podVolume{name: v.Name, ignore: true}
			case errors.Is(err, errUnsupported):
				k.recorder[node].Eventf(pod, corev1.EventTypeWarning, "FailedMount", "volume %q: %v", v.Name, err)
				pv = podVolume{name: v.Name, ignore: true}
			case err != nil:
				errs = append(errs, fmt.Errorf("resolving volume %q of pod %s/%s: %w", v.Name, pod.Namespace, pod.Name, err))
				continue
			}
			k.mu.Lock()
			if k.resolved[pod.UID] == nil {
				k.resolved[pod.UID] = map[string]podVolume{}
			}
			k.resolved[pod.UID][v.Name] = pv
			k.mu.Unlock()
			if !pv.ignore {
				k.queue.Add(volumeKey{node, pv.volume.Handle})
			}
		}
	}
	return errors.Join(errs...)
}

// desired lists the live pods on the key's node that use its volume.
func (k *Kubelet) desired(key volumeKey) map[types.UID]want {
	out := map[types.UID]want{}
	objs, _ := k.pods.ByIndex(byNode, key.node)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, o := range objs {
		pod := o.(*corev1.Pod)
		if !k.alive(pod) {
			continue
		}
		for _, v := range k.resolved[pod.UID] {
			if !v.ignore && v.volume.Handle == key.handle {
				out[pod.UID] = want{pod: pod, vol: v}
			}
		}
	}
	return out
}

// sync makes what is mounted for one volume on one node match what its pods want,
// in kubelet's order: unpublish the pods that are gone, stage if a pod needs the
// volume, publish the new pods, and unstage when no pod is left.
func (k *Kubelet) sync(key volumeKey) error {
	wants := k.desired(key)
	staged, published := k.current(key)
	errs := k.unpublishGone(key, wants, published)
	if len(wants) == 0 {
		if err := k.unstageUnused(key); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if staged == nil {
		if err := k.stage(key, wants); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	return errors.Join(append(errs, k.publishNew(key, wants, published)...)...)
}

// unpublishGone unpublishes the volume from the pods that no longer want it.
func (k *Kubelet) unpublishGone(key volumeKey, wants map[types.UID]want, published map[types.UID]publication) []error {
	var errs []error
	for _, uid := range sortedKeys(published) {
		if _, ok := wants[uid]; ok {
			continue
		}
		p := published[uid]
		err := k.call(Action{Op: OpUnpublish, Node: key.node, Handle: key.handle, PV: p.volume.PVName, Pod: p.pod, PodUID: uid, Path: p.target},
			func(ctx context.Context) (string, error) {
				return p.target, k.nodes[key.node].Unpublish(ctx, p.volume, string(uid))
			})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.update(key, func(s *volumeState) { delete(s.published, uid) })
	}
	return errs
}

// stage stages the volume for the pods that want it; a failure is a FailedMount
// event on each of them.
func (k *Kubelet) stage(key volumeKey, wants map[types.UID]want) error {
	uids := sortedKeys(wants)
	v := wants[uids[0]].vol.volume
	err := k.call(Action{Op: OpStage, Node: key.node, Handle: key.handle, PV: v.PVName},
		func(ctx context.Context) (string, error) { return k.nodes[key.node].Stage(ctx, v) })
	if err != nil {
		for _, uid := range uids {
			w := wants[uid]
			k.recorder[key.node].Eventf(w.pod, corev1.EventTypeWarning, "FailedMount",
				"MountVolume.MountDevice failed for volume %q (%s): %v", w.vol.name, v.PVName, err)
		}
		return err
	}
	k.update(key, func(s *volumeState) { s.staged = &v })
	return nil
}

// publishNew publishes the staged volume into the pods that want it and do not
// have it yet.
func (k *Kubelet) publishNew(key volumeKey, wants map[types.UID]want, published map[types.UID]publication) []error {
	var errs []error
	for _, uid := range sortedKeys(wants) {
		if _, ok := published[uid]; ok {
			continue
		}
		w := wants[uid]
		pod := w.pod.Namespace + "/" + w.pod.Name
		var target string
		err := k.call(Action{Op: OpPublish, Node: key.node, Handle: key.handle, PV: w.vol.volume.PVName, Pod: pod, PodUID: uid, ReadOnly: w.vol.readOnly},
			func(ctx context.Context) (string, error) {
				var err error
				target, err = k.nodes[key.node].Publish(ctx, w.vol.volume, string(uid), w.vol.readOnly)
				return target, err
			})
		if err != nil {
			k.recorder[key.node].Eventf(w.pod, corev1.EventTypeWarning, "FailedMount",
				"MountVolume.SetUp failed for volume %q (%s): %v", w.vol.name, w.vol.volume.PVName, err)
			errs = append(errs, err)
			continue
		}
		k.update(key, func(s *volumeState) {
			s.published[uid] = publication{pod: pod, volume: w.vol.volume, readOnly: w.vol.readOnly, target: target}
		})
	}
	return errs
}

// unstageUnused unstages the volume once no pod on the node has it published (an
// unpublish that failed keeps it staged until it is retried).
func (k *Kubelet) unstageUnused(key volumeKey) error {
	staged, published := k.current(key)
	if staged == nil || len(published) > 0 {
		return nil
	}
	v := *staged
	err := k.call(Action{Op: OpUnstage, Node: key.node, Handle: key.handle, PV: v.PVName},
		func(ctx context.Context) (string, error) { return "", k.nodes[key.node].Unstage(ctx, v) })
	if err != nil {
		return err
	}
	k.update(key, func(s *volumeState) { s.staged = nil })
	return nil
}

// call runs one CSI call with its deadline and reports it.
func (k *Kubelet) call(a Action, f func(context.Context) (string, error)) error {
	ctx, cancel := context.WithTimeout(k.ctx, k.callTimeout)
	defer cancel()
	start := time.Now()
	path, err := f(ctx)
	a.Took = time.Since(start)
	if a.Path == "" {
		a.Path = path
	}
	if err != nil {
		a.Err = fmt.Errorf("%s on node %s for %s: %w", a.Op, a.Node, a.PV, err)
		failure := a
		k.update(volumeKey{a.Node, a.Handle}, func(s *volumeState) { s.failure = &failure })
	}
	if k.onAction != nil {
		k.onAction(a)
	}
	return a.Err
}

// current copies the key's state.
func (k *Kubelet) current(key volumeKey) (*simnode.Volume, map[types.UID]publication) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.state[key]
	if s == nil {
		return nil, map[types.UID]publication{}
	}
	var staged *simnode.Volume
	if s.staged != nil {
		v := *s.staged
		staged = &v
	}
	pub := make(map[types.UID]publication, len(s.published))
	for uid, p := range s.published {
		pub[uid] = p
	}
	return staged, pub
}

// update changes the key's state under the lock, drops it when nothing is left, and
// wakes WaitFor.
func (k *Kubelet) update(key volumeKey, f func(*volumeState)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.state[key]
	if s == nil {
		s = &volumeState{published: map[types.UID]publication{}}
		k.state[key] = s
	}
	f(s)
	if s.staged == nil && len(s.published) == 0 && s.failure == nil {
		delete(k.state, key)
	}
	close(k.changed)
	k.changed = make(chan struct{})
}

// clearFailure forgets the key's last failure after a complete sync.
func (k *Kubelet) clearFailure(key volumeKey) {
	k.mu.Lock()
	s := k.state[key]
	failed := s != nil && s.failure != nil
	k.mu.Unlock()
	if failed {
		k.update(key, func(s *volumeState) { s.failure = nil })
	}
}

func sortedKeys[V any](m map[types.UID]V) []types.UID {
	out := make([]types.UID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
