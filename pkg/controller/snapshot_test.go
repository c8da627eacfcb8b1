package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clientfeatures "k8s.io/client-go/features"
	clientgofeaturetesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

const (
	snapNS        = "pvnfs-system"
	backendDriver = "backend.csi.example.com"
	snapClass     = "backend-snapclass"
)

// fakeFlusher records the pods it was asked to flush and fails when told to.
type fakeFlusher struct {
	mu      sync.Mutex
	flushed []string
	err     error
}

func (f *fakeFlusher) Flush(_ context.Context, pod *corev1.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.flushed = append(f.flushed, pod.Name)
	return nil
}

func (f *fakeFlusher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flushed)
}

// snapEnv is a Service with snapshots over fake clientsets: a volume "vol-1" whose
// backend PVC is bound to a CSI volume of backendDriver and served by one running
// pod, and a default VolumeSnapshotClass of that driver. Its fake snapshot-controller
// answers every new VolumeSnapshot as backend decides.
type snapEnv struct {
	svc     *Service
	kube    *fake.Clientset
	snap    *snapfake.Clientset
	flusher *fakeFlusher
	// backend sets the status of a new backend VolumeSnapshot; nil leaves it be.
	backend func(vs *crdv1.VolumeSnapshot)
	// flushesAtCreate records how many flushes had happened when each
	// VolumeSnapshot was created.
	mu              sync.Mutex
	flushesAtCreate []int
}

func backendPVC(id, class, size string, phase corev1.PersistentVolumeClaimPhase) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: volume.ObjectName(id), Namespace: snapNS, Labels: volume.Labels(id, volume.ComponentBackend),
			Annotations: map[string]string{volume.AnnotationVolumeName: id}},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class, VolumeName: "pv-" + id,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}},
		Status: corev1.PersistentVolumeClaimStatus{Phase: phase},
	}
}

func csiPV(name, driver string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{StorageClassName: "rwo", PersistentVolumeSource: corev1.PersistentVolumeSource{
			CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: name}}}}
}

func serverPod(id, ip string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: volume.ObjectName(id) + "-abc", Namespace: snapNS, Labels: volume.Labels(id, volume.ComponentServer)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: volume.ServerContainerName,
			Ports: []corev1.ContainerPort{{Name: volume.HealthPortName, ContainerPort: 9000}}}}},
		Status: corev1.PodStatus{Phase: phase, PodIP: ip},
	}
}

func snapshotClass(name, driver string, isDefault bool) *crdv1.VolumeSnapshotClass {
	c := &crdv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}, Driver: driver,
		DeletionPolicy: crdv1.VolumeSnapshotContentDelete}
	if isDefault {
		c.Annotations[isDefaultSnapshotClass] = "true"
	}
	return c
}

// readyBackend is a backend that takes every snapshot at once, 1 GiB to restore.
func readyBackend(vs *crdv1.VolumeSnapshot) {
	now := metav1.Now()
	size := resource.MustParse("1Gi")
	vs.Status = &crdv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: ptr("snapcontent-" + string(vs.UID)),
		CreationTime: &now, ReadyToUse: ptr(true), RestoreSize: &size}
}

