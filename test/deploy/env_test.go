package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// env is the chart installed into the shared control plane, with the controller's
// CSI side running on the host: pvnfs-csi in controller mode and the csi-provisioner
// and csi-resizer sidecars, each with the flags the chart gives it and the token of the chart's
// controller ServiceAccount. The simulated controller pods (kwok) run nothing; these
// processes are the controller.
type env struct {
	cluster *localcluster.Cluster
	helm    string
	kubectl string
	// objects are the chart's objects as installed.
	objects []*unstructured.Unstructured
	dyn     dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	// saKubeconfig authenticates as the controller ServiceAccount.
	saKubeconfig string
	provisioner  string
	resizerBin   string
	socket       string
	dir          string

	driver, sidecar, resizer *process
}

var (
	envOnce sync.Once
	envVal  *env
	envErr  error
)

// installed returns the installed chart with the controller running, installing it
// on first use. It skips (fails under PVNFS_REQUIRE_ALL=1) when the control plane or
// a tool is unavailable.
func installed(t testing.TB) *env {
	t.Helper()
	if testing.Short() {
		missing(t, "-short: the control-plane tests need root and the local cluster")
	}
	// The cluster first: without root it skips at once, before any tool is built.
	c := shared.Get(t)
	helm := helmBinary(t)
	tools, err := localcluster.InstallTools("provisioner", "resizer")
	if err != nil || tools.Provisioner == "" || tools.Resizer == "" {
		missing(t, fmt.Sprintf("csi-provisioner or csi-resizer is not available (test/tools/install.sh provisioner resizer): %v", err))
	}
	envOnce.Do(func() {
		// Stays the error if setUp stops the first caller (t.Fatal) half way.
		envErr = errors.New("the installation stopped half way; see the first test that failed")
		envVal = &env{cluster: c, helm: helm, kubectl: tools.Kubectl, provisioner: tools.Provisioner, resizerBin: tools.Resizer}
		envErr = envVal.setUp(t)
	})
	if envErr != nil {
		t.Fatalf("installing the chart: %v\n%s", envErr, envVal.logs())
	}
	return envVal
}

func stopEnv() {
	if envVal != nil {
		envVal.resizer.stop()
		envVal.sidecar.stop()
		envVal.driver.stop()
		_ = os.RemoveAll(envVal.dir)
	}
}

func (e *env) setUp(t testing.TB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if e.dir, err = os.MkdirTemp("", "pvnfs-deploy-"); err != nil {
		return err
	}
	if e.dyn, err = dynamic.NewForConfig(e.cluster.Config); err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(e.cluster.Config)
	if err != nil {
		return err
	}
	e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	// The release record lives in "default"; the chart puts its objects in
	// namespace.name (docs/install.md).
	if _, err := runHelm(t, e.helm, append([]string{"install", releaseName, repoPath(t, chartDir),
		"--kubeconfig", e.cluster.Kubeconfig, "--namespace", "default"}, chartValues...)...); err != nil {
		return err
	}
	e.objects = decodeObjects(t, render(t, e.helm))

	if e.saKubeconfig, err = e.cluster.ServiceAccountKubeconfig(ctx, e.dir, driverNamespace, releaseName+"-controller"); err != nil {
		return err
	}
	if err := e.startDriver(ctx, t); err != nil {
		return err
	}
	if err := e.startProvisioner(t, "csi-provisioner", false); err != nil {
		return err
	}
	return e.startResizer(t)
}

// sidecarArgs are the chart's arguments of a sidecar container, pointed at
// pvnfs-csi's socket with the ServiceAccount's kubeconfig, without its HTTP
// endpoint (its port is taken on a shared host) and, unless asked for, without
// leader election.
func (e *env) sidecarArgs(t testing.TB, container string, leaderElection bool) []string {
	args := []string{"--kubeconfig=" + e.saKubeconfig, "--csi-address=" + e.socket}
	for _, a := range e.chartArgs(t, container) {
		switch flagName(a) {
		case "csi-address", "http-endpoint":
			continue
		case "leader-election", "leader-election-namespace":
			if !leaderElection {
				continue
			}
		}
		args = append(args, a)
	}
	return args
}

