package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/pvnfs/pvnfs/test/harness"
	"github.com/pvnfs/pvnfs/test/kubeletsim"
	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/simnode"
)

const (
	// DriverNamespace holds every volume's backend PVC, server Deployment and
	// Service, as in the chart.
	DriverNamespace = "pvnfs-system"
	// BackendClass is the local ReadWriteOnce StorageClass the pvnfs StorageClass's
	// backendStorageClass names: it plays the cluster's block storage.
	BackendClass = "demo-rwo"
	// StorageClassName is the chart's example StorageClass.
	StorageClassName = "pvnfs"
)

// Options configure the demo's stack.
type Options struct {
	// Dir is the state directory: the cluster (its logs and kubeconfig), the
	// driver's logs and socket, the nodes' kubelet directories, the stood-in NFS
	// exports and the pvnfs-csi binary. Required.
	Dir string
	// Progress receives what happens; required.
	Progress *Progress
	// Nodes are the simulated nodes; default kwok-node-1, -2 and -3.
	Nodes []string
}

// Stack is everything the demo runs: the control plane, the driver and its
// sidecar, the simulated nodes with their plugins, and the kubelet for volumes.
type Stack struct {
	Dir     string
	Cluster *localcluster.Cluster
	// Client is the cluster's admin client without client-go's warning log (the
	// example's namespace warns about the "restricted" pod security level, on
	// purpose: its pods meet "baseline").
	Client      kubernetes.Interface
	Tools       localcluster.Tools
	Controller  *harness.Controller
	Provisioner *localcluster.Process
	Nodes       []*simnode.Node
	Kubelet     *kubeletsim.Kubelet
	// StandInDir holds the stood-in NFS exports, <dir>/<ClusterIP>/data/export.
	StandInDir string

	p *Progress
}