func newSnapEnv(t *testing.T, kubeObjs []runtime.Object, snapObjs []runtime.Object) *snapEnv {
	t.Helper()
	// The snapshot client's generated fake cannot stream a watch list (its informers
	// would never sync); a real API server can, or refuses and is listed instead.
	clientgofeaturetesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	rwo := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "rwo"}, Provisioner: backendDriver}
	base := []runtime.Object{rwo, backendPVC("vol-1", "rwo", "1Gi", corev1.ClaimBound), csiPV("pv-vol-1", backendDriver),
		serverPod("vol-1", "10.244.0.5", corev1.PodRunning)}
	e := &snapEnv{kube: fake.NewClientset(append(base, kubeObjs...)...), flusher: &fakeFlusher{}, backend: readyBackend}
	if snapObjs == nil {
		snapObjs = []runtime.Object{snapshotClass(snapClass, backendDriver, true)}
	}
	//lint:ignore SA1019 the snapshot client generates no apply configurations, so it has no NewClientset
	e.snap = snapfake.NewSimpleClientset(snapObjs...)
	e.snap.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{GroupVersion: snapshotGroupVersion,
		APIResources: []metav1.APIResource{{Name: "volumesnapshots", Namespaced: true, Kind: "VolumeSnapshot"}}}}
	// The fake snapshot-controller: the backend answers right after the create.
	e.snap.PrependReactor("create", "volumesnapshots", func(a k8stesting.Action) (bool, runtime.Object, error) {
		vs := a.(k8stesting.CreateAction).GetObject().(*crdv1.VolumeSnapshot)
		if vs.Namespace != snapNS {
			return false, nil, nil
		}
		e.mu.Lock()
		e.flushesAtCreate = append(e.flushesAtCreate, e.flusher.count())
		e.mu.Unlock()
		vs = vs.DeepCopy()
		vs.UID = types.UID("uid-" + vs.Name)
		if e.backend != nil {
			e.backend(vs)
		}
		return true, vs, e.snap.Tracker().Create(crdv1.SchemeGroupVersion.WithResource("volumesnapshots"), vs, vs.Namespace)
	})
	cfg := testConfig
	cfg.Namespace, cfg.DriverName, cfg.MaxWait = snapNS, volume.DefaultDriverName, 2*time.Second
	e.svc = New(e.kube, cfg)
	e.svc.EnableSnapshots(e.snap, e.flusher)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := e.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func snapReq(name, source string, params map[string]string) *csi.CreateSnapshotRequest {
	return &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: source, Parameters: params}
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("error %v, want %s containing %q", err, code, msg)
	}
}

func TestCreateSnapshotFlushesThenSnapshotsTheBackendPVC(t *testing.T) {
	e := newSnapEnv(t, nil, nil)
	ctx := context.Background()
	params := map[string]string{parameters.VolumeSnapshotNameKey: "nightly", parameters.VolumeSnapshotNamespaceKey: "shop"}
	resp, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-1", params))
	if err != nil {
		t.Fatal(err)
	}
	s := resp.GetSnapshot()
	if s.GetSnapshotId() != snapNS+"/snapshot-1" || s.GetSourceVolumeId() != "vol-1" || !s.GetReadyToUse() ||
		s.GetSizeBytes() != 1<<30 || s.GetCreationTime() == nil {
		t.Errorf("CreateSnapshot = %+v", s)
	}
	vs, err := e.snap.SnapshotV1().VolumeSnapshots(snapNS).Get(ctx, "pvnfs-snapshot-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *vs.Spec.Source.PersistentVolumeClaimName != "pvnfs-vol-1" || *vs.Spec.VolumeSnapshotClassName != snapClass {
		t.Errorf("backend VolumeSnapshot spec %+v, want the backend PVC and the driver's default class", vs.Spec)
	}
	if vs.Labels[volume.LabelSourceVolumeID] != "vol-1" || vs.Labels[volume.LabelVolumeID] != "" ||
		vs.Annotations[volume.AnnotationBackendDriver] != backendDriver || vs.Annotations[volume.AnnotationVolumeSnapshotName] != "nightly" {
		t.Errorf("labels %v annotations %v", vs.Labels, vs.Annotations)
	}
	if len(e.flushesAtCreate) != 1 || e.flushesAtCreate[0] != 1 {
		t.Errorf("flushes before each create: %v, want [1]: the server flushes before the backend snapshot", e.flushesAtCreate)
	}

	t.Run("a retry answers the same without flushing or creating again", func(t *testing.T) {
		again, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-1", params))
		if err != nil || again.GetSnapshot().GetSnapshotId() != s.GetSnapshotId() {
			t.Fatalf("retry = %v, %v", again, err)
		}
		if e.flusher.count() != 1 || len(e.flushesAtCreate) != 1 {
			t.Errorf("retry flushed %d times and created %d VolumeSnapshots in all, want 1 and 1", e.flusher.count(), len(e.flushesAtCreate))
		}
	})
	t.Run("the same name of another volume is refused", func(t *testing.T) {
		_, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-2", nil))
		wantCode(t, err, codes.AlreadyExists, "exists of volume vol-1, not of volume vol-2")
	})
	t.Run("the same name with other parameters is refused", func(t *testing.T) {
		_, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-1", map[string]string{parameters.BackendSnapshotClass: snapClass}))
		wantCode(t, err, codes.AlreadyExists, "other parameters")
	})
}

