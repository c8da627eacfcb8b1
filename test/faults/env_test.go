// Package faults injects the faults a per-volume NFS server meets in production —
// its pod deleted, its node lost, its Service deleted, the controller killed, the
// node plugin restarted, the API server down, a storm of concurrent calls — into a
// real local control plane running the real pvnfs-csi controller (with its
// reconciler) and node plugins (real mounts in one mount namespace per simulated
// node; only the NFS leg is a bind mount). Every test checks that the files written
// before the fault are intact after it, and logs how long recovery took.
package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/harness"
	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/simnode"
)

const (
	namespace = "pvnfs-system"
	// failoverPool labels the two nodes the node-loss test moves a server between.
	failoverPool = "pool=failover"
)

var shared = localcluster.Shared{
	Setup: func(ctx context.Context, c *localcluster.Cluster) error {
		if err := c.AddBackendClass(ctx, localcluster.BackendClass{Name: "rwo", Default: true, AllowExpansion: true}); err != nil {
			return err
		}
		for _, n := range []string{"failover-a", "failover-b"} {
			if err := c.AddLosableNode(ctx, n, map[string]string{"pool": "failover"}); err != nil {
				return err
			}
		}
		if err := c.WaitNodesReady(ctx, []string{"failover-a", "failover-b"}, time.Minute); err != nil {
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

// env is the driver running against the shared cluster: one controller process and
// two simulated nodes sharing one NFS stand-in directory (the "servers'" exports).
type env struct {
	once    sync.Once
	err     error
	dir     string
	cluster *localcluster.Cluster
	binary  string
	ctl     *harness.Controller
	nodes   []*simnode.Node
	standIn string
	// crashFile is the controller's --test-crash-file: a test writes a step of
	// CreateVolume into it to crash the controller right after that step.
	crashFile string
}

var theEnv env

func setup(t *testing.T) *env {
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e.cluster = c
	var err error
	if e.dir, err = os.MkdirTemp("", "pvnfs-faults-"); err != nil {
		return err
	}
	if e.binary, err = simnode.Build(ctx, e.dir); err != nil {
		return err
	}
	e.crashFile = filepath.Join(e.dir, "crash-step")
	e.ctl, err = harness.StartController(ctx, c, harness.ControllerOptions{
		Binary: e.binary, Dir: filepath.Join(e.dir, "controller"), Namespace: namespace,
		Args: []string{"--reconcile-resync=30s", "--test-crash-file=" + e.crashFile},
	})
	if err != nil {
		return err
	}
	e.standIn = filepath.Join(e.dir, "nfs")
	for _, name := range []string{"kwok-node-1", "kwok-node-2"} {
		n, err := simnode.Start(ctx, simnode.Options{Binary: e.binary, Name: name, StandInDir: e.standIn, Dir: filepath.Join(e.dir, name)})
		if err != nil {
			return err
		}
		e.nodes = append(e.nodes, n)
	}
	return nil
}

// close stops the driver; keep leaves its logs for a look at a failure.
func (e *env) close(keep bool) {
	for _, n := range e.nodes {
		_ = n.Close()
	}
	if e.ctl != nil {
		e.ctl.Close()
	}
	switch {
	case e.dir == "":
	case keep:
		fmt.Fprintf(os.Stderr, "faults: driver logs kept in %s\n", e.dir)
	default:
		_ = os.RemoveAll(e.dir)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func rwx() *csi.VolumeCapability {
	return simnode.MountCapability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
}

// createVolume provisions a volume, retrying retryable answers as the provisioner does.
func (e *env) createVolume(t *testing.T, name string, params map[string]string) simnode.Volume {
	t.Helper()
	var resp *csi.CreateVolumeResponse
	err := retry(ctxFor(t, 2*time.Minute), func(ctx context.Context) error {
		var err error
		resp, err = e.ctl.Controller.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30},
			VolumeCapabilities: []*csi.VolumeCapability{rwx()}, Parameters: params,
		})
		return err
	})
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", name, err)
	}
	v := simnode.Volume{Handle: resp.Volume.VolumeId, PVName: "pv-" + resp.Volume.VolumeId, Context: resp.Volume.VolumeContext, Capability: rwx()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = retry(ctx, func(ctx context.Context) error {
			_, err := e.ctl.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.Handle})
			return err
		})
	})
	return v
}

