package controller

import (
	"context"
	"fmt"
	"sync"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
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
	pods           corelisters.PodLister
	events         corelisters.EventLister
	deployments    appslisters.DeploymentLister
	slices         discoverylisters.EndpointSliceLister
	storageClasses storagelisters.StorageClassLister

	notifier *notifier
	// handlers are told about every change to a volume's objects (the reconciler).
	mu       sync.Mutex
	handlers []func(id string)
}

func newCache(client kubernetes.Interface, namespace string) *cache {
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
	add(pvcs, idFromLabels)
	add(svcs, idFromLabels)
	add(pods, idFromLabels)
	add(deps, idFromLabels)
	add(slices, idFromSlice)
	add(events, nil)
	add(scs, nil)
	c.pvcs, c.services, c.pods, c.deployments = pvcs.Lister(), svcs.Lister(), pods.Lister(), deps.Lister()
	c.slices, c.events, c.storageClasses = slices.Lister(), events.Lister(), scs.Lister()
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

// onChange registers a function told the volume ID of every changed object.
func (c *cache) onChange(f func(id string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers = append(c.handlers, f)
}

func (c *cache) changed(id string) {
	if id == "" {
		return
	}
	c.notifier.notify(id)
	c.mu.Lock()
	hs := c.handlers
	c.mu.Unlock()
	for _, h := range hs {
		h(id)
	}
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
