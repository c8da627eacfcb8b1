package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// StartSnapshotController installs the VolumeSnapshot CRDs of external-snapshotter
// and runs its snapshot-controller until the cluster stops, as a cluster with CSI
// snapshots has them: the controller binds VolumeSnapshots to contents, and a
// driver's csi-snapshotter sidecar takes them. InstallTools("snapshotter") builds
// both.
func (c *Cluster) StartSnapshotController(ctx context.Context) error {
	if c.Tools.SnapshotController == "" {
		tools, err := InstallTools("snapshotter")
		if err != nil {
			return err
		}
		c.Tools.SnapshotController, c.Tools.Snapshotter, c.Tools.SnapshotCRDs = tools.SnapshotController, tools.Snapshotter, tools.SnapshotCRDs
	}
	if c.Tools.SnapshotController == "" || c.Tools.SnapshotCRDs == "" {
		return errors.New("snapshot-controller or the snapshot CRDs are missing after test/tools/install.sh snapshotter")
	}
	if err := c.kubectl(ctx, "apply", "--server-side", "-f", c.Tools.SnapshotCRDs); err != nil {
		return fmt.Errorf("installing the snapshot CRDs: %w", err)
	}
	if err := c.kubectl(ctx, "wait", "--for=condition=established", "--timeout=60s",
		"crd/volumesnapshotclasses.snapshot.storage.k8s.io", "crd/volumesnapshotcontents.snapshot.storage.k8s.io",
		"crd/volumesnapshots.snapshot.storage.k8s.io"); err != nil {
		return fmt.Errorf("waiting for the snapshot CRDs: %w", err)
	}
	p := NewProcess("snapshot-controller", c.Tools.SnapshotController, filepath.Join(c.Dir, "logs", "snapshot-controller.log"),
		"--kubeconfig="+c.Kubeconfig, "--leader-election=false", "--v=2",
		// The defaults back off for minutes after a failure; tests wait on it.
		"--retry-interval-start=1s", "--retry-interval-max=10s")
	if err := p.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.extra = append(c.extra, p)
	c.mu.Unlock()
	return nil
}

// kubectl runs kubectl against the cluster within ctx (and at most two minutes).
func (c *Cluster) kubectl(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.Tools.Kubectl, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
	}
	return nil
}