// mountedVolume is a volume staged and published for one pod on each node, with a
// file written through the first pod.
type mountedVolume struct {
	simnode.Volume
	targets map[*simnode.Node]string
	file    string
	content []byte
}

func (e *env) mountEverywhere(t *testing.T, v simnode.Volume) *mountedVolume {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	m := &mountedVolume{Volume: v, targets: map[*simnode.Node]string{}}
	for i, n := range e.nodes {
		if _, err := n.Stage(ctx, v); err != nil {
			t.Fatalf("%s: NodeStage: %v", n.Name(), err)
		}
		target, err := n.Publish(ctx, v, fmt.Sprintf("pod-%s-%d", v.Handle, i), false)
		if err != nil {
			t.Fatalf("%s: NodePublish: %v", n.Name(), err)
		}
		m.targets[n] = target
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i, n := range e.nodes {
			_ = n.Unpublish(ctx, v, fmt.Sprintf("pod-%s-%d", v.Handle, i))
			_ = n.Unstage(ctx, v)
		}
	})
	m.file = "wp-content/plugins/akismet/akismet.php"
	m.content = []byte("<?php // written before the fault at " + time.Now().Format(time.RFC3339Nano))
	first := e.nodes[0]
	if err := os.MkdirAll(filepath.Dir(first.InNode(filepath.Join(m.targets[first], m.file))), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := first.WriteFile(filepath.Join(m.targets[first], m.file), m.content); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkIntact asserts that every pod on every node reads the file written before the
// fault, that every node can still write, and that the volume reports healthy. It
// returns "yes" for the closing summary.
func (e *env) checkIntact(t *testing.T, m *mountedVolume) string {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	for i, n := range e.nodes {
		got, err := n.ReadFile(filepath.Join(m.targets[n], m.file))
		if err != nil || string(got) != string(m.content) {
			t.Errorf("%s: file written before the fault reads %q, %v", n.Name(), got, err)
			return "no"
		}
		after := filepath.Join(m.targets[n], fmt.Sprintf("after-fault-%d.txt", i))
		if err := n.WriteFile(after, []byte("ok")); err != nil {
			t.Errorf("%s: writing after the fault: %v", n.Name(), err)
			return "no"
		}
		stats, err := n.Stats(ctx, m.Volume, fmt.Sprintf("pod-%s-%d", m.Handle, i))
		if err != nil || stats.GetVolumeCondition().GetAbnormal() {
			t.Errorf("%s: NodeGetVolumeStats after the fault = %v, %v", n.Name(), stats, err)
			return "no"
		}
	}
	return "yes"
}

// serverPod returns the volume's live server pod, or nil.
func (e *env) serverPod(ctx context.Context, id string) *corev1.Pod {
	pods, err := e.cluster.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: volume.LabelVolumeID + "=" + id})
	if err != nil {
		return nil
	}
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil {
			return &pods.Items[i]
		}
	}
	return nil
}

// condition asks the controller whether the volume serves.
func (e *env) condition(ctx context.Context, id string) (abnormal bool, msg string, err error) {
	resp, err := e.ctl.Controller.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		return false, "", err
	}
	c := resp.GetStatus().GetVolumeCondition()
	return c.GetAbnormal(), c.GetMessage(), nil
}

// retry calls f until it succeeds or fails with a non-retryable code, as the
// provisioner does.
func retry(ctx context.Context, f func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		last = f(callCtx)
		if last == nil {
			return true, nil
		}
		if retryable(last) {
			return false, nil
		}
		return false, last
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Aborted, codes.DeadlineExceeded, codes.Unavailable, codes.Canceled:
		return true
	}
	return false
}

// report logs one row of the fault summary.
func report(t *testing.T, fault string, recovery time.Duration, intact string) {
	t.Helper()
	t.Logf("FAULT SUMMARY | %s | recovered in %v | data intact: %s", fault, recovery.Round(10*time.Millisecond), intact)
}
