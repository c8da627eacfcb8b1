// Command pvnfs-csi is the pvnfs CSI plugin: the controller service (one Deployment
// per cluster) and the node service (a DaemonSet in the host network). main only
// parses flags and wires the pieces together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/pkg/csiserver"
	"github.com/pvnfs/pvnfs/pkg/identity"
	"github.com/pvnfs/pvnfs/pkg/version"
)

func main() {
	opts := defaultOptions()
	fs := flag.NewFlagSet("pvnfs-csi", flag.ExitOnError)
	klog.InitFlags(fs)
	opts.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "pvnfs-csi %s: CSI driver %s giving every ReadWriteMany volume its own NFS server.\n\nUsage: pvnfs-csi [flags]\n\nFlags:\n", version.Version, opts.driverName)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if opts.showVersion {
		fmt.Println("pvnfs-csi", version.Version)
		return
	}
	if err := opts.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "pvnfs-csi: invalid flags:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &opts); err != nil {
		klog.ErrorS(err, "pvnfs-csi stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, o *options) error {
	klog.InfoS("Starting pvnfs-csi", "version", version.Version, "mode", o.mode, "driver", o.driverName)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	services := csiserver.Services{}
	var ready func(context.Context) error
	if o.runsController() {
		cfg, err := kubeConfig(o, reg)
		if err != nil {
			return err
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		snapshots, err := snapclient.NewForConfig(cfg)
		if err != nil {
			return err
		}
		ctrl := controller.New(client, controller.Config{
			DriverName:            o.driverName,
			Registerer:            reg,
			Namespace:             o.controller.namespace,
			ServerImage:           o.controller.serverImage,
			ServerImagePullPolicy: corev1.PullPolicy(o.controller.serverImagePullPolicy),
			ServerPullSecrets:     o.controller.pullSecrets(),
			NFSClients:            o.controller.clients(),
			MaxWait:               o.controller.maxWait,
			AfterStep:             o.controller.crashHook.afterStep(),
		})
		ctrl.EnableSnapshots(snapshots, controller.NewHTTPFlusher(o.controller.serverNetwork.dial()))
		// Caches fill in the background; Probe says not ready until they have.
		go func() {
			if err := ctrl.Start(ctx); err != nil {
				if ctx.Err() == nil {
					klog.ErrorS(err, "Controller caches failed to start")
				}
				return
			}
			runReconciler(ctx, o, client, ctrl)
		}()
		services.Controller = ctrl
		ready = ctrl.Ready
	}
	if o.runsNode() {
		node, err := newNodeService(o)
		if err != nil {
			return err
		}
		services.Node = node
	}
	services.Identity = identity.New(o.driverName, version.Version, o.runsController(), ready)

	if o.metricsAddr != "" {
		go serveMetrics(ctx, o.metricsAddr, reg)
	}
	srv, err := csiserver.Listen(o.endpoint, services)
	if err != nil {
		return err
	}
	return srv.Serve(ctx, o.shutdownGrace)
}

// kubeConfig is the Kubernetes clients' configuration, with their rate limits and a
// per-request timeout, so no API call can block a CSI call forever.
func kubeConfig(o *options, reg prometheus.Registerer) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("loading the Kubernetes client configuration (set --kubeconfig outside a cluster): %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.kubeAPIQPS), o.kubeAPIBurst
	cfg.Timeout = 30 * time.Second
	cfg.UserAgent = "pvnfs-csi/" + version.Version
	controller.InstrumentClient(cfg, reg)
	return cfg, nil
}

func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	klog.InfoS("Serving metrics", "address", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		klog.ErrorS(err, "Metrics server failed", "address", addr)
	}
}

// runReconciler runs the controller's reconciler: in this process alone, or, with
// --leader-election, only while this replica holds the Lease.
func runReconciler(ctx context.Context, o *options, client kubernetes.Interface, ctrl *controller.Service) {
	opts := controller.ReconcileOptions{Resync: o.controller.resync, DeleteOrphansAfter: o.controller.deleteOrphansAfter,
		MaxServerRollouts: o.controller.maxServerRollouts}
	if !o.controller.leaderElection {
		ctrl.Reconcile(ctx, opts)
		return
	}
	ns := o.controller.leaderElectionNamespace
	if ns == "" {
		ns = o.controller.namespace
	}
	id, err := os.Hostname()
	if err != nil {
		id = "pvnfs-controller"
	}
	id += "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: leaseName(o.driverName), Namespace: ns},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	// Campaign again after losing the Lease (an API server outage): CSI calls keep
	// being served meanwhile; only the reconciler pauses.
	for ctx.Err() == nil {
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            lock.LeaseMeta.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					klog.InfoS("Leading: starting the reconciler", "lease", ns+"/"+lock.LeaseMeta.Name, "identity", id)
					ctrl.Reconcile(ctx, opts)
				},
				OnStoppedLeading: func() { klog.InfoS("Not leading: reconciler stopped", "identity", id) },
			},
		})
	}
}

// leaseName derives the Lease name from the driver name, so two pvnfs installations
// with different driver names do not share a leader.
func leaseName(driver string) string {
	return strings.ReplaceAll(driver, ".", "-") + "-controller"
}
