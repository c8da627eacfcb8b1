package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/pvnfs/pvnfs/pkg/podutil"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// byVolume indexes a volume's objects by volume ID.
const byVolume = "bench-volume"

// byClaim indexes PersistentVolumes by their claim, "namespace/name".
const byClaim = "bench-claim"

// record is what the observer knows of one volume: when the benchmark started
// creating and deleting it, and when its watch first saw each state.
type record struct {
	// user is the user's PVC (in the observer's user namespace) when the volume is
	// provisioned through csi-provisioner; "" for objects the benchmark creates
	// itself (the lower bound) or CreateVolume calls.
	user string
	// created and deleting are set by the benchmark when it starts creating or
	// deleting the volume.
	created, deleting time.Time
	// First seen: the user's PVC Bound; a server pod Ready; the volume serving
	// (backend PVC Bound, a server pod Ready and a ready endpoint); the volume's PV
	// (created by csi-provisioner after CreateVolume answered); and, once deleting,
	// every object of the volume gone.
	bound, podReady, serving, pvCreated, gone time.Time
}

// observer watches the objects of the volumes in one server namespace (and their
// users' PVCs, and every PersistentVolume) and records, per volume, the first time
// each state was seen. Times are taken in the event handlers, as the watch events
// arrive, so no poll interval is added to any figure. It uses its own client, never
// throttled, so watching costs the measured clients none of their rate limit.
type observer struct {
	serverNS, userNS string
	stop             chan struct{}
	synced           []toolscache.InformerSynced

	userPVCs, pvs                          toolscache.Indexer
	pvcs, deps, rss, pods, svcs, endpoints toolscache.Indexer

	mu      sync.Mutex
	records map[string]*record // by volume ID
	users   map[string]string  // user PVC name → volume ID
	changed chan struct{}      // closed and replaced whenever a record changes
}

// newObserver starts informers over serverNS (the volumes' objects), userNS (the
// users' PVCs; "" for none) and the cluster's PersistentVolumes, and waits until
// they are filled.
func newObserver(ctx context.Context, client kubernetes.Interface, serverNS, userNS string) (*observer, error) {
	o := &observer{serverNS: serverNS, userNS: userNS, stop: make(chan struct{}),
		records: map[string]*record{}, users: map[string]string{}, changed: make(chan struct{})}
	ours := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(serverNS),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = volume.LabelVolumeID }))
	others := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(serverNS))
	cluster := informers.NewSharedInformerFactory(client, 0)
	factories := []informers.SharedInformerFactory{ours, others, cluster}

	byLabel := toolscache.Indexers{byVolume: func(obj any) ([]string, error) {
		if m, ok := obj.(metav1.Object); ok && m.GetLabels()[volume.LabelVolumeID] != "" {
			return []string{m.GetLabels()[volume.LabelVolumeID]}, nil
		}
		return nil, nil
	}}
	add := func(inf toolscache.SharedIndexInformer, idx toolscache.Indexers, ids func(any) []string) (toolscache.Indexer, error) {
		if err := inf.AddIndexers(idx); err != nil {
			return nil, err
		}
		touch := func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			o.touch(time.Now(), ids(obj)...)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: touch, UpdateFunc: func(_, obj any) { touch(obj) }, DeleteFunc: touch,
		}); err != nil {
			return nil, err
		}
		o.synced = append(o.synced, inf.HasSynced)
		return inf.GetIndexer(), nil
	}
	labelID := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			return []string{m.GetLabels()[volume.LabelVolumeID]}
		}
		return nil
	}
	var err error
	if o.pvcs, err = add(ours.Core().V1().PersistentVolumeClaims().Informer(), byLabel, labelID); err != nil {
		return nil, err
	}
	if o.deps, err = add(ours.Apps().V1().Deployments().Informer(), byLabel, labelID); err != nil {
		return nil, err
	}
	if o.rss, err = add(ours.Apps().V1().ReplicaSets().Informer(), byLabel, labelID); err != nil {
		return nil, err
	}
	if o.pods, err = add(ours.Core().V1().Pods().Informer(), byLabel, labelID); err != nil {
		return nil, err
	}
	if o.svcs, err = add(ours.Core().V1().Services().Informer(), byLabel, labelID); err != nil {
		return nil, err
	}
	if o.endpoints, err = add(others.Discovery().V1().EndpointSlices().Informer(), toolscache.Indexers{byVolume: sliceVolume}, func(obj any) []string {
		ids, _ := sliceVolume(obj)
		return ids
	}); err != nil {
		return nil, err
	}
	if o.pvs, err = add(cluster.Core().V1().PersistentVolumes().Informer(), toolscache.Indexers{byClaim: pvClaim}, o.pvVolumes); err != nil {
		return nil, err
	}
	if userNS != "" {
		users := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(userNS))
		factories = append(factories, users)
		if o.userPVCs, err = add(users.Core().V1().PersistentVolumeClaims().Informer(), toolscache.Indexers{}, o.userVolume); err != nil {
			return nil, err
		}
	}
	for _, f := range factories {
		f.Start(o.stop)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), o.synced...) {
		close(o.stop)
		return nil, fmt.Errorf("the benchmark's informers did not sync: %w", ctx.Err())
	}
	go o.resync(ctx)
	return o, nil
}

