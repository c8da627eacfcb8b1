package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/test/harness"
	"github.com/pvnfs/pvnfs/test/localcluster"
)

// Names of the benchmark's objects.
const (
	// backendClass is the ReadWriteOnce class of the backend PVCs:
	// WaitForFirstConsumer, like most block storage, so each backend volume is
	// provisioned once its server pod is scheduled.
	backendClass = "bench-rwo"
	// pvnfsClass is the RWX StorageClass of the users' PVCs.
	pvnfsClass = "pvnfs-bench"
	// driverNS holds the volumes' objects in the provisioning phase, footprintNS in
	// the footprint phase (a fresh namespace and controller, so its caches hold the
	// 1,000 volumes and nothing else), lowerBoundNS the lower bound's.
	driverNS     = "pvnfs-system"
	footprintNS  = "pvnfs-footprint"
	lowerBoundNS = "bench-lower-bound"
	// userNS holds the users' PVCs.
	userNS = "bench"
)

// env is the control plane and the driver binary the cluster phases share.
type env struct {
	opts    options
	logf    func(format string, args ...any)
	work    string
	binary  string
	chart   chartSettings
	cluster *localcluster.Cluster
	tools   localcluster.Tools
	// observe watches, unthrottled; act makes the benchmark's own writes at the
	// controller's rate limits (its PVCs, the lower bound's objects).
	observe, act kubernetes.Interface
}

// startCluster starts the control plane with the backend StorageClass and its
// provisioner.
func (e *env) startCluster(ctx context.Context) error {
	var nodes []string
	for i := 1; i <= e.opts.nodes; i++ {
		nodes = append(nodes, fmt.Sprintf("bench-node-%d", i))
	}
	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir:   filepath.Join(e.work, "cluster"),
		Nodes: nodes,
		// Nothing here simulates node loss; a control plane starved of CPU by a
		// 1,000-volume burst must not declare the nodes lost either.
		NodeMonitorGracePeriod: time.Hour,
		Logf:                   e.logf,
	})
	if err != nil {
		return err
	}
	e.cluster = c
	if err := c.AddBackendClass(ctx, localcluster.BackendClass{Name: backendClass}); err != nil {
		return err
	}
	if err := c.StartBackendProvisioner(); err != nil {
		return err
	}
	if e.tools, err = localcluster.InstallTools("provisioner"); err != nil {
		return err
	}
	if e.tools.Provisioner == "" {
		return fmt.Errorf("csi-provisioner is not installed (test/tools/install.sh provisioner)")
	}
	observe := rest.CopyConfig(c.Config)
	observe.QPS, observe.Burst = -1, 0 // no client-side limit: it only watches
	if e.observe, err = kubernetes.NewForConfig(observe); err != nil {
		return err
	}
	act := rest.CopyConfig(c.Config)
	act.QPS, act.Burst = float32(e.chart.Controller.KubeAPIQPS), e.chart.Controller.KubeAPIBurst
	if e.act, err = kubernetes.NewForConfig(act); err != nil {
		return err
	}
	for _, ns := range []string{userNS, lowerBoundNS} {
		if err := c.CreateNamespace(ctx, ns); err != nil {
			return err
		}
	}
	return nil
}

// createStorageClass creates the users' RWX StorageClass.
func (e *env) createStorageClass(ctx context.Context) error {
	reclaim := corev1.PersistentVolumeReclaimDelete
	immediate := storagev1.VolumeBindingImmediate
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: pvnfsClass},
		Provisioner:       harness.DriverName,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &immediate,
		Parameters:        map[string]string{parameters.BackendStorageClass: backendClass},
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := e.cluster.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// driver is a pvnfs-csi controller with its metrics endpoint, and optionally the
// csi-provisioner sidecar.
type driver struct {
	ctl         *harness.Controller
	metricsURL  string
	provisioner *localcluster.Process
}

// startDriver starts pvnfs-csi --mode=controller for namespace with the chart's
// client settings and a metrics endpoint, and the csi-provisioner sidecar with the
// chart's flags when withProvisioner is set.
func (e *env) startDriver(ctx context.Context, namespace string, withProvisioner bool) (*driver, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	metricsAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	dir := filepath.Join(e.work, "driver-"+namespace)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ctl, err := harness.StartController(sctx, e.cluster, harness.ControllerOptions{
		Binary: e.binary, Dir: dir, Namespace: namespace,
		Args: append(e.chart.controllerArgs(), "--metrics-address="+metricsAddr),
	})
	if err != nil {
		return nil, err
	}
	d := &driver{ctl: ctl, metricsURL: "http://" + metricsAddr + "/metrics"}
	if !withProvisioner {
		return d, nil
	}
	args := append(e.chart.provisionerArgs(), "--http-endpoint=127.0.0.1:"+strconv.Itoa(ports[1]))
	if d.provisioner, err = harness.StartProvisioner(ctx, e.cluster, harness.ProvisionerOptions{
		Binary: e.tools.Provisioner, Dir: dir, Socket: ctl.Socket, Args: args,
	}); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// stop stops the sidecar and the controller.
func (d *driver) stop() {
	if d.provisioner != nil {
		d.provisioner.Stop(10 * time.Second)
	}
	d.ctl.Close()
}

// alive explains a driver process that exited.
func (d *driver) alive() error {
	if !d.ctl.Running() {
		return d.ctl.ExitError()
	}
	if d.provisioner != nil && !d.provisioner.Running() {
		return d.provisioner.ExitError()
	}
	return nil
}

// freePorts returns n distinct free TCP ports on loopback.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// stopCluster stops the control plane.
func (e *env) stopCluster() {
	if e.cluster != nil {
		e.cluster.Stop()
	}
}

// keepDir reports where logs were kept, or removes the work directory.
func (e *env) cleanUp(keep bool) {
	if keep {
		fmt.Fprintf(os.Stderr, "bench: logs kept in %s\n", e.work)
		return
	}
	_ = os.RemoveAll(e.work)
}
