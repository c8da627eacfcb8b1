package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// poll waits for cond, checking every 50 ms; it observes other controllers and
// never asserts on time.
func poll(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		return cond(ctx), nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Fault 1: the server pod is deleted. A new pod serves behind the same ClusterIP; the
// volume condition turns abnormal and back to normal; the clients' files are intact.
func TestFaultServerPodDeleted(t *testing.T) {
	e := setup(t)
	v := e.createVolume(t, "fault-pod-deleted", nil)
	m := e.mountEverywhere(t, v)
	ctx := ctxFor(t, 3*time.Minute)
	old := e.serverPod(ctx, v.Handle)
	if old == nil {
		t.Fatal("no server pod")
	}

	// Watch the condition as the provisioner-facing API reports it.
	var sawAbnormal string
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if abnormal, msg, err := e.condition(ctx, v.Handle); err == nil && abnormal && sawAbnormal == "" {
				sawAbnormal = msg
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	if err := e.cluster.Client.CoreV1().Pods(namespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a new server pod serving", 2*time.Minute, func(ctx context.Context) bool {
		p := e.serverPod(ctx, v.Handle)
		abnormal, _, err := e.condition(ctx, v.Handle)
		return p != nil && p.UID != old.UID && err == nil && !abnormal
	})
	recovery := time.Since(start)
	close(stop)
	<-watched
	if sawAbnormal == "" {
		t.Error("the volume condition never turned abnormal while the server pod was replaced")
	} else {
		t.Logf("condition while replaced: %s", sawAbnormal)
	}
	if got := e.serviceIP(ctx, v.Handle); got != v.Context[volume.ContextServer] {
		t.Errorf("ClusterIP changed from %s to %s", v.Context[volume.ContextServer], got)
	}
	report(t, "1. server pod deleted", recovery, e.checkIntact(t, m))
}

func (e *env) serviceIP(ctx context.Context, id string) string {
	svc, err := e.cluster.Client.CoreV1().Services(namespace).Get(ctx, volume.ObjectName(id), metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return svc.Spec.ClusterIP
}

// Fault 3: the Service is deleted. The reconciler recreates it with the same
// ClusterIP, the address every node has mounted.
func TestFaultServiceDeleted(t *testing.T) {
	e := setup(t)
	v := e.createVolume(t, "fault-service-deleted", nil)
	m := e.mountEverywhere(t, v)
	ctx := ctxFor(t, 3*time.Minute)
	ip := v.Context[volume.ContextServer]
	start := time.Now()
	if err := e.cluster.Client.CoreV1().Services(namespace).Delete(ctx, volume.ObjectName(v.Handle), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the Service back with its ClusterIP and the volume serving", 2*time.Minute, func(ctx context.Context) bool {
		abnormal, _, err := e.condition(ctx, v.Handle)
		return e.serviceIP(ctx, v.Handle) == ip && err == nil && !abnormal
	})
	report(t, "3. Service deleted", time.Since(start), e.checkIntact(t, m))
}

// Fault 4: the controller process is killed while volumes are being provisioned:
// it crashes the moment one of them has its Service and backend PVC and not yet its
// server Deployment (the test sets that step with --test-crash-file), with the
// others wherever they are. After a restart, the provisioner's retries converge on
// exactly one set of objects per volume. (pkg/controller tests kill it after each
// individual step.)
func TestFaultControllerKilledDuringProvisioning(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, 5*time.Minute)
	const crashAfter = controller.StepBackendPVCEnsured
	if err := os.WriteFile(e.crashFile, []byte(crashAfter), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(e.crashFile) }) // disarmed, should the crash not come
	const n = 10
	names := make([]string, n)
	var wg sync.WaitGroup
	for i := range names {
		names[i] = fmt.Sprintf("fault-killed-%d", i)
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, _ = e.ctl.Controller.CreateVolume(callCtx, &csi.CreateVolumeRequest{Name: name,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, VolumeCapabilities: []*csi.VolumeCapability{rwx()}})
		}(names[i])
	}
	poll(t, "the controller crashing after a volume's step "+crashAfter, time.Minute, func(context.Context) bool { return !e.ctl.Running() })
	wg.Wait()
	half := 0
	for _, name := range names {
		c := e.objectCounts(ctx, t, name)
		if c["service"] == 1 && c["pvc"] == 1 && c["deployment"] == 0 {
			half++
		}
	}
	if half == 0 {
		t.Errorf("the crash left no volume with its Service and backend PVC but no Deployment; it did not land after %s", crashAfter)
	}
	t.Logf("the crash left %d of %d volumes half made", half, n)
	start := time.Now()
	if err := e.ctl.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		v := e.createVolume(t, name, nil) // the provisioner's retry
		if v.Context[volume.ContextServer] == "" {
			t.Errorf("%s: no server address", name)
		}
	}
	recovery := time.Since(start)
	for _, name := range names {
		for kind, count := range e.objectCounts(ctx, t, name) {
			if count != 1 {
				t.Errorf("%s: %d %s(s), want exactly 1", name, count, kind)
			}
		}
	}
	report(t, "4. controller killed mid-provisioning", recovery, "yes (no data yet; objects converge)")
}

