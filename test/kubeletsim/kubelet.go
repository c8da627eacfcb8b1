package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/simnode"
)

// DefaultCallTimeout is how long a CSI node call may take: kubelet's own limit.
const DefaultCallTimeout = 2 * time.Minute

// Options configure a Kubelet.
type Options struct {
	// Client reads pods, claims and volumes and records events. Required.
	Client kubernetes.Interface
	// Nodes are the simulated nodes to act for; pods on other nodes are ignored.
	// Required.
	Nodes []Node
	// DriverName selects the PVs to mount; default volume.DefaultDriverName.
	DriverName string
	// Workers is how many (node, volume) pairs are worked on at once; default 8.
	Workers int
	// Resync is how often every volume is compared again even without an event;
	// default 30s. Events drive the normal work; this is the safety net.
	Resync time.Duration
	// CallTimeout bounds each CSI call; default DefaultCallTimeout.
	CallTimeout time.Duration
	// OnAction, when set, is called after every CSI call, from the worker that made
	// it (keep it short).
	OnAction func(Action)
}

// Op names a CSI node call.
type Op string

// The CSI node calls the kubelet makes.
const (
	OpStage     Op = "NodeStageVolume"
	OpPublish   Op = "NodePublishVolume"
	OpUnpublish Op = "NodeUnpublishVolume"
	OpUnstage   Op = "NodeUnstageVolume"
)

// Action is one CSI node call the kubelet made.
type Action struct {
	Op   Op
	Node string
	// Handle is the volume handle, PV the PersistentVolume's name.
	Handle, PV string
	// Pod ("namespace/name") and PodUID are set for publish and unpublish.
	Pod    string
	PodUID types.UID
	// Path is the staging path (stage, unstage) or the pod's target path.
	Path     string
	ReadOnly bool
	Err      error
	Took     time.Duration
}

// Kubelet mounts the driver's volumes for the pods on its nodes. Start it with
// Start; Stop ends it (mounts stay, as when a kubelet stops).
type Kubelet struct {
	client      kubernetes.Interface
	driver      string
	nodes       map[string]Node
	callTimeout time.Duration
	resync      time.Duration
	onAction    func(Action)
	// singleNodeMultiWriter is per node: whether its plugin has that capability.
	singleNodeMultiWriter map[string]bool

	factory  informers.SharedInformerFactory
	pods     toolscache.Indexer
	queue    workqueue.TypedRateLimitingInterface[volumeKey]
	events   record.EventBroadcaster
	recorder map[string]record.EventRecorder

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once

	mu sync.Mutex
	// state is what is mounted: by (node, volume handle).
	state map[volumeKey]*volumeState
	// resolved are the pods' claim volumes once resolved, by pod and volume name: a
	// pod keeps a volume it got even when its claim or PV changes later, as with
	// kubelet.
	resolved map[types.UID]map[string]podVolume
	// changed is closed and replaced whenever state changes (WaitFor).
	changed chan struct{}
}

// volumeKey is the unit of work: one volume on one node. The work queue never hands
// the same key to two workers at once, so the calls for a volume on a node are
// serialized (stage before publish, unpublish before unstage) while other volumes
// and nodes proceed in parallel. A key without a handle (resolveKey) resolves the
// claims of the node's pods that are not resolved yet.
type volumeKey struct{ node, handle string }

func resolveKey(node string) volumeKey { return volumeKey{node: node} }

type volumeState struct {
	// staged is the volume as staged; nil when not staged.
	staged    *simnode.Volume
	published map[types.UID]publication
	// failure is the last failed call since the last complete sync.
	failure *Action
}

type publication struct {
	pod      string
	volume   simnode.Volume
	readOnly bool
	target   string
}

