package controller

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// cache is the controller's read side: informers over the objects of the server
// namespace (and StorageClasses), plus a per-volume wake-up for waiters. Reads cost
// the API server nothing, and a wait ends as soon as a watch event says so.
type cache struct {
	factories []informers.SharedInformerFactory
	synced    []toolscache.InformerSynced

	pvcs           corelisters.PersistentVolumeClaimLister
	services       corelisters.ServiceLister
	deployments    appslisters.DeploymentLister
	storageClasses storagelisters.StorageClassLister
	// Pods and EndpointSlices are indexed by volume ID, Events by the UID of the
	// object they are about.
	podIndex, sliceIndex, eventIndex toolscache.Indexer
	// pvs indexes the driver's PersistentVolumes by volume handle; the reconciler
	// tells a volume whose PV is gone (an orphan) from a live one.
	pvs toolscache.Indexer

	notifier *notifier
	// handlers are told about every change to a volume's objects (the reconciler).
	mu       sync.Mutex
	seq      int
	handlers map[int]func(id string)
}

// Index names.
const (
	// pvByHandle indexes PersistentVolumes by the volume handle of the driver.
	pvByHandle = "pvnfs-volume-handle"
	// byVolume indexes a volume's pods and EndpointSlices by its volume ID.
	byVolume = "pvnfs-volume-id"
	// byInvolvedUID indexes Events by the UID of their object.
	byInvolvedUID = "involved-uid"
)

func newCache(client kubernetes.Interface, namespace, driverName string) *cache {
	managed := informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = volume.LabelManagedBy + "=" + volume.ManagedBy
	})
	ours := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace), managed)
	// EndpointSlices and Events are made by others and do not carry our labels.
	others := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	cluster := informers.NewSharedInformerFactory(client, 0)

	c := &cache{
		factories: []informers.SharedInformerFactory{ours, others, cluster},
		notifier:  newNotifier(),
		handlers:  map[int]func(string){},
	}
	type informer interface {
		Informer() toolscache.SharedIndexInformer
	}
	add := func(i informer, idOf func(any) string) {
		inf := i.Informer()
		// Managed fields are a large part of each object and are never read here.
		_ = inf.SetTransform(stripManagedFields)
		if idOf != nil {
			_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
				AddFunc:    func(o any) { c.changed(idOf(o)) },
				UpdateFunc: func(_, o any) { c.changed(idOf(o)) },
				DeleteFunc: func(o any) { c.changed(idOf(o)) },
			})
		}
		c.synced = append(c.synced, inf.HasSynced)
	}
	pvcs, svcs, pods, deps := ours.Core().V1().PersistentVolumeClaims(), ours.Core().V1().Services(), ours.Core().V1().Pods(), ours.Apps().V1().Deployments()
	slices, events, scs := others.Discovery().V1().EndpointSlices(), others.Core().V1().Events(), cluster.Storage().V1().StorageClasses()
	// Indexes keep a volume's lookup independent of how many volumes there are.
	_ = pods.Informer().AddIndexers(toolscache.Indexers{byVolume: func(o any) ([]string, error) {
		return []string{idFromLabels(o)}, nil
	}})
	_ = slices.Informer().AddIndexers(toolscache.Indexers{byVolume: func(o any) ([]string, error) {
		return []string{idFromSlice(o)}, nil
	}})
	_ = events.Informer().AddIndexers(toolscache.Indexers{byInvolvedUID: func(o any) ([]string, error) {
		if ev, ok := o.(*corev1.Event); ok {
			return []string{string(ev.InvolvedObject.UID)}, nil
		}
		return nil, nil
	}})
	c.podIndex, c.sliceIndex, c.eventIndex = pods.Informer().GetIndexer(), slices.Informer().GetIndexer(), events.Informer().GetIndexer()
	add(pvcs, idFromLabels)
	add(svcs, idFromLabels)
	add(pods, idFromLabels)
	add(deps, idFromLabels)
	add(slices, idFromSlice)
	add(events, nil)
	add(scs, nil)
	pvInformer := cluster.Core().V1().PersistentVolumes().Informer()
	_ = pvInformer.AddIndexers(toolscache.Indexers{pvByHandle: func(o any) ([]string, error) {
		pv, ok := o.(*corev1.PersistentVolume)
		if !ok || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
			return nil, nil
		}
		return []string{pv.Spec.CSI.VolumeHandle}, nil
	}})
	_ = pvInformer.SetTransform(stripManagedFields)
	_, _ = pvInformer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.changed(handleOf(o)) },
		UpdateFunc: func(_, o any) { c.changed(handleOf(o)) },
		DeleteFunc: func(o any) { c.changed(handleOf(o)) },
	})
	c.synced = append(c.synced, pvInformer.HasSynced)
	c.pvs = pvInformer.GetIndexer()
	c.pvcs, c.services, c.deployments, c.storageClasses = pvcs.Lister(), svcs.Lister(), deps.Lister(), scs.Lister()
	return c
}