// logServerTimeline logs when the API server recorded each step of a volume's server
// pod (to the second, as the API server stores times), relative to t0: which
// component of the control plane took the time.
func (e *env) logServerTimeline(ctx context.Context, t *testing.T, id string, t0 time.Time) {
	t.Helper()
	pod := e.serverPod(ctx, id)
	if pod == nil {
		t.Logf("  no server pod of %s to break the time down", id)
		return
	}
	since := func(at metav1.Time) string { return fmt.Sprintf("%6.0fs", at.Sub(t0).Seconds()) }
	sel := metav1.ListOptions{LabelSelector: volume.LabelVolumeID + "=" + id}
	if deps, err := e.cluster.Client.AppsV1().Deployments(namespace).List(ctx, sel); err == nil && len(deps.Items) == 1 {
		t.Logf("  %s Deployment created (pvnfs)", since(deps.Items[0].CreationTimestamp))
	}
	if rss, err := e.cluster.Client.AppsV1().ReplicaSets(namespace).List(ctx, sel); err == nil && len(rss.Items) == 1 {
		t.Logf("  %s ReplicaSet created (the Deployment controller of kube-controller-manager)", since(rss.Items[0].CreationTimestamp))
	}
	t.Logf("  %s server pod created (the ReplicaSet controller of kube-controller-manager)", since(pod.CreationTimestamp))
	for _, c := range pod.Status.Conditions {
		switch c.Type {
		case corev1.PodScheduled:
			t.Logf("  %s server pod scheduled (kube-scheduler)", since(c.LastTransitionTime))
		case corev1.PodReady:
			t.Logf("  %s server pod Ready (kwok)", since(c.LastTransitionTime))
		}
	}
	// An EndpointSlice has no condition times; the time of its last write is in its
	// managed fields.
	slices, err := e.cluster.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx,
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + volume.ObjectName(id)})
	if err == nil {
		for _, sl := range slices.Items {
			for _, f := range sl.ManagedFields {
				if f.Time != nil {
					t.Logf("  %s EndpointSlice written by %s (kube-controller-manager's EndpointSlice controller)", since(*f.Time), f.Manager)
				}
			}
		}
	}
}

func (e *env) objectCounts(ctx context.Context, t *testing.T, id string) map[string]int {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: volume.LabelVolumeID + "=" + id}
	k := e.cluster.Client
	out := map[string]int{}
	pvcs, err := k.CoreV1().PersistentVolumeClaims(namespace).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	out["pvc"] = len(pvcs.Items)
	deps, _ := k.AppsV1().Deployments(namespace).List(ctx, sel)
	out["deployment"] = len(deps.Items)
	svcs, _ := k.CoreV1().Services(namespace).List(ctx, sel)
	out["service"] = len(svcs.Items)
	pods, _ := k.CoreV1().Pods(namespace).List(ctx, sel)
	out["pod"] = len(pods.Items)
	return out
}

// Fault 5: the node plugin restarts (gracefully, and killed) with volumes staged and
// published. Mounts belong to the node, not to the plugin: they stay, and kubelet's
// repeated NodeStage/NodePublish calls are idempotent.
func TestFaultNodePluginRestarted(t *testing.T) {
	e := setup(t)
	v := e.createVolume(t, "fault-node-plugin", nil)
	m := e.mountEverywhere(t, v)
	ctx := ctxFor(t, 2*time.Minute)
	n := e.nodes[0]
	before, err := n.VolumeMounts(v.Context[volume.ContextServer] + ":" + v.Context[volume.ContextShare])
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := n.KillPlugin(); err != nil {
		t.Fatal(err)
	}
	if err := n.StartPlugin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Restart(ctx); err != nil { // and a graceful one
		t.Fatal(err)
	}
	recovery := time.Since(start)
	if _, err := n.Stage(ctx, v); err != nil {
		t.Errorf("repeated NodeStage after restart: %v", err)
	}
	if _, err := n.Publish(ctx, v, fmt.Sprintf("pod-%s-0", v.Handle), false); err != nil {
		t.Errorf("repeated NodePublish after restart: %v", err)
	}
	after, err := n.VolumeMounts(v.Context[volume.ContextServer] + ":" + v.Context[volume.ContextShare])
	if err != nil {
		t.Fatal(err)
	}
	if len(after.NFS) != len(before.NFS) || len(after.Pods) != len(before.Pods) || len(after.NFS) != 1 {
		t.Errorf("mounts before the restart %+v, after %+v", before, after)
	}
	report(t, "5. node plugin restarted with volumes published", recovery, e.checkIntact(t, m))
}