// startResizer runs the csi-resizer sidecar with the chart's flags against
// pvnfs-csi's socket, as the controller ServiceAccount, without leader election
// and its HTTP endpoint.
func (e *env) startResizer(t testing.TB) error {
	args := e.sidecarArgs(t, "csi-resizer", false)
	var err error
	e.resizer, err = startProcess("csi-resizer", filepath.Join(e.dir, "csi-resizer.log"), e.resizerBin, args, hostEnv())
	return err
}

// chartArgs returns the arguments the chart gives a container of the controller
// Deployment.
func (e *env) chartArgs(t testing.TB, containerName string) []string {
	dep := typed[appsv1.Deployment](t, find(t, e.objects, "Deployment", releaseName+"-controller"))
	return container(t, dep.Spec.Template.Spec, containerName).Args
}

// startDriver runs pvnfs-csi in controller mode with the chart's flags, on a socket
// of its own instead of /csi, without the metrics port (taken on a shared host) and
// with the ServiceAccount's kubeconfig. Leader election stays on when the binary has
// it (the chart's --leader-election), which exercises the Lease rights.
func (e *env) startDriver(ctx context.Context, t testing.TB) error {
	known := binaryFlags(t, pvnfsCSI)
	e.socket = filepath.Join(e.dir, "csi.sock")
	args := []string{"--kubeconfig=" + e.saKubeconfig}
	for _, a := range e.chartArgs(t, "pvnfs-csi") {
		switch name := flagName(a); {
		case name == "endpoint":
			a = "--endpoint=unix://" + e.socket
		case name == "metrics-address":
			continue
		case !known[name] && strings.HasPrefix(name, "leader-election"):
			// The chart already passes the controller's leader-election flags; a
			// pvnfs-csi without them still provisions (TestChartFlagsKnownToBinary
			// reports the gap).
			continue
		case name == "v":
			a = "--v=4"
		}
		args = append(args, a)
	}
	var err error
	e.driver, err = startProcess("pvnfs-csi", filepath.Join(e.dir, "pvnfs-csi.log"), pvnfsCSI, args, hostEnv())
	if err != nil {
		return err
	}
	return e.waitProbe(ctx)
}

// waitProbe waits until pvnfs-csi answers its CSI Probe with ready (its informer
// caches, read with the ServiceAccount's rights, are filled).
func (e *env) waitProbe(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+e.socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.socket)
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	id := csi.NewIdentityClient(conn)
	why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		if !e.driver.running() {
			return false, "", fmt.Errorf("pvnfs-csi exited")
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := id.Probe(cctx, &csi.ProbeRequest{})
		if err != nil {
			return false, err.Error(), nil
		}
		return resp.GetReady().GetValue(), "Probe: not ready", nil
	})
	if err != nil {
		return fmt.Errorf("pvnfs-csi not ready (%s): %w", why, err)
	}
	return nil
}

// startProvisioner runs the csi-provisioner sidecar with the chart's flags against
// pvnfs-csi's socket, as the controller ServiceAccount. Leader election is off unless
// asked for, and its HTTP endpoint is dropped (its port is taken on a shared host).
func (e *env) startProvisioner(t testing.TB, name string, leaderElection bool) error {
	args := e.sidecarArgs(t, "csi-provisioner", leaderElection)
	if leaderElection && !slices.Contains(args, "--leader-election") {
		return fmt.Errorf("the chart's csi-provisioner has no --leader-election")
	}
	p, err := startProcess(name, filepath.Join(e.dir, name+".log"), e.provisioner, args, hostEnv())
	if err != nil {
		return err
	}
	if name == "csi-provisioner" {
		e.sidecar = p
	} else {
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(p.tail())
			}
			p.stop()
		})
	}
	return nil
}

// hostEnv is the environment of the host processes: no KUBECONFIG (csi-provisioner
// prefers it to --kubeconfig) and no proxy settings.
func hostEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// logs returns the ends of the host processes' logs, for failure messages.
func (e *env) logs() string {
	return e.driver.tail() + "\n" + e.sidecar.tail() + "\n" + e.resizer.tail()
}

// checkNoForbidden fails t if the API server refused any request of the host
// processes: the chart's RBAC must cover everything they do, including what they only
// log when it fails (events, leases).
func (e *env) checkNoForbidden(t testing.TB) {
	t.Helper()
	for _, p := range []*process{e.driver, e.sidecar, e.resizer} {
		b, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "is forbidden: User") { // an RBAC denial
				t.Errorf("%s was refused by RBAC: %s", p.name, line)
			}
		}
	}
}