func TestCreateSnapshotRefusals(t *testing.T) {
	otherClass := snapshotClass("other-driver-class", "other.csi", false)
	tests := []struct {
		name     string
		kube     []runtime.Object
		snap     []runtime.Object // nil: the default class of backendDriver
		req      *csi.CreateSnapshotRequest
		flushErr error
		code     codes.Code
		msg      string
	}{
		{name: "no name", req: snapReq("", "vol-1", nil), code: codes.InvalidArgument, msg: "name is required"},
		{name: "no source", req: snapReq("s", "", nil), code: codes.InvalidArgument, msg: "source_volume_id is required"},
		{name: "unknown parameter", req: snapReq("s", "vol-1", map[string]string{"snapshotClass": "x"}), code: codes.InvalidArgument,
			msg: `parameter "snapshotClass": unknown VolumeSnapshotClass parameter`},
		{name: "missing source volume", req: snapReq("s", "vol-9", nil), code: codes.NotFound, msg: "source volume vol-9 does not exist"},
		{name: "source whose backend is not bound yet", kube: []runtime.Object{backendPVC("vol-2", "rwo", "1Gi", corev1.ClaimPending)},
			req: snapReq("s", "vol-2", nil), code: codes.Unavailable, msg: "not Bound yet"},
		{name: "backend that is not CSI cannot snapshot", kube: []runtime.Object{backendPVC("vol-2", "rwo", "1Gi", corev1.ClaimBound),
			&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-vol-2", Annotations: map[string]string{annProvisionedBy: "backend.test.pvnfs.io"}},
				Spec: corev1.PersistentVolumeSpec{StorageClassName: "rwo", PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}}}},
			req: snapReq("s", "vol-2", nil), code: codes.FailedPrecondition, msg: "cannot take snapshots: its backend volume pv-vol-2 (StorageClass \"rwo\", provisioner backend.test.pvnfs.io) is not a CSI volume"},
		{name: "backend driver without any snapshot class", snap: []runtime.Object{otherClass}, req: snapReq("s", "vol-1", nil),
			code: codes.FailedPrecondition, msg: "cannot take snapshots: no VolumeSnapshotClass exists for its CSI driver " + backendDriver},
		{name: "backend driver without a default class", snap: []runtime.Object{snapshotClass("a", backendDriver, false), snapshotClass("b", backendDriver, false)},
			req: snapReq("s", "vol-1", nil), code: codes.FailedPrecondition, msg: `no default VolumeSnapshotClass for the backend's CSI driver ` + backendDriver + ` (classes: a, b): set parameter "backendSnapshotClass"`},
		{name: "two default classes", snap: []runtime.Object{snapshotClass("a", backendDriver, true), snapshotClass("b", backendDriver, true)},
			req: snapReq("s", "vol-1", nil), code: codes.FailedPrecondition, msg: "several default VolumeSnapshotClasses"},
		{name: "named class that does not exist", req: snapReq("s", "vol-1", map[string]string{parameters.BackendSnapshotClass: "gone"}),
			code: codes.InvalidArgument, msg: `parameter "backendSnapshotClass": VolumeSnapshotClass "gone" does not exist`},
		{name: "named class of another driver", snap: []runtime.Object{otherClass}, req: snapReq("s", "vol-1", map[string]string{parameters.BackendSnapshotClass: otherClass.Name}),
			code: codes.InvalidArgument, msg: "is for the CSI driver other.csi, but the backend volume of vol-1 is provisioned by " + backendDriver},
		{name: "a server that cannot flush stops the snapshot", flushErr: errors.New("connection refused"), req: snapReq("s", "vol-1", nil),
			code: codes.Unavailable, msg: "connection refused; the snapshot is taken once the server has flushed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSnapEnv(t, tc.kube, tc.snap)
			e.flusher.err = tc.flushErr
			_, err := e.svc.CreateSnapshot(context.Background(), tc.req)
			wantCode(t, err, tc.code, tc.msg)
			if n := len(e.flushesAtCreate); n != 0 {
				t.Errorf("%d VolumeSnapshots created for a refused snapshot", n)
			}
		})
	}
}

