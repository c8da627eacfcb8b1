package snapshots

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/kubeletsim"
)

// TestSnapshotRestoreAndClone: a user's VolumeSnapshot of an RWX PVC becomes ready
// after the volume's server flushed; a PVC restored from it and a PVC cloned from
// the live volume each get a server of their own, and their pods read exactly the
// bytes the source held at the snapshot (restore) or at the clone; deleting the
// user's snapshot deletes the backend snapshot.
func TestSnapshotRestoreAndClone(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, 10*time.Minute)

	site := e.createPVC(t, "site", pvnfsClass, nil)
	e.waitBound(t, site)
	writer := e.startPod(t, "writer", nodeA, site)
	before := map[string][]byte{
		"wp-content/uploads/2026/11/logo.png": bytes.Repeat([]byte{0x89, 'P', 'N', 'G', 0}, 4096),
		"wp-config.php":                       []byte("<?php define('DB_NAME', 'shop');\n"),
	}
	for name, data := range before {
		e.write(t, writer, name, data)
	}

	flushes := e.health.Flushes()
	backendBefore := e.backend.Driver.Snapshots()
	start := time.Now()
	snap := e.createSnapshot(t, "site-before-upgrade", pvnfsSnapClass, site)
	snap = e.waitSnapshot(t, ctx, snap, func(vs *crdv1.VolumeSnapshot) bool {
		return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse
	})
	t.Logf("MEASURE snapshot-ready %v", time.Since(start).Round(time.Millisecond))
	if e.health.Flushes() == flushes {
		t.Errorf("the snapshot was taken without asking the server to flush")
	}
	backendSnaps := added(backendBefore, e.backend.Driver.Snapshots())
	if len(backendSnaps) != 1 {
		t.Fatalf("the user's snapshot is ready and the backend driver took %d snapshots for it (%v), want 1", len(backendSnaps), backendSnaps)
	}
	if got := snap.Status.RestoreSize; got == nil || got.Value() < 1<<30 {
		t.Errorf("restoreSize = %v, want at least the volume's 1Gi", got)
	}

	// Written after the snapshot: in the clone, never in the restore.
	after := map[string][]byte{
		"wp-content/uploads/2026/11/after.txt": []byte("written after the snapshot"),
		"wp-config.php":                        []byte("<?php define('DB_NAME', 'shop_v2');\n"),
	}
	for name, data := range after {
		e.write(t, writer, name, data)
	}

	start = time.Now()
	restored := e.createPVC(t, "site-restored", pvnfsClass, &corev1.TypedLocalObjectReference{
		APIGroup: ptr.To(crdv1.GroupName), Kind: "VolumeSnapshot", Name: snap.Name})
	restored = e.waitBound(t, restored)
	t.Logf("MEASURE restore-bound %v", time.Since(start).Round(time.Millisecond))
	clone := e.createPVC(t, "site-clone", pvnfsClass, &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: site.Name})
	clone = e.waitBound(t, clone)
	site = e.get(t, site)

	ids := map[string]string{}
	ips := map[string]string{}
	for _, pvc := range []*corev1.PersistentVolumeClaim{site, restored, clone} {
		id := e.volumeID(t, pvc)
		svc, err := e.cluster.Client.CoreV1().Services(namespace).Get(ctx, volume.ObjectName(id), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: the Service of its server: %v", pvc.Name, err)
		}
		if _, err := e.cluster.Client.AppsV1().Deployments(namespace).Get(ctx, volume.ObjectName(id), metav1.GetOptions{}); err != nil {
			t.Fatalf("%s: the Deployment of its server: %v", pvc.Name, err)
		}
		if other, dup := ips[svc.Spec.ClusterIP]; dup {
			t.Errorf("%s and %s share the server %s", pvc.Name, other, svc.Spec.ClusterIP)
		}
		ids[pvc.Name], ips[svc.Spec.ClusterIP] = id, pvc.Name
	}
	t.Logf("own servers: %v", ips)

	readerR := e.startPod(t, "reader-restored", nodeB, restored)
	readerC := e.startPod(t, "reader-clone", nodeB, clone)
	e.expectFiles(t, readerR, before)
	if _, err := e.read(readerR, "wp-content/uploads/2026/11/after.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restore: a file written after the snapshot is there (err %v)", err)
	}
	e.expectFiles(t, readerC, map[string][]byte{"wp-content/uploads/2026/11/logo.png": before["wp-content/uploads/2026/11/logo.png"]})
	e.expectFiles(t, readerC, after)
	// The source keeps serving, and writes to the copies stay their own.
	e.write(t, readerR, "restored-only.txt", []byte("restore"))
	if _, err := e.read(writer, "restored-only.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write to the restored volume shows in the source (err %v)", err)
	}
	e.expectFiles(t, writer, after)

	// Deleting the user's snapshot deletes pvnfs's backend VolumeSnapshot and the
	// backend driver's snapshot.
	if err := e.backend.Snapshots.SnapshotV1().VolumeSnapshots(appNS).Delete(ctx, snap.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "the backend snapshot is deleted", func(ctx context.Context) (bool, string, error) {
		list, err := e.backend.Snapshots.SnapshotV1().VolumeSnapshots(namespace).List(ctx, metav1.ListOptions{
			LabelSelector: volume.LabelComponent + "=" + volume.ComponentSnapshot})
		if err != nil {
			return false, "", err
		}
		var ours []string
		for _, vs := range list.Items {
			if vs.Annotations[volume.AnnotationVolumeSnapshotNamespace] == appNS && vs.Annotations[volume.AnnotationVolumeSnapshotName] == snap.Name {
				ours = append(ours, vs.Name)
			}
		}
		left := e.backend.Driver.Snapshots()
		return len(ours) == 0 && !slices.Contains(left, backendSnaps[0]),
			fmt.Sprintf("pvnfs VolumeSnapshots %v, backend driver holds %v", ours, left), nil
	})
	e.checkNoForbidden(t)
}

