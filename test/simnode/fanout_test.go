package simnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/test/simnode"
	"github.com/pvnfs/pvnfs/test/standin"
)

const (
	server = "10.96.0.10"
	source = server + ":/data/export"
)

func wordpressVolume() simnode.Volume {
	return simnode.Volume{
		Handle:  "pvc-7c1f0b52-3d4e-4f6a-9b8c-1d2e3f4a5b6c",
		Context: map[string]string{"server": server, "share": "/data/export"},
	}
}

// TestFanoutBindMountForNFSStandIn: one volume, three nodes with ten pods each:
// one NFS-leg mount per node, one bind mount per pod, every pod sees what any pod
// writes, a read-only pod cannot write, and nothing is left afterwards.
func TestFanoutBindMountForNFSStandIn(t *testing.T) {
	const podsPerNode = 10
	standInDir := filepath.Join(t.TempDir(), "exports")
	vol := wordpressVolume()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var nodes []*simnode.Node
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, startNode(t, name, standInDir))
	}
	pod := func(n *simnode.Node, i int) string { return fmt.Sprintf("%s-wordpress-%d", n.Name(), i) }
	readOnly := func(i int) bool { return i == podsPerNode-1 }

	for _, n := range nodes {
		if _, err := n.Stage(ctx, vol); err != nil {
			t.Fatalf("staging on %s: %v", n.Name(), err)
		}
		for i := range podsPerNode {
			if _, err := n.Publish(ctx, vol, pod(n, i), readOnly(i)); err != nil {
				t.Fatalf("publishing for %s: %v", pod(n, i), err)
			}
		}
	}
	for _, n := range nodes {
		m, err := n.VolumeMounts(source)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d NFS-leg mount(s) of %s, %d pod bind mounts, %d elsewhere", n.Name(), len(m.NFS), source, len(m.Pods), len(m.Other))
		if len(m.NFS) != 1 || len(m.Pods) != podsPerNode || len(m.Other) != 0 {
			t.Errorf("%s: %d NFS-leg mounts, %d bind mounts, %d others; want 1, %d, 0", n.Name(), len(m.NFS), len(m.Pods), len(m.Other), podsPerNode)
		}
	}
	assertNoMountsInHost(t, nodes)

	a, c := nodes[0], nodes[2]
	content := []byte("<?php /* written by " + pod(a, 0) + " */")
	if err := a.WriteFile(filepath.Join(a.TargetPath(pod(a, 0), vol.Handle), "index.php"), content); err != nil {
		t.Fatalf("writing through %s: %v", pod(a, 0), err)
	}
	if got, err := c.ReadFile(filepath.Join(c.TargetPath(pod(c, 5), vol.Handle), "index.php")); err != nil || !bytes.Equal(got, content) {
		t.Errorf("reading through %s on another node = %q, %v; want %q", pod(c, 5), got, err, content)
	}
	readers := 0
	for _, n := range nodes {
		for i := range podsPerNode {
			if got, err := n.ReadFile(filepath.Join(n.TargetPath(pod(n, i), vol.Handle), "index.php")); err == nil && bytes.Equal(got, content) {
				readers++
			}
		}
	}
	t.Logf("%d of %d pods read the file written through %s", readers, len(nodes)*podsPerNode, pod(a, 0))
	if readers != len(nodes)*podsPerNode {
		t.Errorf("%d pods read the file, want all %d", readers, len(nodes)*podsPerNode)
	}
	roTarget := c.TargetPath(pod(c, podsPerNode-1), vol.Handle)
	if err := c.WriteFile(filepath.Join(roTarget, "evil.php"), []byte("x")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing through the read-only pod %s: %v, want EROFS", pod(c, podsPerNode-1), err)
	}

	resp, err := c.Stats(ctx, vol, pod(c, 5))
	if err != nil || resp.GetVolumeCondition().GetAbnormal() || len(resp.GetUsage()) != 2 {
		t.Errorf("NodeGetVolumeStats = %v, %v; want usage and a normal condition", resp, err)
	}

	for _, n := range nodes {
		for i := range podsPerNode {
			if err := n.Unpublish(ctx, vol, pod(n, i)); err != nil {
				t.Fatalf("unpublishing %s: %v", pod(n, i), err)
			}
		}
		if err := n.Unstage(ctx, vol); err != nil {
			t.Fatalf("unstaging on %s: %v", n.Name(), err)
		}
	}
	left := 0
	for _, n := range nodes {
		m, err := n.VolumeMounts(source)
		if err != nil {
			t.Fatal(err)
		}
		left += m.Total()
		if _, err := os.Stat(n.InNode(n.StagingPath(vol.Handle))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: staging directory left: %v", n.Name(), err)
		}
		if _, err := os.Stat(n.InNode(n.TargetPath(pod(n, 0), vol.Handle))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: target directory left: %v", n.Name(), err)
		}
	}
	t.Logf("after unpublish and unstage: %d mounts of %s left on %d nodes", left, source, len(nodes))
	if left != 0 {
		t.Errorf("%d mounts of the volume left", left)
	}
	// The data is still on the "server".
	if got, err := os.ReadFile(filepath.Join(standin.ExportDir(standInDir, server, "/data/export"), "index.php")); err != nil || !bytes.Equal(got, content) {
		t.Errorf("export lost the file: %q, %v", got, err)
	}
}