// start runs the informers until ctx ends and waits for their first list.
func (c *cache) start(ctx context.Context) error {
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("informer caches did not sync: %w", ctx.Err())
	}
	return nil
}

func (c *cache) hasSynced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

// onChange registers a function told the volume ID of every changed object, until
// the returned function is called.
func (c *cache) onChange(f func(id string)) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	key := c.seq
	c.handlers[key] = f
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.handlers, key)
	}
}

func (c *cache) changed(id string) {
	if id == "" {
		return
	}
	c.notifier.notify(id)
	c.mu.Lock()
	hs := make([]func(string), 0, len(c.handlers))
	for _, h := range c.handlers {
		hs = append(hs, h)
	}
	c.mu.Unlock()
	for _, h := range hs {
		h(id)
	}
}

// indexed returns the objects of an index value, typed.
func indexed[T any](idx toolscache.Indexer, index, value string) []T {
	objs, err := idx.ByIndex(index, value)
	if err != nil {
		return nil
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func handleOf(o any) string {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if pv, ok := o.(*corev1.PersistentVolume); ok && pv.Spec.CSI != nil {
		return pv.Spec.CSI.VolumeHandle
	}
	return ""
}

// livePV returns a PersistentVolume that still refers to the volume and is in use
// or waiting to be (Bound, Available or Pending, not being deleted), or nil. The
// PersistentVolume whose deletion asks for DeleteVolume is Released, or has its
// deletion timestamp set, by then, so only another one, such as the static
// PersistentVolume that shares a volume with a second namespace, is live.
func (c *cache) livePV(id string) *corev1.PersistentVolume {
	objs, _ := c.pvs.ByIndex(pvByHandle, id)
	for _, o := range objs {
		pv := o.(*corev1.PersistentVolume)
		if pv.DeletionTimestamp != nil {
			continue
		}
		switch pv.Status.Phase {
		case corev1.VolumeBound, corev1.VolumeAvailable, corev1.VolumePending:
			return pv
		}
	}
	return nil
}

// pvOf returns the PersistentVolume of a volume, or nil.
func (c *cache) pvOf(id string) *corev1.PersistentVolume {
	objs, err := c.pvs.ByIndex(pvByHandle, id)
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*corev1.PersistentVolume)
}

func idFromLabels(o any) string {
	m := metaOf(o)
	if m == nil {
		return ""
	}
	return m.GetLabels()[volume.LabelVolumeID]
}

func idFromSlice(o any) string {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	s, ok := o.(*discoveryv1.EndpointSlice)
	if !ok {
		return ""
	}
	id, err := volume.IDFromObjectName(s.Labels[discoveryv1.LabelServiceName])
	if err != nil {
		return ""
	}
	return id
}

func metaOf(o any) metav1.Object {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	m, ok := o.(metav1.Object)
	if !ok {
		return nil
	}
	return m
}

// notifier wakes the waiters of one volume when any of its objects changes.
type notifier struct {
	mu      sync.Mutex
	waiters map[string]chan struct{}
}

func newNotifier() *notifier { return &notifier{waiters: map[string]chan struct{}{}} }

// wait returns a channel closed at the next change of volume id. Take it before
// reading the state, so that a change in between is not missed.
func (n *notifier) wait(id string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.waiters[id]
	if !ok {
		ch = make(chan struct{})
		n.waiters[id] = ch
	}
	return ch
}

func (n *notifier) notify(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.waiters[id]; ok {
		close(ch)
		delete(n.waiters, id)
	}
}

// stripManagedFields drops managedFields before an object enters the cache.
func stripManagedFields(o any) (any, error) {
	if m, ok := o.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return o, nil
}
