package kubeletsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// These tests run the kubelet against client-go's fake clientset (real informers,
// watches and events, an in-memory API) and in-memory node plugins that record any
// breach of the call order kubelet guarantees. The kubelet with real node plugins and
// a real control plane is exercised by test/demo.

const (
	driver = "nfs.pvnfs.io"
	ns     = "app"
	// waitLimit bounds each wait: a deadline against hangs, not a speed assertion.
	waitLimit = 30 * time.Second
)

type fixture struct {
	t      *testing.T
	client *fake.Clientset
	nodes  map[string]*fakeNode
	k      *Kubelet

	mu      sync.Mutex
	actions []Action
}

func newFixture(t *testing.T, nodeNames ...string) *fixture {
	t.Helper()
	f := &fixture{t: t, client: fake.NewClientset(), nodes: map[string]*fakeNode{}}
	var nodes []Node
	for _, n := range nodeNames {
		f.nodes[n] = newFakeNode(n)
		nodes = append(nodes, f.nodes[n])
	}
	return f.start(nodes)
}

func (f *fixture) start(nodes []Node) *fixture {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	// No resync within a test: events and retries alone must get every state right.
	k, err := Start(ctx, Options{Client: f.client, Nodes: nodes, Resync: time.Hour, OnAction: func(a Action) {
		f.mu.Lock()
		f.actions = append(f.actions, a)
		f.mu.Unlock()
	}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.k = k
	f.t.Cleanup(func() {
		k.Stop()
		for _, n := range f.nodes {
			for _, v := range n.failures() {
				f.t.Error(v)
			}
		}
	})
	return f
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// volume creates a bound claim and its PV of the given driver.
func (f *fixture) volume(name, driverName string, mode corev1.PersistentVolumeAccessMode, mutate ...func(*corev1.PersistentVolume)) {
	f.t.Helper()
	ctx := ctxFor(f.t)
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-claim-" + name)},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{mode}, VolumeName: "pv-" + name,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name},
		Spec: corev1.PersistentVolumeSpec{
			AccessModes:  []corev1.PersistentVolumeAccessMode{mode},
			MountOptions: []string{"nfsvers=4.1"},
			ClaimRef:     &corev1.ObjectReference{Namespace: ns, Name: name, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driverName, VolumeHandle: "handle-" + name,
				VolumeAttributes: map[string]string{"server": "10.96.0.10", "share": "/data/export"},
			}},
		},
	}
	for _, m := range mutate {
		m(pv)
	}
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// pod creates a Running pod on a node using the named claims (":ro" suffix: read-only).
func (f *fixture) pod(name, node string, claims ...string) types.UID {
	f.t.Helper()
	uid := types.UID("uid-pod-" + name)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: uid},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "none"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for i, c := range claims {
		claim, ro := strings.CutSuffix(c, ":ro")
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: fmt.Sprintf("v%d", i), VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: ro}}})
	}
	if _, err := f.client.CoreV1().Pods(ns).Create(ctxFor(f.t), pod, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	return uid
}

