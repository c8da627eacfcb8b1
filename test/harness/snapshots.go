package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/pvnfs/pvnfs/pkg/nfsserver"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/dircsi"
	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/standin"
)

// SnapshotterOptions configure a csi-snapshotter process.
type SnapshotterOptions struct {
	// Binary is csi-snapshotter (localcluster.InstallTools("snapshotter")).
	Binary string
	// Dir holds the log.
	Dir string
	// Socket is the driver's CSI endpoint.
	Socket string
	// Kubeconfig replaces the cluster's admin kubeconfig when set.
	Kubeconfig string
}

// SnapshotterArgs are the csi-snapshotter flags the Helm chart uses, minus the
// in-cluster ones: CreateSnapshot waits for the backend snapshot up to --timeout and
// is retried soon after a DeadlineExceeded.
var SnapshotterArgs = []string{
	"--extra-create-metadata", "--timeout=60s", "--retry-interval-start=1s", "--retry-interval-max=30s",
	"--worker-threads=10", "--kube-api-qps=100", "--kube-api-burst=200",
}

// StartSnapshotter starts csi-snapshotter against the cluster and the driver socket.
func StartSnapshotter(_ context.Context, c *localcluster.Cluster, o SnapshotterOptions) (*localcluster.Process, error) {
	args := append([]string{"--csi-address=" + o.Socket, "--kubeconfig=" + kubeconfig(c, o.Kubeconfig), "--leader-election=false", "--v=2"}, SnapshotterArgs...)
	p := localcluster.NewProcess("csi-snapshotter", o.Binary, filepath.Join(o.Dir, "csi-snapshotter.log"), args...)
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// The backend that snapshots: the StorageClass and default VolumeSnapshotClass of
// the dircsi test driver.
const (
	BackendDriverName    = "dir.test.pvnfs.io"
	BackendCSIClass      = "dir-rwo"
	BackendSnapshotClass = "dir-snapshots"
)

// SnapshotBackend is a backend CSI driver that really takes snapshots (test/dircsi)
// behind the real csi-provisioner, csi-resizer and csi-snapshotter, with the
// cluster's snapshot-controller and CRDs.
type SnapshotBackend struct {
	Driver                            *dircsi.Driver
	Provisioner, Resizer, Snapshotter *localcluster.Process
	// Snapshots is a client of the VolumeSnapshot API.
	Snapshots snapclient.Interface
}

// SnapshotBackendOptions configure StartSnapshotBackend.
type SnapshotBackendOptions struct {
	// Dir holds the driver's directories, socket and the sidecars' logs.
	Dir string
	// StandInDir is the NFS stand-in's directory (resolved): a backend volume of a
	// pvnfs volume is made there, as the directory the stand-in exports for the
	// volume's server (<StandInDir>/<ClusterIP>/data, the server's /data), so that
	// the bytes pods write through pvnfs are the backend volume's.
	StandInDir string
}

// StartSnapshotBackend installs the snapshot CRDs and the snapshot-controller and
// starts the dircsi driver with its sidecars, its StorageClass BackendCSIClass
// (Immediate binding) and its default VolumeSnapshotClass BackendSnapshotClass.
func StartSnapshotBackend(ctx context.Context, c *localcluster.Cluster, o SnapshotBackendOptions) (_ *SnapshotBackend, err error) {
	tools, err := localcluster.InstallTools("provisioner", "resizer", "snapshotter")
	if err != nil {
		return nil, err
	}
	if tools.Provisioner == "" || tools.Resizer == "" || tools.Snapshotter == "" {
		return nil, errors.New("csi-provisioner, csi-resizer or csi-snapshotter is missing after test/tools/install.sh provisioner resizer snapshotter")
	}
	if err := c.StartSnapshotController(ctx); err != nil {
		return nil, err
	}
	b := &SnapshotBackend{}
	defer func() {
		if err != nil {
			b.Stop()
		}
	}()
	if b.Snapshots, err = snapclient.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	place := func(ctx context.Context, params map[string]string) (string, error) {
		ns, name := params["csi.storage.k8s.io/pvc/namespace"], params["csi.storage.k8s.io/pvc/name"]
		if ns == "" || name == "" {
			return "", nil
		}
		pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		ip := pvc.Annotations[volume.AnnotationClusterIP]
		if ip == "" || o.StandInDir == "" {
			return "", nil // not a pvnfs backend volume
		}
		return standin.ExportDir(o.StandInDir, ip, volume.VolumeRoot), nil
	}
	if b.Driver, err = dircsi.Start(dircsi.Options{Name: BackendDriverName, Root: filepath.Join(o.Dir, "backend"), Place: place}); err != nil {
		return nil, err
	}
	logs := filepath.Join(o.Dir, "backend-sidecars")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	if b.Provisioner, err = StartProvisioner(ctx, c, ProvisionerOptions{Binary: tools.Provisioner, Dir: logs, Socket: b.Driver.Socket}); err != nil {
		return nil, err
	}
	if b.Snapshotter, err = StartSnapshotter(ctx, c, SnapshotterOptions{Binary: tools.Snapshotter, Dir: logs, Socket: b.Driver.Socket}); err != nil {
		return nil, err
	}
	// pvnfs grows a volume by raising its backend PVC's request and waits until the
	// backend's resizer has grown it.
	b.Resizer = localcluster.NewProcess("csi-resizer", tools.Resizer, filepath.Join(logs, "csi-resizer.log"),
		"--csi-address="+b.Driver.Socket, "--kubeconfig="+c.Kubeconfig, "--leader-election=false", "--v=2",
		"--timeout=30s", "--handle-volume-inuse-error=false")
	if err := b.Resizer.Start(); err != nil {
		return nil, err
	}
	mode := storagev1.VolumeBindingImmediate
	reclaim := corev1.PersistentVolumeReclaimDelete
	// Expansion is allowed, as pvnfs requires to grow a volume.
	expand := true
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: BackendCSIClass}, Provisioner: BackendDriverName,
		VolumeBindingMode: &mode, ReclaimPolicy: &reclaim, AllowVolumeExpansion: &expand}
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	vsc := &crdv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: BackendSnapshotClass, Annotations: map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}},
		Driver:     BackendDriverName, DeletionPolicy: crdv1.VolumeSnapshotContentDelete,
	}
	if _, err := b.Snapshots.SnapshotV1().VolumeSnapshotClasses().Create(ctx, vsc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	return b, nil
}

