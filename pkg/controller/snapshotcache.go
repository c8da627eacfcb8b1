package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	snapscheme "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/scheme"
	snapinformers "github.com/kubernetes-csi/external-snapshotter/client/v8/informers/externalversions"
	snaplisters "github.com/kubernetes-csi/external-snapshotter/client/v8/listers/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// snapshotGroupVersion is the VolumeSnapshot API the snapshot CRDs serve.
var snapshotGroupVersion = crdv1.SchemeGroupVersion.String()

// errNoSnapshotAPI says what to install when the cluster has no VolumeSnapshot API.
var errNoSnapshotAPI = status.Errorf(codes.FailedPrecondition,
	"the cluster does not serve the VolumeSnapshot API (%s): install the snapshot CRDs and the snapshot-controller of external-snapshotter (docs/snapshots.md)", snapshotGroupVersion)

// snapshotCache is the read side of snapshots: informers over the VolumeSnapshots in
// the controller's namespace that pvnfs made, and over VolumeSnapshotClasses, plus a
// wake-up per snapshot key for waiters. The informers start on the first snapshot
// call, not with the controller: a cluster without the snapshot CRDs must not keep
// the controller from becoming ready for volumes.
type snapshotCache struct {
	client    snapclient.Interface
	namespace string
	notifier  *notifier

	mu      sync.Mutex
	ctx     context.Context // the controller's run context, from Start
	synced  []toolscache.InformerSynced
	started bool

	snapshots snaplisters.VolumeSnapshotLister
	classes   snaplisters.VolumeSnapshotClassLister
	// bySource indexes pvnfs's VolumeSnapshots by source volume ID.
	bySource toolscache.Indexer

	// recorder records events on the users' VolumeSnapshots.
	recorder record.EventRecorder
}

// snapshotsBySource indexes VolumeSnapshots by their source volume label.
const snapshotsBySource = "pvnfs-source-volume"

func newSnapshotCache(client snapclient.Interface, namespace string) *snapshotCache {
	return &snapshotCache{client: client, namespace: namespace, notifier: newNotifier()}
}

// setContext records the controller's run context: the informers and the event
// recorder live until it ends.
func (c *snapshotCache) setContext(ctx context.Context, events typedcorev1.EventsGetter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctx = ctx
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = snapscheme.AddToScheme(scheme)
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: events.Events("")})
	c.recorder = b.NewRecorder(scheme, corev1.EventSource{Component: "pvnfs-controller"})
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
}

// ready starts the informers on first use and waits until they are filled. Without
// the VolumeSnapshot API it answers FailedPrecondition saying what to install.
func (c *snapshotCache) ready(ctx context.Context) error {
	c.mu.Lock()
	if !c.started {
		if c.ctx == nil {
			c.mu.Unlock()
			return status.Error(codes.Unavailable, "the controller is starting")
		}
		if _, err := c.client.Discovery().ServerResourcesForGroupVersion(snapshotGroupVersion); err != nil {
			c.mu.Unlock()
			if apierrors.IsNotFound(err) {
				return errNoSnapshotAPI
			}
			return status.Errorf(codes.Unavailable, "asking the API server for %s: %v", snapshotGroupVersion, err)
		}
		c.start()
	}
	synced := c.synced
	c.mu.Unlock()
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return status.Errorf(codes.Unavailable, "the VolumeSnapshot caches are not filled yet: %v", ctx.Err())
	}
	return nil
}

// start runs the informers until the controller's context ends. Call with mu held.
func (c *snapshotCache) start() {
	managed := snapinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = volume.LabelManagedBy + "=" + volume.ManagedBy + "," + volume.LabelComponent + "=" + volume.ComponentSnapshot
	})
	ours := snapinformers.NewSharedInformerFactoryWithOptions(c.client, 0, snapinformers.WithNamespace(c.namespace), managed)
	cluster := snapinformers.NewSharedInformerFactory(c.client, 0)
	vs := ours.Snapshot().V1().VolumeSnapshots()
	classes := cluster.Snapshot().V1().VolumeSnapshotClasses()
	inf := vs.Informer()
	_ = inf.SetTransform(stripManagedFields)
	_ = inf.AddIndexers(toolscache.Indexers{snapshotsBySource: func(o any) ([]string, error) {
		if s, ok := o.(*crdv1.VolumeSnapshot); ok {
			return []string{s.Labels[volume.LabelSourceVolumeID]}, nil
		}
		return nil, nil
	}})
	notify := func(o any) {
		if m := metaOf(o); m != nil {
			if key, err := volume.SnapshotKeyFromObjectName(m.GetName()); err == nil {
				c.notifier.notify(key)
			}
		}
	}
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, o any) { notify(o) },
		DeleteFunc: notify,
	})
	_ = classes.Informer().SetTransform(stripManagedFields)
	c.synced = []toolscache.InformerSynced{inf.HasSynced, classes.Informer().HasSynced}
	c.snapshots, c.classes, c.bySource = vs.Lister(), classes.Lister(), inf.GetIndexer()
	ours.Start(c.ctx.Done())
	cluster.Start(c.ctx.Done())
	c.started = true
	klog.InfoS("Watching VolumeSnapshots", "namespace", c.namespace)
}

// get returns pvnfs's VolumeSnapshot of a snapshot key from the cache, or nil.
func (c *snapshotCache) get(key string) *crdv1.VolumeSnapshot {
	vs, err := c.snapshots.VolumeSnapshots(c.namespace).Get(volume.SnapshotObjectName(key))
	if err != nil {
		return nil
	}
	return vs
}

// event records an event on a user's VolumeSnapshot, which the csi-snapshotter names
// in CreateSnapshot's parameters: the user describes that object, not pvnfs's.
func (c *snapshotCache) event(ctx context.Context, namespace, name, eventType, reason, msg string) {
	if namespace == "" || name == "" || c.recorder == nil {
		return
	}
	// The event needs the object's UID, or kubectl describe does not show it.
	vs, err := c.client.SnapshotV1().VolumeSnapshots(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		klog.V(2).InfoS("Cannot record an event on the user's VolumeSnapshot", "volumeSnapshot", namespace+"/"+name, "reason", reason, "err", err)
		return
	}
	c.recorder.Event(vs, eventType, reason, msg)
}

// errSnapshotsDisabled answers snapshot calls of a controller built without them.
var errSnapshotsDisabled = errors.New("snapshots are not enabled in this controller")

func (s *Service) snapshotsEnabled() error {
	if s.snaps == nil {
		return status.Error(codes.Unimplemented, errSnapshotsDisabled.Error())
	}
	return nil
}

// snapshotGuardKey names a snapshot key in the in-flight guard, apart from volume IDs.
func snapshotGuardKey(key string) string { return fmt.Sprintf("snapshot:%s", key) }

// beginSnapshot starts an operation on a snapshot as begin does on a volume: one at
// a time per snapshot in this process (a concurrent retry gets Aborted), within the
// call's deadline. done ends it.
func (s *Service) beginSnapshot(ctx context.Context, key, id string) (context.Context, func(), error) {
	release, ok := s.inflight.TryAcquire(snapshotGuardKey(key))
	if !ok {
		return nil, nil, status.Errorf(codes.Aborted, "an operation on snapshot %s is already in progress", id)
	}
	ctx, cancel := s.deadline(ctx)
	return ctx, func() { cancel(); release() }, nil
}