func (f *fixture) deletePod(name string) {
	f.t.Helper()
	if err := f.client.CoreV1().Pods(ns).Delete(ctxFor(f.t), name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// waitMounted waits until the kubelet's state and every fake node show exactly the
// given pods (by UID) publishing the volume, with it staged on their nodes only.
func (f *fixture) waitMounted(handle string, want map[string][]types.UID) {
	f.t.Helper()
	wantStaged := []string{}
	for node, pods := range want {
		if len(pods) > 0 {
			wantStaged = append(wantStaged, node)
		}
	}
	slices.Sort(wantStaged)
	s, err := f.k.WaitFor(ctxFor(f.t), func(s Snapshot) bool {
		if !slices.Equal(s.NodesStaging(handle), wantStaged) {
			return false
		}
		got := map[string][]types.UID{}
		for _, m := range s.MountsOf(handle) {
			got[m.Node] = append(got[m.Node], m.PodUID)
		}
		for node := range f.nodes {
			w := slices.Clone(want[node])
			slices.Sort(w)
			if !slices.Equal(got[node], w) {
				return false
			}
		}
		return true
	})
	if err != nil {
		f.t.Fatalf("volume %s never mounted as %v: %v\nlast state: staged %v, mounts %+v", handle, want, err, s.Staged, s.MountsOf(handle))
	}
	// The kubelet records a call after it returns; the fake saw it already.
	for name, n := range f.nodes {
		staged, pods := n.mounted(handle)
		var w []string
		for _, uid := range want[name] {
			w = append(w, string(uid))
		}
		slices.Sort(w)
		if staged != slices.Contains(wantStaged, name) || !slices.Equal(pods, w) {
			f.t.Errorf("plugin on %s: staged %v, published %v; want staged %v, published %v", name, staged, pods, slices.Contains(wantStaged, name), w)
		}
	}
}

func TestStagesOncePerNodeAndPublishesPerPodAsKubelet(t *testing.T) {
	f := newFixture(t, "node-a", "node-b")
	f.volume("html", driver, corev1.ReadWriteMany)
	a1, a2, a3 := f.pod("a1", "node-a", "html"), f.pod("a2", "node-a", "html"), f.pod("a3", "node-a", "html:ro")
	b1 := f.pod("b1", "node-b", "html")
	f.pod("elsewhere", "node-c", "html") // not a managed node
	f.pod("unscheduled", "", "html")
	f.waitMounted("handle-html", map[string][]types.UID{"node-a": {a1, a2, a3}, "node-b": {b1}})

	for _, n := range []string{"node-a", "node-b"} {
		if c := f.nodes[n].count("stage", "handle-html"); c != 1 {
			t.Errorf("%s: NodeStageVolume called %d times, want once per volume per node", n, c)
		}
	}
	pub := f.nodes["node-a"].lastPublish(a3)
	if !pub.readOnly {
		t.Error("a pod volume with readOnly: true was published read-write")
	}
	if f.nodes["node-a"].lastPublish(a1).readOnly {
		t.Error("a read-write pod volume was published read-only")
	}
	v := pub.volume
	if v.Handle != "handle-html" || v.PVName != "pv-html" || v.Context["server"] != "10.96.0.10" || v.Context["share"] != "/data/export" {
		t.Errorf("published volume %+v: want the PV's handle, name and volume attributes", v)
	}
	mnt := v.Capability.GetMount()
	if v.Capability.GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER ||
		mnt == nil || !slices.Equal(mnt.GetMountFlags(), []string{"nfsvers=4.1"}) {
		t.Errorf("capability %v: want a mount with the PV's mountOptions, MULTI_NODE_MULTI_WRITER", v.Capability)
	}
	m, ok := f.k.Snapshot().Published(a1, "handle-html")
	if !ok || m.Node != "node-a" || m.Pod != ns+"/a1" || !strings.HasSuffix(m.Target, "/pods/uid-pod-a1/volumes/kubernetes.io~csi/pv-html/mount") {
		t.Errorf("mount of a1 = %+v, %v", m, ok)
	}
}

func TestUnpublishesGoneAndFinishedPodsAndUnstagesLastOneAsKubelet(t *testing.T) {
	f := newFixture(t, "node-a", "node-b")
	f.volume("html", driver, corev1.ReadWriteMany)
	a1, a2 := f.pod("a1", "node-a", "html"), f.pod("a2", "node-a", "html")
	f.pod("b1", "node-b", "html")
	f.pod("b2", "node-b", "html")
	f.waitMounted("handle-html", map[string][]types.UID{"node-a": {a1, a2}, "node-b": {"uid-pod-b1", "uid-pod-b2"}})

	// A pod that finished (a Job's) gives its volume back while its object stays.
	done, err := f.client.CoreV1().Pods(ns).Get(ctxFor(t), "a2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done.Status.Phase = corev1.PodSucceeded
	if _, err := f.client.CoreV1().Pods(ns).UpdateStatus(ctxFor(t), done, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.deletePod("b1")
	f.waitMounted("handle-html", map[string][]types.UID{"node-a": {a1}, "node-b": {"uid-pod-b2"}})
	if c := f.nodes["node-b"].count("unstage", "handle-html"); c != 0 {
		t.Errorf("node-b unstaged with a pod left")
	}
	f.deletePod("b2")
	f.waitMounted("handle-html", map[string][]types.UID{"node-a": {a1}})
	if c := f.nodes["node-b"].count("unstage", "handle-html"); c != 1 {
		t.Errorf("node-b: NodeUnstageVolume called %d times after its last pod went, want 1", c)
	}
}

func TestAccessModesAsKubeletMapsThem(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode corev1.PersistentVolumeAccessMode
		snmw bool
		want csi.VolumeCapability_AccessMode_Mode
	}{
		{"RWX", corev1.ReadWriteMany, true, csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
		{"ROX", corev1.ReadOnlyMany, true, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY},
		{"RWO, plugin with SINGLE_NODE_MULTI_WRITER", corev1.ReadWriteOnce, true, csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER},
		{"RWO, plugin without", corev1.ReadWriteOnce, false, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		{"RWOP, plugin with SINGLE_NODE_MULTI_WRITER", corev1.ReadWriteOncePod, true, csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER},
		{"RWOP, plugin without", corev1.ReadWriteOncePod, false, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := accessMode(tc.mode, tc.snmw); got != tc.want {
				t.Errorf("accessMode(%s, %v) = %s, want %s", tc.mode, tc.snmw, got, tc.want)
			}
		})
	}
}

func TestWaitsForClaimToBindAsKubelet(t *testing.T) {
	f := newFixture(t, "node-a")
	ctx := ctxFor(t)
	pending := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: ns, UID: "uid-claim-late"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	if _, err := f.client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pending, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	uid := f.pod("early", "node-a", "late")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-late"},
		Spec: corev1.PersistentVolumeSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			ClaimRef:    &corev1.ObjectReference{Namespace: ns, Name: "late", UID: pending.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driver, VolumeHandle: "handle-late", VolumeAttributes: map[string]string{"server": "10.96.0.11", "share": "/data/export"}}},
		},
	}
	if _, err := f.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.k.Snapshot().Mounts); n != 0 {
		t.Fatalf("%d mounts before the claim is bound", n)
	}
	bound := pending.DeepCopy()
	bound.Spec.VolumeName = "pv-late"
	bound.Status.Phase = corev1.ClaimBound
	if _, err := f.client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitMounted("handle-late", map[string][]types.UID{"node-a": {uid}})
}

