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
	corelisters "k8s.io/client-go/listers/core/v1"
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
	pvcs     corelisters.PersistentVolumeClaimLister
	pvs      corelisters.PersistentVolumeLister
	queue    workqueue.TypedRateLimitingInterface[volumeKey]
	events   record.EventBroadcaster
	recorder map[string]record.EventRecorder

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// state is what is mounted: by (node, volume handle).
	state map[volumeKey]*volumeState
	// resolved are the pods' volumes once resolved: a pod keeps a volume it got even
	// when its claim or PV changes later, as with kubelet.
	resolved map[types.UID]map[string]podVolume
	// changed is closed and replaced whenever state changes (WaitFor).
	changed chan struct{}
}

// volumeKey is the unit of work: one volume on one node. The work queue never hands
// the same key to two workers at once, so the calls for a volume on a node are
// serialized (stage before publish, unpublish before unstage) while other volumes
// and nodes proceed in parallel.
type volumeKey struct{ node, handle string }

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

// Index names of the pod informer.
const (
	byNode  = "node"
	byClaim = "claim"
)

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
	pvcInformer := k.factory.Core().V1().PersistentVolumeClaims()
	pvInformer := k.factory.Core().V1().PersistentVolumes()
	k.pvcs, k.pvs = pvcInformer.Lister(), pvInformer.Lister()

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

// Stop stops the workers and the watches. Mounts stay as they are.
func (k *Kubelet) Stop() {
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
}

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

// keysOf returns the (node, volume) pairs a pod is or may be involved in: the
// volumes it resolves to now and those it has published.
//
// The resolved volumes count even for a pod that is going: a publish for it may be
// in flight, and its key must be queued again to undo it.
func (k *Kubelet) keysOf(pod *corev1.Pod) []volumeKey {
	if k.alive(pod) {
		_, _ = k.volumesOf(pod) // resolves and remembers
	}
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
			add(volumeKey{pod.Spec.NodeName, v.volume.Handle})
		}
	}
	for key, s := range k.state {
		if _, ok := s.published[pod.UID]; ok {
			add(key)
		}
	}
	return keys
}

// volumesOf returns the driver's volumes a pod uses, resolving those not resolved
// yet. Volumes that cannot be resolved yet are left out, with the reason when it is
// an error rather than a wait.
func (k *Kubelet) volumesOf(pod *corev1.Pod) ([]podVolume, []error) {
	var out []podVolume
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if name, _, _ := claimName(pod, v); name == "" {
			continue
		}
		k.mu.Lock()
		pv, ok := k.resolved[pod.UID][v.Name]
		k.mu.Unlock()
		if !ok {
			var err error
			pv, err = k.resolve(pod, v)
			switch {
			case errors.Is(err, errNotOurs), errors.Is(err, errWaiting):
				continue
			case err != nil:
				errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
				continue
			}
			k.mu.Lock()
			if k.resolved[pod.UID] == nil {
				k.resolved[pod.UID] = map[string]podVolume{}
			}
			k.resolved[pod.UID][v.Name] = pv
			k.mu.Unlock()
		}
		out = append(out, pv)
	}
	return out, errs
}

// want is a pod that wants a volume on the node.
type want struct {
	pod *corev1.Pod
	vol podVolume
}

// desired lists the live pods on the key's node that use its volume.
func (k *Kubelet) desired(key volumeKey) map[types.UID]want {
	out := map[types.UID]want{}
	objs, _ := k.pods.ByIndex(byNode, key.node)
	for _, o := range objs {
		pod := o.(*corev1.Pod)
		if !k.alive(pod) {
			continue
		}
		vols, errs := k.volumesOf(pod)
		for _, err := range errs {
			k.recorder[key.node].Event(pod, corev1.EventTypeWarning, "FailedMount", err.Error())
		}
		for _, v := range vols {
			if v.volume.Handle == key.handle {
				out[pod.UID] = want{pod: pod, vol: v}
			}
		}
	}
	return out
}

func (k *Kubelet) work() {
	for {
		key, shutdown := k.queue.Get()
		if shutdown {
			return
		}
		err := k.sync(key)
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

// sync makes what is mounted for one volume on one node match what its pods want:
// unpublish pods that are gone, stage if needed, publish new pods, and unstage when
// no pod is left.
func (k *Kubelet) sync(key volumeKey) error {
	node := k.nodes[key.node]
	wants := k.desired(key)
	staged, published := k.current(key)
	var errs []error

	for _, uid := range sortedKeys(published) {
		if _, ok := wants[uid]; ok {
			continue
		}
		p := published[uid]
		err := k.call(Action{Op: OpUnpublish, Node: key.node, Handle: key.handle, PV: p.volume.PVName, Pod: p.pod, PodUID: uid, Path: p.target},
			func(ctx context.Context) (string, error) { return p.target, node.Unpublish(ctx, p.volume, string(uid)) })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.update(key, func(s *volumeState) { delete(s.published, uid) })
	}

	uids := sortedKeys(wants)
	if len(uids) > 0 && staged == nil {
		v := wants[uids[0]].vol.volume
		err := k.call(Action{Op: OpStage, Node: key.node, Handle: key.handle, PV: v.PVName},
			func(ctx context.Context) (string, error) { return node.Stage(ctx, v) })
		if err != nil {
			for _, uid := range uids {
				w := wants[uid]
				k.recorder[key.node].Eventf(w.pod, corev1.EventTypeWarning, "FailedMount",
					"MountVolume.MountDevice failed for volume %q (%s): %v", w.vol.name, v.PVName, err)
			}
			return errors.Join(append(errs, err)...)
		}
		k.update(key, func(s *volumeState) { s.staged = &v })
	}
	for _, uid := range uids {
		if _, ok := published[uid]; ok {
			continue
		}
		w := wants[uid]
		pod := w.pod.Namespace + "/" + w.pod.Name
		var target string
		err := k.call(Action{Op: OpPublish, Node: key.node, Handle: key.handle, PV: w.vol.volume.PVName, Pod: pod, PodUID: uid, ReadOnly: w.vol.readOnly},
			func(ctx context.Context) (string, error) {
				var err error
				target, err = node.Publish(ctx, w.vol.volume, string(uid), w.vol.readOnly)
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

	if len(uids) == 0 {
		staged, published = k.current(key)
		if staged != nil && len(published) == 0 {
			v := *staged
			err := k.call(Action{Op: OpUnstage, Node: key.node, Handle: key.handle, PV: v.PVName},
				func(ctx context.Context) (string, error) { return "", node.Unstage(ctx, v) })
			if err != nil {
				errs = append(errs, err)
			} else {
				k.update(key, func(s *volumeState) { s.staged = nil })
			}
		}
	}
	return errors.Join(errs...)
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

func sortedKeys[V any](m map[types.UID]V) []types.UID {
	out := make([]types.UID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