// Up starts the stack, step by step, and returns once the pvnfs StorageClass is
// installed and the kubelet watches the nodes. On failure it stops what it started.
func Up(ctx context.Context, o Options) (s *Stack, err error) {
	if o.Dir == "" || o.Progress == nil {
		return nil, errors.New("demo: Options.Dir and Options.Progress are required")
	}
	if len(o.Nodes) == 0 {
		o.Nodes = []string{"kwok-node-1", "kwok-node-2", "kwok-node-3"}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	s = &Stack{Dir: dir, StandInDir: filepath.Join(dir, "nfs-exports"), p: o.Progress}
	defer func() {
		if err != nil {
			_ = s.Down()
			s = nil
		}
	}()
	p := o.Progress

	p.Step("Checking the tools (test/tools/install.sh; a first run builds Kubernetes from source, about 15 minutes)")
	if s.Tools, err = localcluster.InstallTools("apt", "kube", "kwok", "provisioner"); err != nil {
		return s, err
	}
	if s.Tools.Provisioner == "" {
		return s, errors.New("csi-provisioner is missing after test/tools/install.sh provisioner")
	}
	p.Detail("etcd, Kubernetes %s, kwok and csi-provisioner in %s", s.Tools.KubeVersion, filepath.Dir(filepath.Dir(s.Tools.Kwok)))

	p.Step("Building pvnfs-csi from this checkout")
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	binary, err := simnode.Build(bctx, filepath.Join(dir, "bin"))
	if err != nil {
		return s, err
	}

	p.Step("Starting the control plane: etcd, kube-apiserver, kube-controller-manager and kube-scheduler (real), kwok (simulated nodes)")
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	s.Cluster, err = localcluster.Start(cctx, localcluster.Options{Dir: filepath.Join(dir, "cluster"), Nodes: o.Nodes, Logf: p.Detail})
	if err != nil {
		return s, err
	}
	cfg := rest.CopyConfig(s.Cluster.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	if s.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return s, err
	}
	if err := s.Cluster.AddBackendClass(cctx, localcluster.BackendClass{Name: BackendClass, AllowExpansion: true}); err != nil {
		return s, err
	}
	if err := s.Cluster.StartBackendProvisioner(); err != nil {
		return s, err
	}
	p.Detail("nodes %s; backend StorageClass %s (ReadWriteOnce, WaitForFirstConsumer) stands for block storage",
		strings.Join(o.Nodes, ", "), BackendClass)

	p.Step("Starting the driver: pvnfs-csi --mode=controller and the csi-provisioner sidecar, as processes")
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	s.Controller, err = harness.StartController(dctx, s.Cluster, harness.ControllerOptions{
		Binary: binary, Dir: filepath.Join(dir, "controller"), Namespace: DriverNamespace,
	})
	if err != nil {
		return s, err
	}
	s.Provisioner, err = harness.StartProvisioner(dctx, s.Cluster, harness.ProvisionerOptions{
		Binary: s.Tools.Provisioner, Dir: filepath.Join(dir, "controller"), Socket: s.Controller.Socket,
	})
	if err != nil {
		return s, err
	}

	p.Step("Starting a node plugin per node: pvnfs-csi --mode=node, each in a mount namespace of its own")
	for _, name := range o.Nodes {
		n, err := simnode.Start(dctx, simnode.Options{
			Binary: binary, Name: name, StandInDir: s.StandInDir, Dir: filepath.Join(dir, "nodes", name),
		})
		if err != nil {
			return s, fmt.Errorf("node plugin of %s: %w", name, err)
		}
		s.Nodes = append(s.Nodes, n)
		p.Detail("%s: plugin pid %d, kubelet directory %s", name, n.PluginPID(), s.rel(n.KubeletDir()))
	}

	p.Step("Starting the simulated kubelet for volumes on %d nodes (test/kubeletsim)", len(s.Nodes))
	var nodes []kubeletsim.Node
	for _, n := range s.Nodes {
		nodes = append(nodes, kubeletsim.SimNode(n))
	}
	s.Kubelet, err = kubeletsim.Start(dctx, kubeletsim.Options{Client: s.Client, Nodes: nodes, OnAction: s.reportAction})
	if err != nil {
		return s, err
	}

	p.Step("Installing pvnfs's CSIDriver, PriorityClass and StorageClass %q (deploy/kubernetes), backendStorageClass=%s", StorageClassName, BackendClass)
	if err := s.installDriverObjects(dctx); err != nil {
		return s, err
	}
	return s, nil
}

// reportAction shows the kubelet's calls as they happen.
func (s *Stack) reportAction(a kubeletsim.Action) {
	var what string
	pv := cut(a.PV, 12)
	switch a.Op {
	case kubeletsim.OpStage:
		what = fmt.Sprintf("NodeStageVolume %s: the node's one NFS mount of it", pv)
	case kubeletsim.OpPublish:
		what = fmt.Sprintf("NodePublishVolume %s: bind mount into pod %s", pv, a.Pod)
	case kubeletsim.OpUnpublish:
		what = fmt.Sprintf("NodeUnpublishVolume %s: pod %s is gone", pv, a.Pod)
	case kubeletsim.OpUnstage:
		what = fmt.Sprintf("NodeUnstageVolume %s: no pod of it left on the node", pv)
	}
	if a.Err != nil {
		s.p.Detail("kubelet %s: %s FAILED, will retry: %v", a.Node, what, a.Err)
		return
	}
	s.p.Detail("kubelet %s: %s", a.Node, what)
}

// Node returns the simulated node of that name, or nil.
func (s *Stack) Node(name string) *simnode.Node {
	for _, n := range s.Nodes {
		if n.Name() == name {
			return n
		}
	}
	return nil
}

// Down stops everything Up started, in the reverse order: the kubelet, the node
// plugins with their mount namespaces (and so every mount), the sidecar, the
// controller and the control plane (which removes etcd's data). Logs stay in Dir.
func (s *Stack) Down() error {
	var errs []error
	if s.Kubelet != nil {
		s.Kubelet.Stop()
	}
	for _, n := range s.Nodes {
		if err := n.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name(), err))
		}
	}
	if s.Provisioner != nil {
		s.Provisioner.Stop(10 * time.Second)
	}
	if s.Controller != nil {
		s.Controller.Close()
	}
	if s.Cluster != nil {
		s.Cluster.Stop()
	}
	return errors.Join(errs...)
}

// rel shortens a path below the working directory for display.
func (s *Stack) rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if r, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}
