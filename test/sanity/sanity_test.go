// Package sanity runs the CSI conformance specs of csi-test (csi-sanity, in process)
// against the whole pvnfs driver: identity, controller and node services over one
// unix socket, the controller backed by a real local control plane (server pods made
// Ready by kwok), the node making real mounts in a private mount namespace with only
// the NFS leg stood in for by bind mounts (there is no NFS on these machines).
package sanity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/pkg/csiserver"
	"github.com/pvnfs/pvnfs/pkg/identity"
	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/pkg/node"
	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/harness"
	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/standin"
)

const namespace = "pvnfs-system"

var shared = localcluster.Shared{
	Setup: func(ctx context.Context, c *localcluster.Cluster) error {
		if err := c.AddBackendClass(ctx, localcluster.BackendClass{Name: "rwo", Default: true, AllowExpansion: true}); err != nil {
			return err
		}
		if err := c.StartBackendProvisioner(); err != nil {
			return err
		}
		return c.CreateNamespace(ctx, namespace)
	},
}

func TestMain(m *testing.M) { mounttest.Run(m, func() int { return shared.Main(m) }) }

// maxSkipped is how many csi-sanity specs may be skipped: those of capabilities pvnfs
// does not offer (ControllerPublish, node expansion, attach limits, capacity, group
// snapshots). Before pvnfs took snapshots and clones, 40 were skipped; their 19
// specs run now.
const maxSkipped = 21

// report is csi-sanity's Ginkgo report, kept for the skip count.
var report ginkgo.Report

var _ = ginkgo.ReportAfterSuite("pvnfs: count of skipped specs", func(r ginkgo.Report) { report = r })

// TestSanityControlPlaneAndStandInNFS runs every csi-sanity spec that applies to
// pvnfs, snapshots, clones and ModifyVolume included, with volumes on a backend that
// takes snapshots (test/dircsi behind the real csi-provisioner, csi-resizer and
// csi-snapshotter). None is skipped by this test; csi-sanity itself skips the specs
// of capabilities pvnfs does not offer (ControllerPublish, node expansion, attach
// limits), and the test fails when more than maxSkipped are skipped.
func TestSanityControlPlaneAndStandInNFS(t *testing.T) {
	mounttest.RequireMounts(t)
	c := shared.Get(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	standInDir := filepath.Join(dir, "nfs")
	if err := os.MkdirAll(standInDir, 0o755); err != nil {
		t.Fatal(err)
	}
	standInDir, err := filepath.EvalSymlinks(standInDir)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := harness.StartSnapshotBackend(ctx, c, harness.SnapshotBackendOptions{Dir: dir, StandInDir: standInDir})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Stop()
	health, err := harness.StartServerHealth(ctx, c, namespace, filepath.Join(dir, "podnet"), standInDir)
	if err != nil {
		t.Fatal(err)
	}

	ctrl := controller.New(c.Client, controller.Config{
		Namespace: namespace, ServerImage: "example.invalid/pvnfs-server:sanity",
		ServerImagePullPolicy: corev1.PullIfNotPresent, MaxWait: time.Minute,
	})
	ctrl.EnableSnapshots(backend.Snapshots, controller.NewHTTPFlusher(standin.HealthDialer(health.Dir)))
	if err := ctrl.Start(ctx); err != nil {
		t.Fatal(err)
	}

	runner := mounter.NewExecRunner()
	nfs, err := standin.New(standInDir, mounter.New(runner), runner)
	if err != nil {
		t.Fatal(err)
	}
	nodeSvc, err := node.New(node.Config{
		NodeID: "kwok-node-1", DriverName: volume.DefaultDriverName, Mounter: nfs,
		MountTimeout: 30 * time.Second, UnmountTimeout: 10 * time.Second, StatTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	srv, err := csiserver.Listen("unix://"+sock, csiserver.Services{
		Identity:   identity.New(volume.DefaultDriverName, "sanity", true, ctrl.Ready),
		Controller: ctrl,
		Node:       nodeSvc,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, 5*time.Second); close(done) }()
	defer func() { cancel(); <-done }()

	cfg := sanity.NewTestConfig()
	cfg.Address = sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 1 << 30
	cfg.TestVolumeExpandSize = 2 << 30
	// Volumes keep their data on the backend that snapshots.
	cfg.TestVolumeParameters = map[string]string{"backendStorageClass": harness.BackendCSIClass}
	// A VolumeAttributesClass's parameters: the ModifyVolume specs and
	// CreateVolume with a class run with them.
	cfg.TestVolumeMutableParameters = map[string]string{parameters.NFSThreads: "16"}
	t.Logf("csi-sanity with IdempotentCount=%d against namespace %s; NFS stood in for by bind mounts under %s", cfg.IdempotentCount, namespace, dir)
	sanity.Test(t, cfg)

	var skipped []string
	for _, s := range report.SpecReports {
		if s.State == types.SpecStateSkipped {
			skipped = append(skipped, s.FullText())
		}
	}
	t.Logf("csi-sanity skipped %d specs:\n%s", len(skipped), strings.Join(skipped, "\n"))
	if len(skipped) > maxSkipped {
		t.Errorf("csi-sanity skipped %d specs, at most %d expected: a capability is no longer offered?", len(skipped), maxSkipped)
	}
}

func init() {
	// csi-sanity writes the Ginkgo summary (ran / passed / skipped) to stdout; keep
	// it readable in `go test -v` output.
	_ = os.Setenv("GINKGO_NO_COLOR", "TRUE")
}