// Fault 6: the API server is down for 30 s. Mounting keeps working (the node plugin
// needs no API), provisioning answers Unavailable instead of hanging, and everything
// recovers without restarting anything.
func TestFaultAPIServerDown(t *testing.T) {
	e := setup(t)
	v := e.createVolume(t, "fault-api-down", nil)
	m := e.mountEverywhere(t, v)
	existing := e.createVolume(t, "fault-api-down-existing", nil)
	ctx := ctxFor(t, 5*time.Minute)

	e.cluster.StopAPIServer()
	down := time.Now()
	n := e.nodes[1]
	pod := "pod-during-outage"
	if _, err := n.Publish(ctx, v, pod, true); err != nil {
		t.Errorf("NodePublish during the outage: %v", err)
	}
	if got, err := n.ReadFile(n.TargetPath(pod, v.PVName) + "/" + m.file); err != nil || string(got) != string(m.content) {
		t.Errorf("a pod published during the outage reads %q, %v", got, err)
	}
	if err := n.Unpublish(ctx, v, pod); err != nil {
		t.Errorf("NodeUnpublish during the outage: %v", err)
	}
	callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err := e.ctl.Controller.CreateVolume(callCtx, &csi.CreateVolumeRequest{Name: "fault-api-down-new",
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, VolumeCapabilities: []*csi.VolumeCapability{rwx()}})
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("CreateVolume during the outage = %v, want Unavailable", err)
	} else {
		t.Logf("CreateVolume during the outage: %v", err)
	}
	callCtx, cancel = context.WithTimeout(ctx, 20*time.Second)
	_, err = e.ctl.Controller.DeleteVolume(callCtx, &csi.DeleteVolumeRequest{VolumeId: existing.Handle})
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("DeleteVolume during the outage = %v, want Unavailable", err)
	}
	// The livenessprobe sidecar restarts the controller when Probe is not ready,
	// and a restart cannot bring the API server back.
	if probe, err := e.ctl.Identity.Probe(ctx, &csi.ProbeRequest{}); err != nil || !probe.GetReady().GetValue() {
		t.Errorf("Probe during the outage = %v, %v; want ready (alive: a restart would not help)", probe, err)
	}
	time.Sleep(time.Until(down.Add(30 * time.Second)))

	start := time.Now()
	if err := e.cluster.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server ready again %v after its start", time.Since(start).Round(time.Millisecond))
	fresh := e.createVolume(t, "fault-api-down-new", nil)
	t.Logf("new volume provisioned %v after the API server's start", time.Since(start).Round(time.Millisecond))
	e.logServerTimeline(ctx, t, fresh.Handle, start)
	if err := retry(ctx, func(ctx context.Context) error {
		_, err := e.ctl.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: existing.Handle})
		return err
	}); err != nil {
		t.Errorf("DeleteVolume after the outage: %v", err)
	}
	if !e.ctl.Running() {
		t.Error("the controller exited during the outage")
	}
	report(t, "6. API server down 30 s", time.Since(start), e.checkIntact(t, m))
}

// Fault 7: 100 concurrent CreateVolume/DeleteVolume calls over 20 names, repeated,
// then one last call per name. The objects left match exactly the volumes whose
// last call was a create.
func TestFaultConcurrentCreateDeleteStorm(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, 10*time.Minute)
	const names, calls, rounds = 20, 100, 3
	name := func(i int) string { return fmt.Sprintf("storm-%02d", i%names) }
	rng := rand.New(rand.NewPCG(7, 7))
	op := func(create bool, n string) error {
		return retry(ctx, func(ctx context.Context) error {
			if create {
				_, err := e.ctl.Controller.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: n,
					CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, VolumeCapabilities: []*csi.VolumeCapability{rwx()},
					Parameters: map[string]string{parameters.NFSThreads: "4"}})
				return err
			}
			_, err := e.ctl.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: n})
			return err
		})
	}
	var mu sync.Mutex
	var failures []string
	run := func(plan map[int]bool, count int) {
		var wg sync.WaitGroup
		for i := 0; i < count; i++ {
			wg.Add(1)
			go func(i int, create bool) {
				defer wg.Done()
				if err := op(create, name(i)); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s create=%v: %v", name(i), create, err))
					mu.Unlock()
				}
			}(i, plan[i])
		}
		wg.Wait()
	}
	start := time.Now()
	for r := 0; r < rounds; r++ {
		plan := map[int]bool{}
		for i := 0; i < calls; i++ {
			plan[i] = rng.IntN(2) == 0
		}
		run(plan, calls)
	}
	final := map[int]bool{}
	want := map[string]bool{}
	for i := 0; i < names; i++ {
		final[i] = i%2 == 0
		want[name(i)] = final[i]
	}
	run(final, names)
	t.Logf("%d rounds of %d concurrent calls over %d names, then one call per name: %v", rounds, calls, names, time.Since(start).Round(time.Millisecond))
	for _, f := range failures {
		t.Error(f)
	}
	for n, exists := range want {
		counts := e.objectCounts(ctx, t, n)
		for kind, c := range counts {
			if exists && c != 1 || !exists && c != 0 {
				t.Errorf("%s (last call create=%v): %d %s(s)", n, exists, c, kind)
			}
		}
	}
	list, err := e.ctl.Controller.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var listed, wanted []string
	for _, en := range list.Entries {
		if strings.HasPrefix(en.Volume.VolumeId, "storm-") {
			listed = append(listed, en.Volume.VolumeId)
		}
	}
	for n, exists := range want {
		if exists {
			wanted = append(wanted, n)
		}
	}
	sort.Strings(listed)
	sort.Strings(wanted)
	if strings.Join(listed, ",") != strings.Join(wanted, ",") {
		t.Errorf("ListVolumes lists %v, want %v", listed, wanted)
	}
	for n, exists := range want {
		if exists {
			_ = op(false, n)
		}
	}
	report(t, "7. 100 concurrent create/delete over 20 names, repeated", time.Since(start), "yes (object sets match exactly)")
}

