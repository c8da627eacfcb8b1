package controller

// Tests against a real local control plane (test/localcluster): real API server,
// scheduler, Deployment/ReplicaSet/EndpointSlice controllers, PV binding and garbage
// collection; kwok simulates the nodes and makes server pods Ready. They run through
// the real gRPC server, so status codes are what the provisioner would see.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pvnfs/pvnfs/pkg/csiserver"
	"github.com/pvnfs/pvnfs/test/localcluster"
)

const (
	testImage        = "example.invalid/pvnfs-server:test"
	backendClass     = "rwo"
	fixedClass       = "rwo-fixed-size"
	brokenClass      = "rwo-broken"
	fullClass        = "rwo-full"
	testGiB          = int64(1) << 30
	controlPlaneWait = 2 * time.Minute
)

var shared = localcluster.Shared{
	Options: localcluster.Options{HoldNode: true},
	Setup: func(ctx context.Context, c *localcluster.Cluster) error {
		for _, b := range []localcluster.BackendClass{
			{Name: backendClass, Default: true, AllowExpansion: true},
			{Name: fixedClass},
			{Name: brokenClass, Immediate: true, NeverProvision: true},
			{Name: fullClass, AllowExpansion: true, FailResize: true},
		} {
			if err := c.AddBackendClass(ctx, b); err != nil {
				return err
			}
		}
		return c.StartBackendProvisioner()
	},
}

func TestMain(m *testing.M) { os.Exit(shared.Main(m)) }

var namespaceSeq atomic.Int32

// testDriver is a controller serving CSI on a unix socket, in its own namespace.
type testDriver struct {
	csi.ControllerClient
	svc      *Service
	cluster  *localcluster.Cluster
	ns       string
	requests *prometheus.CounterVec
	stop     func()
	// reconcile, when set, runs the reconciler with these options.
	reconcile *ReconcileOptions
	// serverImage overrides testImage (a controller upgrade).
	serverImage string
}

func (d *testDriver) image() string {
	if d.serverImage != "" {
		return d.serverImage
	}
	return testImage
}

// startDriver starts a controller in a fresh namespace of the shared cluster.
func startDriver(t testing.TB) *testDriver { return startDriverWith(t, nil) }

// startDriverWith starts a controller that also runs the reconciler, when opts is
// not nil.
func startDriverWith(t testing.TB, opts *ReconcileOptions) *testDriver {
	t.Helper()
	c := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), controlPlaneWait)
	defer cancel()
	ns := fmt.Sprintf("pvnfs-%d", namespaceSeq.Add(1))
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	d := &testDriver{cluster: c, ns: ns, reconcile: opts}
	d.start(t)
	// The test that owns the driver stops whichever instance runs at its end
	// (restart, possibly in a subtest, replaces it).
	t.Cleanup(func() { d.stop() })
	return d
}

// start (re)starts the controller process-equivalent: a new Service with empty
// caches and its own client, as after a crash.
func (d *testDriver) start(t testing.TB) {
	t.Helper()
	cfg := *d.cluster.Config
	d.requests = InstrumentClient(&cfg, nil)
	client := kubernetes.NewForConfigOrDie(&cfg)
	d.svc = New(client, Config{DriverName: "nfs.pvnfs.io", Namespace: d.ns, ServerImage: d.image(), ServerImagePullPolicy: corev1.PullIfNotPresent, MaxWait: time.Minute})
	// The informers run until runCtx ends; the time allowed to fill them is bounded
	// separately, so cancelling that bound does not stop them.
	runCtx, stopRun := context.WithCancel(context.Background())
	timer := time.AfterFunc(controlPlaneWait, stopRun)
	err := d.svc.Start(runCtx)
	timer.Stop()
	if err != nil {
		stopRun()
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "csi.sock")
	var srv *csiserver.Server
	srv, err = csiserver.Listen("unix://"+sock, csiserver.Services{Controller: d.svc})
	if err != nil {
		stopRun()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(runCtx, time.Second); close(done) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		stopRun()
		t.Fatal(err)
	}
	d.ControllerClient = csi.NewControllerClient(conn)
	reconciled := make(chan struct{})
	if d.reconcile != nil {
		go func() { d.svc.Reconcile(runCtx, *d.reconcile); close(reconciled) }()
	} else {
		close(reconciled)
	}
	d.stop = func() { conn.Close(); stopRun(); <-done; <-reconciled }
}

// restart simulates a controller crash: the old instance stops, a new one starts.
func (d *testDriver) restart(t testing.TB) {
	d.stop()
	d.start(t)
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func createReq(name string, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: testGiB},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
		Parameters:         params,
	}
}

func callCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// objectCounts counts the volume's objects of every kind the driver or Kubernetes
// makes for it, straight from the API server.
func (d *testDriver) objectCounts(t *testing.T, id string) map[string]int {
	t.Helper()
	ctx := callCtx(t, 30*time.Second)
	sel := metav1.ListOptions{LabelSelector: "pvnfs.io/volume-id=" + id}
	k := d.cluster.Client
	out := map[string]int{}
	pvcs, err := k.CoreV1().PersistentVolumeClaims(d.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	out["pvc"] = len(pvcs.Items)
	deps, _ := k.AppsV1().Deployments(d.ns).List(ctx, sel)
	out["deployment"] = len(deps.Items)
	rss, _ := k.AppsV1().ReplicaSets(d.ns).List(ctx, sel)
	out["replicaset"] = len(rss.Items)
	pods, _ := k.CoreV1().Pods(d.ns).List(ctx, sel)
	out["pod"] = len(pods.Items)
	svcs, _ := k.CoreV1().Services(d.ns).List(ctx, sel)
	out["service"] = len(svcs.Items)
	slices, _ := k.DiscoveryV1().EndpointSlices(d.ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=pvnfs-" + id})
	out["endpointslice"] = len(slices.Items)
	return out
}

func (d *testDriver) writes() map[string]float64 {
	out := map[string]float64{}
	for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE", "GET", "LIST"} {
		for _, res := range []string{"persistentvolumeclaims", "deployments", "services", "pods", "events", "endpointslices", "storageclasses"} {
			c, err := d.requests.GetMetricWithLabelValues(verb, res)
			if err != nil {
				continue
			}
			if v := counterValue(c); v > 0 {
				out[verb+" "+res] = v
			}
		}
	}
	return out
}

func waitGone(t *testing.T, d *testDriver, id string) {
	t.Helper()
	deadline := time.Now().Add(controlPlaneWait)
	for {
		counts := d.objectCounts(t, id)
		total := 0
		for _, n := range counts {
			total += n
		}
		if total == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("objects of %s left: %v", id, counts)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func joinKeys(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%g", k, v))
	}
	return strings.Join(parts, ", ")
}

func resourceGiB() *resource.Quantity { return resource.NewQuantity(testGiB, resource.BinarySI) }