// TestCreateSnapshotBackendFailureReachesTheUser: a backend snapshot that fails is a
// final error with the backend's message, also recorded as an event on the user's
// VolumeSnapshot; so is a backend that cannot snapshot at all.
func TestCreateSnapshotBackendFailureReachesTheUser(t *testing.T) {
	userVS := &crdv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "shop", UID: "user-uid"}}
	params := map[string]string{parameters.VolumeSnapshotNameKey: "nightly", parameters.VolumeSnapshotNamespaceKey: "shop"}
	for _, tc := range []struct {
		name   string
		snap   []runtime.Object
		reason string
		msg    string
		code   codes.Code
	}{
		{name: "backend snapshot failed", snap: []runtime.Object{snapshotClass(snapClass, backendDriver, true), userVS},
			reason: EventBackendSnapshotFailed, code: codes.Internal, msg: "the backend snapshot pvnfs-system/pvnfs-snapshot-1 failed: out of quota"},
		{name: "backend cannot snapshot", snap: []runtime.Object{userVS},
			reason: EventBackendCannotSnapshot, code: codes.FailedPrecondition, msg: "cannot take snapshots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSnapEnv(t, nil, tc.snap)
			e.backend = func(vs *crdv1.VolumeSnapshot) {
				vs.Status = &crdv1.VolumeSnapshotStatus{ReadyToUse: ptr(false), Error: &crdv1.VolumeSnapshotError{Message: ptr("out of quota")}}
			}
			_, err := e.svc.CreateSnapshot(context.Background(), snapReq("snapshot-1", "vol-1", params))
			wantCode(t, err, tc.code, tc.msg)
			var got []string
			if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				evs, err := e.kube.CoreV1().Events("shop").List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				got = nil
				for _, ev := range evs.Items {
					got = append(got, fmt.Sprintf("%s %s %s/%s uid=%s: %s", ev.Type, ev.Reason, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.InvolvedObject.UID, ev.Message))
				}
				return len(got) > 0, nil
			}); err != nil {
				t.Fatalf("no event on the user's VolumeSnapshot: %v", err)
			}
			want := fmt.Sprintf("Warning %s VolumeSnapshot/nightly uid=user-uid: ", tc.reason)
			if len(got) != 1 || !strings.HasPrefix(got[0], want) || !strings.Contains(got[0], tc.msg) {
				t.Errorf("events %q, want one %q… containing %q", got, want, tc.msg)
			}
		})
	}
}