func TestLeavesOtherDriversAndRefusesSecretsAsKubelet(t *testing.T) {
	f := newFixture(t, "node-a")
	f.volume("other", "other.csi.example.com", corev1.ReadWriteMany)
	f.volume("secret", driver, corev1.ReadWriteMany, func(pv *corev1.PersistentVolume) {
		pv.Spec.CSI.NodePublishSecretRef = &corev1.SecretReference{Namespace: ns, Name: "s"}
	})
	f.volume("html", driver, corev1.ReadWriteMany)
	uid := f.pod("p", "node-a", "other", "secret", "html")
	f.waitMounted("handle-html", map[string][]types.UID{"node-a": {uid}})
	for _, h := range []string{"handle-other", "handle-secret"} {
		if c := f.nodes["node-a"].count("stage", h); c != 0 {
			t.Errorf("volume %s was staged", h)
		}
	}
	// The refusal is a FailedMount event on the pod, as kubelet reports it.
	err := pollEvents(t, f, func(e corev1.Event) bool {
		return e.Reason == "FailedMount" && e.InvolvedObject.Name == "p" && strings.Contains(e.Message, "secrets")
	})
	if err != nil {
		t.Error(err)
	}
}

func TestRetriesFailedCallsAndReportsThemAsKubelet(t *testing.T) {
	n := newFakeNode("node-a")
	n.failNext["stage handle-html"] = 2
	n.failNext["publish handle-html"] = 1
	f := &fixture{t: t, client: fake.NewClientset(), nodes: map[string]*fakeNode{"node-a": n}}
	f.start([]Node{n})
	f.volume("html", driver, corev1.ReadWriteMany)
	uid := f.pod("p", "node-a", "html")
	f.waitMounted("handle-html", map[string][]types.UID{"node-a": {uid}})
	if c := n.count("stage", "handle-html"); c != 3 {
		t.Errorf("NodeStageVolume called %d times, want 3 (two injected failures, then success)", c)
	}
	// A failure is forgotten once its volume is synced completely, just after the
	// last call.
	if s, err := f.k.WaitFor(ctxFor(t), func(s Snapshot) bool { return len(s.Failures) == 0 }); err != nil {
		t.Errorf("failures left after success: %s", s.FailureSummary())
	}
	if err := pollEvents(t, f, func(e corev1.Event) bool {
		return e.Reason == "FailedMount" && strings.Contains(e.Message, "MountVolume.MountDevice failed") && strings.Contains(e.Message, "injected failure")
	}); err != nil {
		t.Error(err)
	}
}