// assertNoMountsInHost checks that the nodes' mounts stay in their namespaces.
func assertNoMountsInHost(t *testing.T, nodes []*simnode.Node) {
	t.Helper()
	table, err := mounter.ReadMountInfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range table {
		for _, n := range nodes {
			if strings.HasPrefix(m.Path, n.Dir()+"/") {
				t.Errorf("mount %s of node %s leaked into the test's mount namespace", m.Path, n.Name())
			}
		}
	}
}

// TestRestartIntoSameNamespaceKeepsVolumes: a plugin restarted (gracefully or
// after a crash) finds the mounts its predecessor made and answers from them.
func TestRestartIntoSameNamespaceKeepsVolumes(t *testing.T) {
	standInDir := filepath.Join(t.TempDir(), "exports")
	n := startNode(t, "node-r", standInDir)
	vol := wordpressVolume()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := n.Stage(ctx, vol); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"pod-1", "pod-2"} {
		if _, err := n.Publish(ctx, vol, p, p == "pod-2"); err != nil {
			t.Fatal(err)
		}
	}
	restarts := []struct {
		name    string
		restart func() error
	}{
		{name: "graceful restart", restart: func() error { return n.Restart(ctx) }},
		{name: "crash and start", restart: func() error {
			if err := n.KillPlugin(); err != nil {
				return err
			}
			return n.StartPlugin(ctx)
		}},
	}
	for _, r := range restarts {
		t.Run(r.name, func(t *testing.T) {
			before := n.PluginPID()
			if err := r.restart(); err != nil {
				t.Fatal(err)
			}
			if n.PluginPID() == before {
				t.Fatal("the plugin was not restarted")
			}
			// kubelet repeats stage and publish after a plugin restart.
			if _, err := n.Stage(ctx, vol); err != nil {
				t.Errorf("NodeStageVolume after restart: %v", err)
			}
			for _, p := range []string{"pod-1", "pod-2"} {
				if _, err := n.Publish(ctx, vol, p, p == "pod-2"); err != nil {
					t.Errorf("NodePublishVolume(%s) after restart: %v", p, err)
				}
			}
			m, err := n.VolumeMounts(source)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after %s: %d NFS-leg mount(s), %d pod bind mounts", r.name, len(m.NFS), len(m.Pods))
			if len(m.NFS) != 1 || len(m.Pods) != 2 || len(m.Other) != 0 {
				t.Errorf("mounts %+v, want 1 NFS-leg and 2 pod mounts", m)
			}
			resp, err := n.Stats(ctx, vol, "pod-2")
			if err != nil || resp.GetVolumeCondition().GetAbnormal() {
				t.Errorf("stats after restart = %v, %v", resp, err)
			}
			// A changed read-only flag is still refused: the plugin knows the mount.
			if _, err := n.Publish(ctx, vol, "pod-2", false); err == nil {
				t.Error("republishing a read-only pod read-write succeeded")
			}
		})
	}
	for _, p := range []string{"pod-1", "pod-2"} {
		if err := n.Unpublish(ctx, vol, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Unstage(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if m, err := n.VolumeMounts(source); err != nil || m.Total() != 0 {
		t.Errorf("mounts left: %+v, %v", m, err)
	}
}

// TestCloseTakesTheNamespaceMountsAlong: Close leaves no process, mount or
// directory behind, even with volumes still published.
func TestCloseTakesTheNamespaceMountsAlong(t *testing.T) {
	standInDir := filepath.Join(t.TempDir(), "exports")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mounttest.RequireRoot(t)
	n, err := simnode.Start(ctx, simnode.Options{Binary: binary, Name: "node-x", StandInDir: standInDir})
	if err != nil {
		t.Fatal(err)
	}
	vol := wordpressVolume()
	vol.Capability = simnode.MountCapability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	if _, err := n.Stage(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(ctx, vol, "pod-1", false); err != nil {
		t.Fatal(err)
	}
	holder, plugin, dir := n.HolderPID(), n.PluginPID(), n.Dir()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{holder, plugin} {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(b) > 0 {
			t.Errorf("process %d (%q) still running after Close", pid, b)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node directory %s left: %v", dir, err)
	}
}

// TestStandInFaultsThroughThePlugin drives the stand-in's fault hooks through the
// real binary and its flags: an unreachable server is reported, not waited for,
// and pods can still be removed; a stale export is mounted again for a new pod.
func TestStandInFaultsThroughThePlugin(t *testing.T) {
	standInDir := filepath.Join(t.TempDir(), "exports")
	n := startNode(t, "node-f", standInDir, "--stat-timeout=300ms", "--unmount-timeout=300ms", "--mount-timeout=1s")
	vol := wordpressVolume()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := n.Stage(ctx, vol); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"pod-1", "pod-2"} {
		if _, err := n.Publish(ctx, vol, p, false); err != nil {
			t.Fatal(err)
		}
	}

	if err := standin.SetUnreachable(standInDir, server, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standin.SetUnreachable(standInDir, server, false) })
	resp, err := n.Stats(ctx, vol, "pod-1")
	if err != nil {
		t.Fatal(err)
	}
	want := "NFS server " + server + " not responding after 300ms"
	if c := resp.GetVolumeCondition(); !c.GetAbnormal() || !strings.HasPrefix(c.GetMessage(), want) {
		t.Errorf("condition with the server unreachable = %v, want abnormal %q", c, want)
	}
	start := time.Now()
	if err := n.Unpublish(ctx, vol, "pod-1"); err != nil {
		t.Errorf("unpublishing with the server unreachable: %v", err)
	}
	t.Logf("unpublished with the server unreachable in %s", time.Since(start).Round(time.Millisecond))
	if err := standin.SetUnreachable(standInDir, server, false); err != nil {
		t.Fatal(err)
	}

	if err := standin.MakeStale(standInDir, server, "/data/export"); err != nil {
		t.Fatal(err)
	}
	resp, err = n.Stats(ctx, vol, "pod-2")
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.GetVolumeCondition(); !c.GetAbnormal() || !strings.HasPrefix(c.GetMessage(), "stale file handle") {
		t.Errorf("condition of a stale mount = %v, want abnormal stale file handle", c)
	}
	if _, err := n.Publish(ctx, vol, "pod-3", false); err != nil {
		t.Fatalf("publishing a new pod onto a stale staging mount: %v", err)
	}
	if resp, err := n.Stats(ctx, vol, "pod-3"); err != nil || resp.GetVolumeCondition().GetAbnormal() {
		t.Errorf("new pod's stats = %v, %v; want normal", resp, err)
	}
	for _, p := range []string{"pod-2", "pod-3"} {
		if err := n.Unpublish(ctx, vol, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Unstage(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if m, err := n.VolumeMounts(source); err != nil || m.Total() != 0 {
		t.Errorf("mounts left: %+v, %v", m, err)
	}
}