// TestCreateSnapshotNotReadyInTime: a snapshot the backend has not taken when the
// call's time runs out is DeadlineExceeded saying what it waits for; one it has
// taken but not finished is answered with ready_to_use false.
func TestCreateSnapshotNotReadyInTime(t *testing.T) {
	e := newSnapEnv(t, nil, nil)
	e.backend = nil
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-1", nil))
	wantCode(t, err, codes.DeadlineExceeded, "has no VolumeSnapshotContent yet: is the snapshot-controller running?")

	now := metav1.Now()
	vs, _ := e.snap.SnapshotV1().VolumeSnapshots(snapNS).Get(context.Background(), "pvnfs-snapshot-1", metav1.GetOptions{})
	vs.Status = &crdv1.VolumeSnapshotStatus{BoundVolumeSnapshotContentName: ptr("c"), CreationTime: &now, ReadyToUse: ptr(false)}
	if _, err := e.snap.SnapshotV1().VolumeSnapshots(snapNS).UpdateStatus(context.Background(), vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-1", nil))
	if err != nil || resp.GetSnapshot().GetReadyToUse() || resp.GetSnapshot().GetCreationTime() == nil {
		t.Fatalf("CreateSnapshot of a cut snapshot = %v, %v; want ready_to_use false with its creation time", resp, err)
	}
}

func TestSnapshotsNeedTheSnapshotAPI(t *testing.T) {
	e := newSnapEnv(t, nil, nil)
	e.snap.Discovery().(*fakediscovery.FakeDiscovery).Resources = nil
	_, err := e.svc.CreateSnapshot(context.Background(), snapReq("s", "vol-1", nil))
	wantCode(t, err, codes.FailedPrecondition, "install the snapshot CRDs and the snapshot-controller")
}

func TestSnapshotCapabilities(t *testing.T) {
	has := func(s *Service) map[csi.ControllerServiceCapability_RPC_Type]bool {
		resp, _ := s.ControllerGetCapabilities(context.Background(), &csi.ControllerGetCapabilitiesRequest{})
		m := map[csi.ControllerServiceCapability_RPC_Type]bool{}
		for _, c := range resp.GetCapabilities() {
			m[c.GetRpc().GetType()] = true
		}
		return m
	}
	plain := New(fake.NewClientset(), testConfig)
	snaps := New(fake.NewClientset(), testConfig)
	//lint:ignore SA1019 the snapshot client generates no apply configurations, so it has no NewClientset
	snaps.EnableSnapshots(snapfake.NewSimpleClientset(), &fakeFlusher{})
	for _, c := range snapshotCapabilities {
		if has(plain)[c] || !has(snaps)[c] {
			t.Errorf("%s: offered %v without snapshots and %v with", c, has(plain)[c], has(snaps)[c])
		}
	}
	if _, err := plain.CreateSnapshot(context.Background(), snapReq("s", "v", nil)); status.Code(err) != codes.Unimplemented {
		t.Errorf("CreateSnapshot without snapshots = %v, want Unimplemented", err)
	}
}

func TestDeleteSnapshot(t *testing.T) {
	foreign := &crdv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "pvnfs-not-ours", Namespace: snapNS}}
	e := newSnapEnv(t, nil, []runtime.Object{snapshotClass(snapClass, backendDriver, true), foreign})
	ctx := context.Background()
	if _, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-1", nil)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   string
		code codes.Code
		msg  string
	}{
		{name: "no ID", id: "", code: codes.InvalidArgument, msg: "snapshot_id is required"},
		{name: "an ID pvnfs never made is deleted already", id: "reallyfakesnapshotid", code: codes.OK},
		{name: "a snapshot of another pvnfs namespace is refused", id: "other-ns/snapshot-1", code: codes.FailedPrecondition,
			msg: `belongs to the pvnfs installation in namespace "other-ns"`},
		{name: "a VolumeSnapshot pvnfs did not make is left alone", id: snapNS + "/not-ours", code: codes.OK},
		{name: "a snapshot is deleted", id: snapNS + "/snapshot-1", code: codes.OK},
		{name: "deleting again is fine", id: snapNS + "/snapshot-1", code: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: tc.id})
			if tc.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	if _, err := e.snap.SnapshotV1().VolumeSnapshots(snapNS).Get(ctx, "pvnfs-snapshot-1", metav1.GetOptions{}); err == nil {
		t.Error("the backend VolumeSnapshot is still there")
	}
	if _, err := e.snap.SnapshotV1().VolumeSnapshots(snapNS).Get(ctx, foreign.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("a VolumeSnapshot pvnfs did not make was deleted: %v", err)
	}
}