func TestKeepsMountWhileClaimAndVolumeGoAsKubelet(t *testing.T) {
	f := newFixture(t, "node-a")
	f.volume("html", driver, corev1.ReadWriteMany)
	uid := f.pod("p", "node-a", "html")
	f.waitMounted("handle-html", map[string][]types.UID{"node-a": {uid}})
	ctx := ctxFor(t)
	if err := f.client.CoreV1().PersistentVolumes().Delete(ctx, "pv-html", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "html", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod keeps what it mounted; a new pod of the gone claim gets nothing.
	f.pod("late", "node-a", "html")
	f.deletePod("p")
	f.waitMounted("handle-html", map[string][]types.UID{})
	if c := f.nodes["node-a"].count("publish", "handle-html"); c != 1 {
		t.Errorf("NodePublishVolume called %d times, want once (the pod of the gone claim must get nothing)", c)
	}
}

// TestConcurrentPodChurnAsKubelet creates and deletes pods of three volumes on four
// nodes from many goroutines at once, against plugins that take a while per call,
// and checks that what ends up mounted is exactly what the surviving pods use, and
// that no plugin ever saw overlapping calls on a volume, a publish before its stage
// or an unstage under a published pod.
func TestConcurrentPodChurnAsKubelet(t *testing.T) {
	nodeNames := []string{"n1", "n2", "n3", "n4"}
	f := newFixture(t, nodeNames...)
	for _, n := range f.nodes {
		n.delay = time.Millisecond
	}
	vols := []string{"v1", "v2", "v3"}
	for _, v := range vols {
		f.volume(v, driver, corev1.ReadWriteMany)
	}
	const pods, workers = 240, 12
	rng := rand.New(rand.NewPCG(1, 2))
	type spec struct {
		name, node, vol string
		keep            bool
		// pause is how long to wait before deleting: sometimes the kubelet has not
		// seen the pod yet, sometimes it is mounting it.
		pause time.Duration
	}
	specs := make([]spec, pods)
	kept := 0
	for i := range specs {
		specs[i] = spec{fmt.Sprintf("p%03d", i), nodeNames[rng.IntN(len(nodeNames))], vols[rng.IntN(len(vols))],
			rng.IntN(4) == 0, time.Duration(rng.IntN(3)) * time.Millisecond}
		if specs[i].keep {
			kept++
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < pods; i += workers {
				s := specs[i]
				f.pod(s.name, s.node, s.vol)
				if !s.keep {
					time.Sleep(s.pause)
					f.deletePod(s.name)
				}
			}
		})
	}
	wg.Wait()
	for _, v := range vols {
		want := map[string][]types.UID{}
		for _, s := range specs {
			if s.keep && s.vol == v {
				want[s.node] = append(want[s.node], types.UID("uid-pod-"+s.name))
			}
		}
		f.waitMounted("handle-"+v, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("%d CSI calls for %d pods (%d kept) on %d nodes", len(f.actions), pods, kept, len(nodeNames))
}

// pollEvents waits until an event matching match was recorded. Events are written
// by the broadcaster asynchronously; nothing notifies of them.
func pollEvents(t *testing.T, f *fixture, match func(corev1.Event) bool) error {
	t.Helper()
	ctx := ctxFor(t)
	for {
		evs, err := f.client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, e := range evs.Items {
				if match(e) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			var seen []string
			if evs != nil {
				for _, e := range evs.Items {
					seen = append(seen, e.Reason+": "+e.Message)
				}
			}
			return fmt.Errorf("no matching event; events: %q", seen)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
