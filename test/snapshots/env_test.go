package snapshots

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/test/harness"
	"github.com/pvnfs/pvnfs/test/kubeletsim"
	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/simnode"
)

const (
	namespace = "pvnfs-system"
	appNS     = "shop"
	// pvnfsClass keeps its data on the backend that snapshots; noSnapClass on a
	// backend that is not a CSI driver and so cannot.
	pvnfsClass    = "pvnfs"
	noSnapClass   = "pvnfs-no-snapshots"
	noSnapBackend = "rwo-hostpath"
	// pvnfsSnapClass is named as the chart names its class, for the WordPress
	// example's manifests.
	pvnfsSnapClass   = "pvnfs"
	nodeA, nodeB     = "kwok-node-1", "kwok-node-2"
	setupTimeout     = 5 * time.Minute
	operationTimeout = 3 * time.Minute
)

var shared = localcluster.Shared{
	Setup: func(ctx context.Context, c *localcluster.Cluster) error {
		if err := c.AddBackendClass(ctx, localcluster.BackendClass{Name: noSnapBackend}); err != nil {
			return err
		}
		return c.StartBackendProvisioner()
	},
}

func TestMain(m *testing.M) {
	mounttest.Run(m, func() int {
		code := shared.Main(m)
		theEnv.close(code != 0 || os.Getenv("PVNFS_KEEP_LOGS") != "")
		return code
	})
}

// env is everything the tests share: the backend that snapshots, the simulated
// servers' health ports, the pvnfs controller with its csi-provisioner and
// csi-snapshotter, two node plugins and the simulated kubelet.
type env struct {
	once    sync.Once
	err     error
	dir     string
	cluster *localcluster.Cluster
	backend *harness.SnapshotBackend
	health  *harness.ServerHealth
	ctl     *harness.Controller
	procs   []*localcluster.Process
	nodes   map[string]*simnode.Node
	kubelet *kubeletsim.Kubelet
	cancel  context.CancelFunc
}

var theEnv env

func setup(t testing.TB) *env {
	t.Helper()
	mounttest.RequireMounts(t)
	c := shared.Get(t)
	e := &theEnv
	e.once.Do(func() { e.err = e.start(c) })
	if e.err != nil {
		t.Fatalf("starting the driver: %v", e.err)
	}
	return e
}

func (e *env) start(c *localcluster.Cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	e.cluster = c
	var runCtx context.Context
	runCtx, e.cancel = context.WithCancel(c.Context())
	var err error
	if e.dir, err = os.MkdirTemp("", "pvnfs-snapshots-"); err != nil {
		return err
	}
	standIn := filepath.Join(e.dir, "nfs")
	if err := os.MkdirAll(standIn, 0o755); err != nil {
		return err
	}
	if standIn, err = filepath.EvalSymlinks(standIn); err != nil {
		return err
	}
	binary, err := simnode.Build(ctx, e.dir)
	if err != nil {
		return err
	}
	if e.backend, err = harness.StartSnapshotBackend(ctx, c, harness.SnapshotBackendOptions{Dir: e.dir, StandInDir: standIn}); err != nil {
		return err
	}
	if err := c.CreateNamespace(ctx, namespace); err != nil {
		return err
	}
	if e.health, err = harness.StartServerHealth(runCtx, c, namespace, filepath.Join(e.dir, "podnet"), standIn); err != nil {
		return err
	}
	kubeconfig, err := e.chartIdentity(ctx)
	if err != nil {
		return err
	}
	e.ctl, err = harness.StartController(ctx, c, harness.ControllerOptions{
		Binary: binary, Dir: filepath.Join(e.dir, "controller"), Namespace: namespace, Kubeconfig: kubeconfig,
		Args: []string{"--server-network-stand-in-dir=" + e.health.Dir},
	})
	if err != nil {
		return err
	}
	tools, err := localcluster.InstallTools("provisioner", "snapshotter")
	if err != nil {
		return err
	}
	prov, err := harness.StartProvisioner(ctx, c, harness.ProvisionerOptions{Binary: tools.Provisioner, Dir: filepath.Join(e.dir, "controller"), Socket: e.ctl.Socket, Kubeconfig: kubeconfig})
	if err != nil {
		return err
	}
	e.procs = append(e.procs, prov)
	snap, err := harness.StartSnapshotter(ctx, c, harness.SnapshotterOptions{Binary: tools.Snapshotter, Dir: filepath.Join(e.dir, "controller"), Socket: e.ctl.Socket, Kubeconfig: kubeconfig})
	if err != nil {
		return err
	}
	e.procs = append(e.procs, snap)
	e.nodes = map[string]*simnode.Node{}
	var kn []kubeletsim.Node
	for _, name := range []string{nodeA, nodeB} {
		n, err := simnode.Start(ctx, simnode.Options{Binary: binary, Name: name, StandInDir: standIn, Dir: filepath.Join(e.dir, name)})
		if err != nil {
			return err
		}
		e.nodes[name] = n
		kn = append(kn, kubeletsim.SimNode(n))
	}
	if e.kubelet, err = kubeletsim.Start(ctx, kubeletsim.Options{Client: c.Client, Nodes: kn}); err != nil {
		return err
	}
	return e.createClasses(ctx)
}

// createClasses makes the pvnfs StorageClasses and VolumeSnapshotClass, as the chart does.
func (e *env) createClasses(ctx context.Context) error {
	immediate := storagev1.VolumeBindingImmediate
	for name, backend := range map[string]string{pvnfsClass: harness.BackendCSIClass, noSnapClass: noSnapBackend} {
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: harness.DriverName,
			VolumeBindingMode: &immediate, Parameters: map[string]string{"backendStorageClass": backend}}
		if _, err := e.cluster.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	vsc := &crdv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: pvnfsSnapClass}, Driver: harness.DriverName,
		DeletionPolicy: crdv1.VolumeSnapshotContentDelete}
	if _, err := e.backend.Snapshots.SnapshotV1().VolumeSnapshotClasses().Create(ctx, vsc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return e.cluster.CreateNamespace(ctx, appNS)
}

// close stops the driver; keep leaves its logs for a look at a failure.
func (e *env) close(keep bool) {
	if e.kubelet != nil {
		e.kubelet.Stop()
	}
	for _, n := range e.nodes {
		_ = n.Close()
	}
	for _, p := range e.procs {
		p.Stop(5 * time.Second)
	}
	if e.ctl != nil {
		e.ctl.Close()
	}
	if e.backend != nil {
		e.backend.Stop()
	}
	if e.cancel != nil {
		e.cancel()
	}
	switch {
	case e.dir == "":
	case keep:
		fmt.Fprintf(os.Stderr, "snapshots: driver logs kept in %s\n", e.dir)
	default:
		_ = os.RemoveAll(e.dir)
	}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