func TestListSnapshots(t *testing.T) {
	e := newSnapEnv(t, []runtime.Object{backendPVC("vol-2", "rwo", "1Gi", corev1.ClaimBound), csiPV("pv-vol-2", backendDriver)}, nil)
	ctx := context.Background()
	for i, src := range []string{"vol-1", "vol-2", "vol-1", "vol-2", "vol-1"} {
		if _, err := e.svc.CreateSnapshot(ctx, snapReq(fmt.Sprintf("snap-%d", i), src, nil)); err != nil {
			t.Fatal(err)
		}
	}
	// One not taken yet and one being deleted are not listed.
	e.backend = nil
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	_, _ = e.svc.CreateSnapshot(cctx, snapReq("snap-untaken", "vol-1", nil))
	cancel()
	vs, _ := e.snap.SnapshotV1().VolumeSnapshots(snapNS).Get(ctx, "pvnfs-snap-4", metav1.GetOptions{})
	vs.DeletionTimestamp, vs.Finalizers = ptr(metav1.Now()), []string{"x"}
	if _, err := e.snap.SnapshotV1().VolumeSnapshots(snapNS).Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ids := func(resp *csi.ListSnapshotsResponse) string {
		var out []string
		for _, en := range resp.GetEntries() {
			out = append(out, strings.TrimPrefix(en.GetSnapshot().GetSnapshotId(), snapNS+"/"))
		}
		return strings.Join(out, ",")
	}
	list := func(req *csi.ListSnapshotsRequest) *csi.ListSnapshotsResponse {
		t.Helper()
		var resp *csi.ListSnapshotsResponse
		// The deletion mark reaches the cache by watch.
		_ = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			var err error
			resp, err = e.svc.ListSnapshots(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return !strings.Contains(ids(resp), "snap-4"), nil
		})
		return resp
	}
	for _, tc := range []struct {
		name string
		req  *csi.ListSnapshotsRequest
		want string
		next bool
	}{
		{name: "all, in key order", req: &csi.ListSnapshotsRequest{}, want: "snap-0,snap-1,snap-2,snap-3"},
		{name: "first page", req: &csi.ListSnapshotsRequest{MaxEntries: 3}, want: "snap-0,snap-1,snap-2", next: true},
		{name: "the page after", req: &csi.ListSnapshotsRequest{StartingToken: listToken("snap-2")}, want: "snap-3"},
		{name: "by ID", req: &csi.ListSnapshotsRequest{SnapshotId: snapNS + "/snap-1"}, want: "snap-1"},
		{name: "by an ID not made by pvnfs", req: &csi.ListSnapshotsRequest{SnapshotId: "none-exist-id"}, want: ""},
		{name: "by an ID of another namespace", req: &csi.ListSnapshotsRequest{SnapshotId: "other/snap-1"}, want: ""},
		{name: "by source volume", req: &csi.ListSnapshotsRequest{SourceVolumeId: "vol-2"}, want: "snap-1,snap-3"},
		{name: "by a source volume without snapshots", req: &csi.ListSnapshotsRequest{SourceVolumeId: "vol-9"}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := list(tc.req)
			if got := ids(resp); got != tc.want || (resp.GetNextToken() != "") != tc.next {
				t.Errorf("ListSnapshots(%v) = %q, next %q; want %q, next token %v", tc.req, got, resp.GetNextToken(), tc.want, tc.next)
			}
		})
	}
	for _, tc := range []struct {
		req  *csi.ListSnapshotsRequest
		code codes.Code
	}{
		{&csi.ListSnapshotsRequest{MaxEntries: -1}, codes.InvalidArgument},
		{&csi.ListSnapshotsRequest{StartingToken: "snap-2"}, codes.Aborted},
	} {
		if _, err := e.svc.ListSnapshots(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("ListSnapshots(%v) = %v, want %s", tc.req, err, tc.code)
		}
	}
}