// TestSnapshotOfABackendThatCannotSnapshot: the user's VolumeSnapshot of a volume
// whose backend is not a CSI driver gets a warning event saying so.
func TestSnapshotOfABackendThatCannotSnapshot(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, 5*time.Minute)
	pvc := e.createPVC(t, "legacy", noSnapClass, nil)
	e.waitBound(t, pvc)
	snap := e.createSnapshot(t, "legacy-nightly", pvnfsSnapClass, pvc)
	sel := fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.name", snap.Name),
		fields.OneTermEqualSelector("reason", controller.EventBackendCannotSnapshot)).String()
	lw := selected(sel, e.cluster.Client.CoreV1().Events(appNS).List, e.cluster.Client.CoreV1().Events(appNS).Watch)
	ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.Event{}, nil, func(ev watch.Event) (bool, error) {
		return ev.Type != watch.Deleted, nil
	})
	if err != nil {
		t.Fatalf("no %s event on VolumeSnapshot %s/%s: %v", controller.EventBackendCannotSnapshot, appNS, snap.Name, err)
	}
	msg := ev.Object.(*corev1.Event).Message
	t.Logf("event %s: %s", controller.EventBackendCannotSnapshot, msg)
	for _, want := range []string{"cannot take snapshots", "not a CSI volume", noSnapBackend} {
		if !strings.Contains(msg, want) {
			t.Errorf("event message %q does not say %q", msg, want)
		}
	}
	e.checkNoForbidden(t)
}

// --- helpers ---

// added returns what is in after and not in before.
func added(before, after []string) []string {
	var out []string
	for _, s := range after {
		if !slices.Contains(before, s) {
			out = append(out, s)
		}
	}
	return out
}

// selected lists and watches the objects a field selector picks, for
// watchtools.UntilWithSync.
func selected[L runtime.Object](sel string, list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return watchFn(ctx, o)
		},
	}
}

func (e *env) createPVC(t testing.TB, name, class string, source *corev1.TypedLocalObjectReference) *corev1.PersistentVolumeClaim {
	t.Helper()
	return e.createPVCIn(t, appNS, name, class, source)
}

func (e *env) createPVCIn(t testing.TB, ns, name, class string, source *corev1.TypedLocalObjectReference) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			DataSource:       source,
		},
	}
	created, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctxFor(t, time.Minute), pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

func (e *env) get(t testing.TB, pvc *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	t.Helper()
	got, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Get(ctxFor(t, time.Minute), pvc.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitBound waits, watching the claim, until it is Bound.
func (e *env) waitBound(t testing.TB, pvc *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	t.Helper()
	ctx := ctxFor(t, operationTimeout)
	sel := fields.OneTermEqualSelector("metadata.name", pvc.Name).String()
	claims := e.cluster.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace)
	lw := selected(sel, claims.List, claims.Watch)
	ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.PersistentVolumeClaim{}, nil, func(ev watch.Event) (bool, error) {
		c, ok := ev.Object.(*corev1.PersistentVolumeClaim)
		return ok && c.Status.Phase == corev1.ClaimBound, nil
	})
	if err != nil {
		t.Fatalf("PVC %s/%s is not Bound: %v; its events: %s", pvc.Namespace, pvc.Name, err, e.events(pvc.Namespace, pvc.Name))
	}
	return ev.Object.(*corev1.PersistentVolumeClaim)
}