// Start starts watching pods, claims and volumes and returns once the caches are
// filled and every node's plugin has told its capabilities (ctx bounds that).
func Start(ctx context.Context, o Options) (_ *Kubelet, err error) {
	if o.Client == nil || len(o.Nodes) == 0 {
		return nil, errors.New("kubeletsim: Client and Nodes are required")
	}
	if o.DriverName == "" {
		o.DriverName = volume.DefaultDriverName
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Resync <= 0 {
		o.Resync = 30 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	k := &Kubelet{
		client: o.Client, driver: o.DriverName, callTimeout: o.CallTimeout, resync: o.Resync, onAction: o.OnAction,
		nodes: map[string]Node{}, singleNodeMultiWriter: map[string]bool{}, recorder: map[string]record.EventRecorder{},
		state: map[volumeKey]*volumeState{}, resolved: map[types.UID]map[string]podVolume{}, changed: make(chan struct{}),
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			k.Stop()
		}
	}()
	if err := k.readCapabilities(ctx, o.Nodes); err != nil {
		return nil, err
	}
	k.events = record.NewBroadcaster(record.WithContext(k.ctx))
	k.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: o.Client.CoreV1().Events("")})
	for name := range k.nodes {
		k.recorder[name] = k.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: name})
	}
	k.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[volumeKey](200*time.Millisecond, 10*time.Second),
		workqueue.TypedRateLimitingQueueConfig[volumeKey]{Name: "kubeletsim"})
	if err := k.startInformers(ctx); err != nil {
		return nil, err
	}
	for range o.Workers {
		k.wg.Go(k.work)
	}
	k.wg.Go(k.resyncLoop)
	return k, nil
}

// readCapabilities asks each node's plugin for its capabilities, as kubelet does
// before its first call: the access modes it sends depend on them.
func (k *Kubelet) readCapabilities(ctx context.Context, nodes []Node) error {
	for _, n := range nodes {
		if _, dup := k.nodes[n.Name()]; dup {
			return fmt.Errorf("kubeletsim: node %s given twice", n.Name())
		}
		k.nodes[n.Name()] = n
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		caps, err := n.Capabilities(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("kubeletsim: NodeGetCapabilities on node %s: %w", n.Name(), err)
		}
		if !slices.Contains(caps, csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME) {
			return fmt.Errorf("kubeletsim: the plugin on node %s lacks STAGE_UNSTAGE_VOLUME; this kubelet always stages", n.Name())
		}
		k.singleNodeMultiWriter[n.Name()] = slices.Contains(caps, csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER)
	}
	return nil
}

func (k *Kubelet) startInformers(ctx context.Context) error {
	k.factory = informers.NewSharedInformerFactory(k.client, 0)
	podInformer := k.factory.Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(toolscache.Indexers{byNode: indexByNode, byClaim: indexByClaim}); err != nil {
		return err
	}
	k.pods = podInformer.GetIndexer()
	// Claims and volumes are watched only to notice when a pod's claim binds; the
	// kubelet reads them from the API server when it resolves a pod's volumes.
	pvcInformer := k.factory.Core().V1().PersistentVolumeClaims()
	pvInformer := k.factory.Core().V1().PersistentVolumes()

	_, _ = podInformer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { k.podChanged(o) },
		UpdateFunc: func(_, o any) { k.podChanged(o) },
		DeleteFunc: k.podDeleted,
	})
	claimChanged := func(o any) {
		if pvc, ok := unwrap(o).(*corev1.PersistentVolumeClaim); ok {
			k.claimChanged(pvc.Namespace + "/" + pvc.Name)
		}
	}
	_, _ = pvcInformer.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: claimChanged, UpdateFunc: func(_, o any) { claimChanged(o) }, DeleteFunc: claimChanged,
	})
	volumeChanged := func(o any) {
		if pv, ok := unwrap(o).(*corev1.PersistentVolume); ok && pv.Spec.ClaimRef != nil {
			k.claimChanged(pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name)
		}
	}
	_, _ = pvInformer.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: volumeChanged, UpdateFunc: func(_, o any) { volumeChanged(o) }, DeleteFunc: volumeChanged,
	})
	k.factory.Start(k.ctx.Done())
	synced := []toolscache.InformerSynced{podInformer.HasSynced, pvcInformer.Informer().HasSynced, pvInformer.Informer().HasSynced}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !toolscache.WaitForCacheSync(cctx.Done(), synced...) {
		return fmt.Errorf("kubeletsim: informer caches did not sync: %w", cctx.Err())
	}
	return nil
}

// Stop stops the workers and the watches; calls in flight are cancelled. Mounts
// stay as they are, as when a kubelet stops. Stop may be called more than once.
func (k *Kubelet) Stop() {
	k.stopOnce.Do(func() {
		k.cancel()
		if k.queue != nil {
			k.queue.ShutDown()
		}
		k.wg.Wait()
		if k.factory != nil {
			k.factory.Shutdown()
		}
		if k.events != nil {
			k.events.Shutdown()
		}
	})
}