// Stop stops the informers.
func (o *observer) Stop() { close(o.stop) }

// resync re-evaluates the pending volumes every second, in case a state turned
// true through an object whose event named no volume.
func (o *observer) resync(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			o.mu.Lock()
			ids := make([]string, 0, len(o.records))
			for id := range o.records {
				ids = append(ids, id)
			}
			o.mu.Unlock()
			o.touch(time.Now(), ids...)
		}
	}
}

func sliceVolume(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	id, err := volume.IDFromObjectName(s.Labels[discoveryv1.LabelServiceName])
	if err != nil {
		return nil, nil
	}
	return []string{id}, nil
}

func pvClaim(obj any) ([]string, error) {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok || pv.Spec.ClaimRef == nil {
		return nil, nil
	}
	return []string{pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name}, nil
}

// pvVolumes names the volumes a PersistentVolume belongs to: the volume whose
// backend PVC it holds, or (a PV of the driver) the volume it is.
func (o *observer) pvVolumes(obj any) []string {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok {
		return nil
	}
	var ids []string
	if pv.Spec.CSI != nil {
		ids = append(ids, pv.Spec.CSI.VolumeHandle)
	}
	if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace == o.serverNS {
		if id, err := volume.IDFromObjectName(ref.Name); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func (o *observer) userVolume(obj any) []string {
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if id, ok := o.users[pvc.Name]; ok {
		return []string{id}
	}
	return nil
}

// expectAt registers a volume whose creation the benchmark started at t0; user
// names its user PVC ("" for none).
func (o *observer) expectAt(id, user string, t0 time.Time) {
	o.mu.Lock()
	o.records[id] = &record{user: user, created: t0}
	if user != "" {
		o.users[user] = id
	}
	o.mu.Unlock()
	// Events that arrived before the registration named an unknown volume.
	o.touch(time.Now(), id)
}

// deletingAt records that the benchmark started deleting a volume at t.
func (o *observer) deletingAt(id string, t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r := o.records[id]; r != nil {
		r.deleting = t
	}
}

// forget drops the records of a phase.
func (o *observer) forget(ids []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		if r := o.records[id]; r != nil && r.user != "" {
			delete(o.users, r.user)
		}
		delete(o.records, id)
	}
}

// get returns a copy of a volume's record.
func (o *observer) get(id string) record {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r := o.records[id]; r != nil {
		return *r
	}
	return record{}
}

// touch re-evaluates the states of volumes after a change seen at now.
func (o *observer) touch(now time.Time, ids ...string) {
	changed := false
	for _, id := range ids {
		if id == "" {
			continue
		}
		o.mu.Lock()
		r := o.records[id]
		var rc record
		if r != nil {
			rc = *r
		}
		o.mu.Unlock()
		if r == nil {
			continue
		}
		st := o.state(id, rc.user)
		o.mu.Lock()
		set := func(t *time.Time, cond bool) {
			if cond && t.IsZero() {
				*t = now
				changed = true
			}
		}
		set(&r.bound, st.userBound)
		set(&r.pvCreated, st.pvExists)
		set(&r.podReady, st.podReady)
		set(&r.serving, st.pvcBound && st.podReady && st.endpointReady)
		set(&r.gone, !r.deleting.IsZero() && len(st.left) == 0)
		o.mu.Unlock()
	}
	if changed {
		o.mu.Lock()
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	}
}

// volumeState is what the informers show of one volume now.
type volumeState struct {
	userBound, pvcBound, podReady, endpointReady, pvExists bool
	// left names the objects of the volume that still exist.
	left []string
}

func (s volumeState) String() string {
	left := "none"
	if len(s.left) > 0 {
		left = strings.Join(s.left, ", ")
	}
	return fmt.Sprintf("user PVC Bound %v, backend PVC Bound %v, server pod Ready %v, endpoint ready %v; objects: %s",
		s.userBound, s.pvcBound, s.podReady, s.endpointReady, left)
}

func (o *observer) state(id, user string) volumeState {
	var s volumeState
	list := func(idx toolscache.Indexer, kind string) []any {
		objs, _ := idx.ByIndex(byVolume, id)
		for range objs {
			s.left = append(s.left, kind)
		}
		return objs
	}
	for _, obj := range list(o.pvcs, "backend PVC") {
		pvc := obj.(*corev1.PersistentVolumeClaim)
		s.pvcBound = s.pvcBound || (pvc.Status.Phase == corev1.ClaimBound && pvc.DeletionTimestamp == nil)
	}
	for _, obj := range list(o.pods, "server pod") {
		p := obj.(*corev1.Pod)
		s.podReady = s.podReady || (p.DeletionTimestamp == nil && podutil.Ready(p))
	}
	for _, obj := range list(o.endpoints, "EndpointSlice") {
		for _, ep := range obj.(*discoveryv1.EndpointSlice).Endpoints {
			s.endpointReady = s.endpointReady || ep.Conditions.Ready == nil || *ep.Conditions.Ready
		}
	}
	list(o.deps, "Deployment")
	list(o.rss, "ReplicaSet")
	list(o.svcs, "Service")
	if pvs, _ := o.pvs.ByIndex(byClaim, o.serverNS+"/"+volume.ObjectName(id)); len(pvs) > 0 {
		s.left = append(s.left, "backend PV")
	}
	if user != "" {
		if obj, ok, _ := o.userPVCs.GetByKey(o.userNS + "/" + user); ok {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			s.userBound = pvc.Status.Phase == corev1.ClaimBound
			s.left = append(s.left, "user PVC")
		}
		if _, ok, _ := o.pvs.GetByKey(id); ok { // csi-provisioner names the PV after the volume
			s.pvExists = true
			s.left = append(s.left, "PV")
		}
	}
	sort.Strings(s.left)
	return s
}

// waitFor waits until done holds for every volume, woken by the handlers.
func (o *observer) waitFor(ctx context.Context, what string, ids []string, done func(record) bool) error {
	for {
		o.mu.Lock()
		ch := o.changed
		var missing []string
		for _, id := range ids {
			if r := o.records[id]; r == nil || !done(*r) {
				missing = append(missing, id)
			}
		}
		o.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d volumes not %s: %w; e.g. %s: %s", len(missing), len(ids), what, ctx.Err(), missing[0], o.state(missing[0], o.get(missing[0]).user))
		}
	}
}