func (e *env) createSnapshot(t testing.TB, name, class string, pvc *corev1.PersistentVolumeClaim) *crdv1.VolumeSnapshot {
	t.Helper()
	vs := &crdv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pvc.Namespace},
		Spec: crdv1.VolumeSnapshotSpec{
			Source:                  crdv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc.Name},
			VolumeSnapshotClassName: &class,
		},
	}
	created, err := e.backend.Snapshots.SnapshotV1().VolumeSnapshots(pvc.Namespace).Create(ctxFor(t, time.Minute), vs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// waitSnapshot waits, watching the VolumeSnapshot, until done holds.
func (e *env) waitSnapshot(t testing.TB, ctx context.Context, vs *crdv1.VolumeSnapshot, done func(*crdv1.VolumeSnapshot) bool) *crdv1.VolumeSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, operationTimeout)
	defer cancel()
	sel := fields.OneTermEqualSelector("metadata.name", vs.Name).String()
	client := e.backend.Snapshots.SnapshotV1().VolumeSnapshots(vs.Namespace)
	lw := selected(sel, client.List, client.Watch)
	var last *crdv1.VolumeSnapshot
	ev, err := watchtools.UntilWithSync(ctx, lw, &crdv1.VolumeSnapshot{}, nil, func(ev watch.Event) (bool, error) {
		s, ok := ev.Object.(*crdv1.VolumeSnapshot)
		if ok {
			last = s
		}
		return ok && done(s), nil
	})
	if err != nil {
		var st any
		if last != nil {
			st = last.Status
		}
		t.Fatalf("VolumeSnapshot %s/%s: %v; status %+v; events: %s", vs.Namespace, vs.Name, err, st, e.events(vs.Namespace, vs.Name))
	}
	return ev.Object.(*crdv1.VolumeSnapshot)
}

// events lists the events of an object, for failure messages.
func (e *env) events(ns, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := e.cluster.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, ev := range list.Items {
		out = append(out, ev.Reason+": "+ev.Message)
	}
	return strings.Join(out, "; ")
}

func (e *env) volumeID(t testing.TB, pvc *corev1.PersistentVolumeClaim) string {
	t.Helper()
	pv, err := e.cluster.Client.CoreV1().PersistentVolumes().Get(ctxFor(t, time.Minute), pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil || pv.Spec.CSI == nil {
		t.Fatalf("PV of %s: %v", pvc.Name, err)
	}
	return pv.Spec.CSI.VolumeHandle
}

// pod is a simulated pod with the volume mounted by its node's plugin.
type pod struct {
	name, node, target string
}

// startPod runs a pod using the claim on the node and waits until the kubelet has
// published the volume into it.
func (e *env) startPod(t testing.TB, name, node string, pvc *corev1.PersistentVolumeClaim) pod {
	t.Helper()
	ctx := ctxFor(t, operationTimeout)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pvc.Namespace},
		Spec: corev1.PodSpec{
			NodeName:    node,
			Containers:  []corev1.Container{{Name: "app", Image: "example.invalid/app", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/www/html"}}}},
			Volumes:     []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name}}}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
	created, err := e.cluster.Client.CoreV1().Pods(pvc.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	handle := e.volumeID(t, e.get(t, pvc))
	snap, err := e.kubelet.WaitFor(ctx, func(s kubeletsim.Snapshot) bool {
		_, ok := s.Published(created.UID, handle)
		return ok
	})
	if err != nil {
		t.Fatalf("pod %s: volume not published: %v; %s", name, err, snap.FailureSummary())
	}
	m, _ := snap.Published(created.UID, handle)
	return pod{name: name, node: node, target: m.Target}
}

func (e *env) write(t testing.TB, p pod, name string, data []byte) {
	t.Helper()
	n := e.nodes[p.node]
	path := filepath.Join(p.target, name)
	if err := os.MkdirAll(filepath.Dir(n.InNode(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := n.WriteFile(path, data); err != nil {
		t.Fatalf("pod %s writing %s: %v", p.name, name, err)
	}
}

func (e *env) read(p pod, name string) ([]byte, error) {
	return e.nodes[p.node].ReadFile(filepath.Join(p.target, name))
}

// expectFiles asserts the pod reads exactly these bytes.
func (e *env) expectFiles(t testing.TB, p pod, files map[string][]byte) {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		got, err := e.read(p, name)
		if err != nil {
			t.Errorf("pod %s reading %s: %v", p.name, name, err)
			continue
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("pod %s reads %s as %d bytes %.40q, want %d bytes %.40q", p.name, name, len(got), got, len(files[name]), files[name])
		}
	}
}

// eventually re-checks a condition of the cluster or the backend until it holds.
func (e *env) eventually(t testing.TB, what string, cond func(context.Context) (bool, string, error)) {
	t.Helper()
	var state string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, operationTimeout, true, func(ctx context.Context) (bool, error) {
		ok, s, err := cond(ctx)
		state = s
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return ok, err
	})
	if err != nil {
		t.Fatalf("%s: %v (last: %s)", what, err, state)
	}
}