// TestPrepareContentSource: what CreateVolume checks of a source before it creates
// anything, with the codes CSI names.
func TestPrepareContentSource(t *testing.T) {
	e := newSnapEnv(t, []runtime.Object{
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "other-driver"}, Provisioner: "other.csi"},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "rwo-2"}, Provisioner: backendDriver},
		backendPVC("big", "rwo", "5Gi", corev1.ClaimBound),
	}, nil)
	ctx := context.Background()
	if _, err := e.svc.CreateSnapshot(ctx, snapReq("snapshot-1", "vol-1", nil)); err != nil {
		t.Fatal(err)
	}
	e.backend = func(vs *crdv1.VolumeSnapshot) { vs.Status = &crdv1.VolumeSnapshotStatus{ReadyToUse: ptr(false)} }
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	_, _ = e.svc.CreateSnapshot(cctx, snapReq("untaken", "vol-1", nil))
	cancel()
	snapshotSrc := func(id string) *csi.VolumeContentSource {
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
	}
	volumeSrc := func(id string) *csi.VolumeContentSource {
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
	}
	const gi = int64(1) << 30
	for _, tc := range []struct {
		name         string
		src          *csi.VolumeContentSource
		class        string // backendStorageClass
		capRange     *csi.CapacityRange
		code         codes.Code
		msg          string
		wantCapacity int64
		wantFlush    bool
	}{
		{name: "restore", src: snapshotSrc(snapNS + "/snapshot-1"), class: "rwo", wantCapacity: gi},
		{name: "restore onto another class of the same driver", src: snapshotSrc(snapNS + "/snapshot-1"), class: "rwo-2", wantCapacity: gi},
		{name: "restore larger than the snapshot", src: snapshotSrc(snapNS + "/snapshot-1"), class: "rwo", capRange: &csi.CapacityRange{RequiredBytes: 2 * gi}, wantCapacity: 2 * gi},
		{name: "restore smaller than the snapshot", src: snapshotSrc(snapNS + "/snapshot-1"), class: "rwo", capRange: &csi.CapacityRange{RequiredBytes: gi / 2},
			code: codes.OutOfRange, msg: "source snapshot pvnfs-system/snapshot-1 holds 1Gi"},
		{name: "restore with a limit below the snapshot", src: snapshotSrc(snapNS + "/snapshot-1"), class: "rwo", capRange: &csi.CapacityRange{LimitBytes: gi / 2},
			code: codes.OutOfRange, msg: "must be at least as large"},
		{name: "an ID pvnfs never made", src: snapshotSrc("non-existing-snapshot-id"), class: "rwo", code: codes.NotFound, msg: "does not exist"},
		{name: "a snapshot that does not exist", src: snapshotSrc(snapNS + "/gone"), class: "rwo", code: codes.NotFound, msg: "source snapshot pvnfs-system/gone does not exist"},
		{name: "a snapshot of another pvnfs namespace", src: snapshotSrc("pvnfs-other/snapshot-1"), class: "rwo", code: codes.InvalidArgument,
			msg: `belongs to the pvnfs installation in namespace "pvnfs-other"`},
		{name: "a snapshot not ready yet", src: snapshotSrc(snapNS + "/untaken"), class: "rwo", code: codes.Unavailable, msg: "snapshot is not ready to use yet"},
		{name: "restore onto another backend driver", src: snapshotSrc(snapNS + "/snapshot-1"), class: "other-driver", code: codes.InvalidArgument,
			msg: "was taken by the CSI driver " + backendDriver + `, but the new volume's backend StorageClass "other-driver" is provisioned by other.csi`},
		{name: "clone", src: volumeSrc("vol-1"), class: "rwo", wantCapacity: gi, wantFlush: true},
		{name: "clone of a larger volume without a running server grows to its size; nothing to flush", src: volumeSrc("big"), class: "rwo", wantCapacity: 5 * gi},
		{name: "clone smaller than its source", src: volumeSrc("big"), class: "rwo", capRange: &csi.CapacityRange{RequiredBytes: gi},
			code: codes.OutOfRange, msg: "source volume big holds 5Gi"},
		{name: "clone of a missing volume", src: volumeSrc("vol-9"), class: "rwo", code: codes.NotFound, msg: "source volume vol-9 does not exist"},
		{name: "clone into another backend class", src: volumeSrc("vol-1"), class: "rwo-2", code: codes.InvalidArgument,
			msg: `keeps its data in backend StorageClass "rwo", the new volume's backendStorageClass is "rwo-2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := validateCreate(&csi.CreateVolumeRequest{Name: "new-vol", VolumeContentSource: tc.src, CapacityRange: tc.capRange,
				Parameters: map[string]string{parameters.BackendStorageClass: tc.class}, VolumeCapabilities: []*csi.VolumeCapability{{
					AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
					AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}})
			if err != nil {
				t.Fatal(err)
			}
			before := e.flusher.count()
			err = e.svc.prepareContentSource(ctx, &v)
			if tc.code != codes.OK {
				wantCode(t, err, tc.code, tc.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.capacity != tc.wantCapacity {
				t.Errorf("capacity %d, want %d", v.capacity, tc.wantCapacity)
			}
			if flushed := e.flusher.count() > before; flushed != tc.wantFlush {
				t.Errorf("source flushed: %v, want %v", flushed, tc.wantFlush)
			}
			pvc := e.svc.cfg.buildBackendPVC(v, corev1.ReadWriteOncePod)
			applyContentSource(pvc, v)
			if pvc.Spec.DataSource == nil || contentSourceOf(pvc).String() != tc.src.String() {
				t.Errorf("backend PVC data source %+v, reported source %v; want %v", pvc.Spec.DataSource, contentSourceOf(pvc), tc.src)
			}
			if err := checkSameSource(pvc, v); err != nil {
				t.Errorf("checkSameSource of its own PVC: %v", err)
			}
			plain := v
			plain.source = nil
			wantCode(t, checkSameSource(pvc, plain), codes.AlreadyExists, "requested \"none\"")
		})
	}
}

func TestBackendPVCDataSource(t *testing.T) {
	for _, tc := range []struct {
		src                        *contentSource
		apiGroup, kind, name, anno string
	}{
		{&contentSource{volume.SourceSnapshot, snapNS + "/snapshot-1"}, "snapshot.storage.k8s.io", "VolumeSnapshot", "pvnfs-snapshot-1", "snapshot:pvnfs-system/snapshot-1"},
		{&contentSource{volume.SourceVolume, "vol-1"}, "", "PersistentVolumeClaim", "pvnfs-vol-1", "volume:vol-1"},
	} {
		v := volumeSpec{id: "new", name: "new", capacity: 1 << 30, params: parameters.Defaults(), source: tc.src}
		pvc := testConfig.buildBackendPVC(v, corev1.ReadWriteOnce)
		applyContentSource(pvc, v)
		ds := pvc.Spec.DataSource
		if ds == nil || ptrOr(ds.APIGroup) != tc.apiGroup || ds.Kind != tc.kind || ds.Name != tc.name || pvc.Annotations[volume.AnnotationContentSource] != tc.anno {
			t.Errorf("%v: dataSource %+v, annotation %q", tc.src, ds, pvc.Annotations[volume.AnnotationContentSource])
		}
	}
}

func ptrOr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// TestHTTPFlusher runs the flusher against an HTTP server standing for a server pod's
// health port: the POST, the timeout it passes, and the answers it turns into errors.
func TestHTTPFlusher(t *testing.T) {
	var gotTimeout string
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != volume.FlushPath {
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		gotTimeout = r.URL.Query().Get(volume.FlushTimeoutParam)
		w.WriteHeader(code)
		fmt.Fprint(w, "syncfs /data: input/output error")
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	pod := serverPod("vol-1", host, corev1.PodRunning)
	pod.Spec.Containers[0].Ports[0].ContainerPort = int32(p)
	f := NewHTTPFlusher(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	if err := f.Flush(ctx, pod); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if d, err := time.ParseDuration(gotTimeout); err != nil || d > 30*time.Second || d < 25*time.Second {
		t.Errorf("timeout passed to the server %q, want the caller's deadline less a margin (about 30s)", gotTimeout)
	}
	code = http.StatusServiceUnavailable
	if err := f.Flush(ctx, pod); err == nil || !strings.Contains(err.Error(), "503 Service Unavailable): syncfs /data: input/output error") {
		t.Errorf("Flush of a failing server = %v", err)
	}
	noIP := pod.DeepCopy()
	noIP.Status.PodIP = ""
	if err := f.Flush(ctx, noIP); err == nil || !strings.Contains(err.Error(), "has no IP") {
		t.Errorf("Flush of a pod without IP = %v", err)
	}
	noPort := pod.DeepCopy()
	noPort.Spec.Containers[0].Ports = nil
	if err := f.Flush(ctx, noPort); err == nil || !strings.Contains(err.Error(), `port "health"`) {
		t.Errorf("Flush of a pod without health port = %v", err)
	}
}
