// Package harness runs the pvnfs driver and its csi-provisioner sidecar as real
// processes against a local control plane (test/localcluster), the way a cluster
// runs them: tests, the demo and the benchmarks start, kill and restart them.
package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// DriverName is the CSI driver name the harness runs the driver under.
const DriverName = "nfs.pvnfs.io"

// ServerImage is the server image the controller writes into server Deployments.
// Nothing pulls it: kwok simulates the pods.
const ServerImage = "example.invalid/pvnfs-server:local"

// ControllerOptions configure a pvnfs-csi controller process.
type ControllerOptions struct {
	// Binary is pvnfs-csi (simnode.Build builds it).
	Binary string
	// Dir holds the socket and the log.
	Dir string
	// Namespace of the volumes' objects (created if missing).
	Namespace string
	// Args are added to the defaults, e.g. "--v=4" or "--delete-orphans-after=1m".
	Args []string
	// Kubeconfig replaces the cluster's admin kubeconfig, e.g. one holding the token
	// of the chart's ServiceAccount, to run with exactly its rights.
	Kubeconfig string
}

// Controller is a running pvnfs-csi in controller mode.
type Controller struct {
	*localcluster.Process
	// Socket is the CSI endpoint's path.
	Socket string
	// Controller and Identity are clients on the socket; they reconnect by
	// themselves after a restart.
	Controller csi.ControllerClient
	Identity   csi.IdentityClient
	conn       *grpc.ClientConn
}

// StartController starts pvnfs-csi --mode=controller against the cluster and waits
// until its Probe says ready (caches filled, API server answering).
func StartController(ctx context.Context, c *localcluster.Cluster, o ControllerOptions) (*Controller, error) {
	if err := c.CreateNamespace(ctx, o.Namespace); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	sock := filepath.Join(o.Dir, "controller.sock")
	args := append([]string{
		"--mode=controller", "--endpoint=unix://" + sock, "--kubeconfig=" + kubeconfig(c, o.Kubeconfig),
		"--driver-name=" + DriverName, "--namespace=" + o.Namespace, "--server-image=" + ServerImage,
		"--leader-election=false", "--v=2",
	}, o.Args...)
	p := localcluster.NewProcess("pvnfs-csi controller", o.Binary, filepath.Join(o.Dir, "controller.log"), args...)
	if err := p.Start(); err != nil {
		return nil, err
	}
	conn, err := dial(sock)
	if err != nil {
		p.Kill()
		return nil, err
	}
	ctl := &Controller{Process: p, Socket: sock, Controller: csi.NewControllerClient(conn), Identity: csi.NewIdentityClient(conn), conn: conn}
	if err := ctl.WaitReady(ctx, time.Minute); err != nil {
		ctl.Close()
		return nil, err
	}
	return ctl, nil
}

// WaitReady waits until the controller's Probe reports ready.
func (ctl *Controller) WaitReady(ctx context.Context, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if !ctl.Running() {
			return false, ctl.ExitError()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := ctl.Identity.Probe(pctx, &csi.ProbeRequest{})
		return err == nil && resp.GetReady().GetValue(), nil
	})
	if err != nil {
		return fmt.Errorf("pvnfs-csi controller not ready (log %s): %w", ctl.Log(), err)
	}
	return nil
}

// Restart starts the process again after Kill or Stop and waits until it is ready.
func (ctl *Controller) Restart(ctx context.Context) error {
	if err := ctl.Start(); err != nil {
		return err
	}
	return ctl.WaitReady(ctx, time.Minute)
}

// Close stops the process and closes the clients.
func (ctl *Controller) Close() {
	ctl.Stop(10 * time.Second)
	ctl.conn.Close()
}

// ProvisionerOptions configure a csi-provisioner process.
type ProvisionerOptions struct {
	// Binary is csi-provisioner (localcluster.InstallTools("provisioner")).
	Binary string
	// Dir holds the log.
	Dir string
	// Socket is the driver's CSI endpoint.
	Socket string
	// Args replace ProvisionerArgs' tuning flags when set.
	Args []string
	// Kubeconfig replaces the cluster's admin kubeconfig when set.
	Kubeconfig string
}

// ProvisionerArgs are the csi-provisioner flags the Helm chart uses, minus the
// in-cluster ones. CreateVolume waits for the server pod up to the call's deadline
// (--timeout) and returns DeadlineExceeded with what is missing; the provisioner
// then retries soon (--retry-interval-start) and never waits long between tries.
var ProvisionerArgs = []string{
	"--extra-create-metadata", "--timeout=60s", "--retry-interval-start=1s", "--retry-interval-max=30s",
	"--worker-threads=100", "--kube-api-qps=100", "--kube-api-burst=200",
}

// StartProvisioner starts csi-provisioner against the cluster and the driver socket.
func StartProvisioner(ctx context.Context, c *localcluster.Cluster, o ProvisionerOptions) (*localcluster.Process, error) {
	tuning := o.Args
	if tuning == nil {
		tuning = ProvisionerArgs
	}
	args := append([]string{"--csi-address=" + o.Socket, "--kubeconfig=" + kubeconfig(c, o.Kubeconfig), "--leader-election=false", "--v=2"}, tuning...)
	p := localcluster.NewProcess("csi-provisioner", o.Binary, filepath.Join(o.Dir, "csi-provisioner.log"), args...)
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// kubeconfig is the kubeconfig a process runs with: its own, else the admin's.
func kubeconfig(c *localcluster.Cluster, own string) string {
	if own != "" {
		return own
	}
	return c.Kubeconfig
}

func dial(sock string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}))
}