// Fault 2: the server's node is lost (its kubelet heartbeat stops). After the node
// monitor grace period the node is tainted unreachable; after
// failoverTolerationSeconds the server pod is evicted and a new one serves from the
// other node of its pool. The test prints the timeline. It runs last: the lost node
// stays lost.
func TestFaultServerNodeLost(t *testing.T) {
	e := setup(t)
	const tolerate = 10
	v := e.createVolume(t, "fault-node-lost", map[string]string{
		parameters.ServerNodeSelector:        failoverPool,
		parameters.FailoverTolerationSeconds: fmt.Sprint(tolerate),
	})
	m := e.mountEverywhere(t, v)
	ctx := ctxFor(t, 5*time.Minute)
	old := e.serverPod(ctx, v.Handle)
	if old == nil {
		t.Fatal("no server pod")
	}
	lost := old.Spec.NodeName
	k := e.cluster.Client

	start := time.Now()
	if err := e.cluster.LoseNode(lost); err != nil {
		t.Fatal(err)
	}
	var notReady, tainted, evicted, scheduled, ready time.Duration
	var newNode string
	poll(t, "the server serving again from another node", 4*time.Minute, func(ctx context.Context) bool {
		since := time.Since(start)
		if notReady == 0 {
			if node, err := k.CoreV1().Nodes().Get(ctx, lost, metav1.GetOptions{}); err == nil && !nodeReady(node) {
				notReady = since
			}
		}
		if tainted == 0 {
			if node, err := k.CoreV1().Nodes().Get(ctx, lost, metav1.GetOptions{}); err == nil && hasNoExecute(node) {
				tainted = since
			}
		}
		if evicted == 0 {
			if p, err := k.CoreV1().Pods(namespace).Get(ctx, old.Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
				evicted = since
			}
		}
		p := e.serverPod(ctx, v.Handle)
		if p == nil || p.UID == old.UID {
			return false
		}
		if scheduled == 0 && p.Spec.NodeName != "" {
			scheduled, newNode = since, p.Spec.NodeName
		}
		abnormal, _, err := e.condition(ctx, v.Handle)
		if err == nil && !abnormal && ready == 0 {
			ready = since
		}
		return ready != 0
	})
	t.Logf("node %s lost at 0s (its lease is no longer renewed)", lost)
	t.Logf("  %6.1fs node NotReady (kube-controller-manager --node-monitor-grace-period)", notReady.Seconds())
	t.Logf("  %6.1fs node tainted %s:NoExecute", tainted.Seconds(), corev1.TaintNodeUnreachable)
	t.Logf("  %6.1fs server pod evicted (failoverTolerationSeconds=%d)", evicted.Seconds(), tolerate)
	t.Logf("  %6.1fs replacement scheduled on %s", scheduled.Seconds(), newNode)
	t.Logf("  %6.1fs replacement Ready, endpoint ready, volume condition normal", ready.Seconds())
	t.Logf("  not simulated here: detaching the RWO backend from the lost node, and the NFS grace period (docs/operations.md)")
	if newNode == lost || newNode == "" {
		t.Errorf("replacement on %q, want the other failover node", newNode)
	}
	if got := e.serviceIP(ctx, v.Handle); got != v.Context[volume.ContextServer] {
		t.Errorf("ClusterIP changed to %s", got)
	}
	report(t, "2. server's node lost", ready, e.checkIntact(t, m))
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasNoExecute(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute && (t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady) {
			return true
		}
	}
	return false
}