// Stop stops the sidecars and the driver.
func (b *SnapshotBackend) Stop() {
	for _, p := range []*localcluster.Process{b.Snapshotter, b.Resizer, b.Provisioner} {
		if p != nil {
			p.Stop(5 * time.Second)
		}
	}
	if b.Driver != nil {
		b.Driver.Stop()
	}
}

// ServerHealth stands for the health port of every simulated server pod of a
// namespace: for each running one it serves pvnfs-server's real flush handler on
// the unix socket standin.HealthSocket(Dir, podIP, port), which a test build of the
// controller (--server-network-stand-in-dir) dials instead of the pod's IP.
type ServerHealth struct {
	// Dir holds the sockets.
	Dir     string
	root    string
	flushes atomic.Int64

	mu        sync.Mutex
	listeners map[string]net.Listener // by socket path
}

// StartServerHealth serves until ctx ends. root is a directory on the backend
// volumes' filesystem: the flush handler syncs that filesystem (syncfs), as the
// server does its backend volume's.
func StartServerHealth(ctx context.Context, c *localcluster.Cluster, namespace, dir, root string) (*ServerHealth, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h := &ServerHealth{Dir: dir, root: root, listeners: map[string]net.Listener{}}
	f := informers.NewSharedInformerFactoryWithOptions(c.Client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = volume.LabelComponent + "=" + volume.ComponentServer
		}))
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { h.sync(o) },
		UpdateFunc: func(_, o any) { h.sync(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if pod, ok := o.(*corev1.Pod); ok {
				h.close(pod)
			}
		},
	})
	f.Start(ctx.Done())
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("server pod informer did not sync: %w", ctx.Err())
	}
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, l := range h.listeners {
			l.Close()
		}
	}()
	return h, nil
}

// Flushes is how many flush requests the servers answered.
func (h *ServerHealth) Flushes() int64 { return h.flushes.Load() }

func (h *ServerHealth) socket(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if c.Name == volume.ServerContainerName && p.Name == volume.HealthPortName && pod.Status.PodIP != "" {
				return standin.HealthSocket(h.Dir, pod.Status.PodIP, int(p.ContainerPort))
			}
		}
	}
	return ""
}

func (h *ServerHealth) sync(o any) {
	pod, ok := o.(*corev1.Pod)
	if !ok || pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
		if ok {
			h.close(pod)
		}
		return
	}
	sock := h.socket(pod)
	if sock == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.listeners[sock] != nil {
		return
	}
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return
	}
	h.listeners[sock] = ln
	flush := nfsserver.NewFlushHandler(h.root)
	mux := http.NewServeMux()
	mux.Handle(volume.FlushPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.flushes.Add(1)
		flush.ServeHTTP(w, r)
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
}

func (h *ServerHealth) close(pod *corev1.Pod) {
	sock := h.socket(pod)
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.listeners[sock]; l != nil {
		l.Close()
		delete(h.listeners, sock)
	}
}
