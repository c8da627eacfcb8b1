package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/test/standin"
)

func TestMain(m *testing.M) { mounttest.Main(m) }

// standInEnv is an env whose mounts are real, in the test's private mount
// namespace; only the NFS leg is a bind mount of a stand-in export.
type standInEnv struct {
	*env
	si  *standin.StandIn
	mnt *mounter.Mounter
}

func newStandInEnv(t *testing.T) *standInEnv {
	t.Helper()
	mounttest.RequireMounts(t)
	runner := &mounter.ExecRunner{DefaultTimeout: time.Minute, KillGrace: 5 * time.Second}
	real := mounter.New(runner)
	var si *standin.StandIn
	e := newEnv(t, func(c *Config) {
		c.MountTimeout, c.UnmountTimeout, c.StatTimeout = 500*time.Millisecond, 300*time.Millisecond, 200*time.Millisecond
	})
	si, err := standin.New(filepath.Join(e.dir, "standin"), real, runner)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.mounter = si
	e.svc.health = newChecker(si.Statfs, e.svc.cfg.StatTimeout, e.svc.cfg.Clock)
	e.fake = nil
	t.Cleanup(func() {
		_ = standin.SetUnreachable(si.Dir(), testServer, false)
		unmountUnder(t, real, e.dir)
	})
	return &standInEnv{env: e, si: si, mnt: real}
}

// unmountUnder lazily unmounts everything below dir, deepest first, so that a
// failing test leaves no mount behind.
func unmountUnder(t *testing.T, m *mounter.Mounter, dir string) {
	table, err := m.List()
	if err != nil {
		t.Error(err)
		return
	}
	var paths []string
	for _, mp := range table {
		if strings.HasPrefix(mp.Path, dir+"/") {
			paths = append(paths, mp.Path)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for _, p := range paths {
		_ = m.Unmount(context.Background(), p, mounter.UnmountLazy)
	}
}

// mountsUnder lists the mounts below dir, as the service sees them.
func (e *standInEnv) mountsUnder(t *testing.T) []mounter.MountPoint {
	t.Helper()
	table, err := e.si.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []mounter.MountPoint
	for _, m := range table {
		if strings.HasPrefix(m.Path, e.dir+"/") {
			out = append(out, m)
		}
	}
	return out
}

func (e *standInEnv) stats(t *testing.T, pod string) *csi.NodeGetVolumeStatsResponse {
	t.Helper()
	resp, err := e.svc.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: testVolume, VolumePath: e.target(pod)})
	if err != nil {
		t.Fatalf("NodeGetVolumeStats(%s): %v", pod, err)
	}
	return resp
}

func (e *standInEnv) unpublishAndUnstage(t *testing.T, pods ...string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range pods {
		if _, err := e.svc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: e.target(p)}); err != nil {
			t.Fatalf("NodeUnpublishVolume(%s): %v", p, err)
		}
	}
	if _, err := e.svc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: testVolume, StagingTargetPath: e.staging}); err != nil {
		t.Fatalf("NodeUnstageVolume: %v", err)
	}
	if left := e.mountsUnder(t); len(left) != 0 {
		t.Errorf("mounts left after unpublish and unstage: %+v", left)
	}
	for _, p := range append([]string{e.staging}, e.target(pods[0])) {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
}

func TestStandInStageToUnstageWithRealBindMounts(t *testing.T) {
	e := newStandInEnv(t)
	e.stage(t)
	e.stage(t)
	e.publish(t, "writer", false)
	e.publish(t, "reader", true)
	e.publish(t, "reader", true)

	if err := os.WriteFile(filepath.Join(e.target("writer"), "index.php"), []byte("<?php echo 1;"), 0o644); err != nil {
		t.Fatalf("writing through the read-write pod: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(e.target("reader"), "index.php")); err != nil || string(b) != "<?php echo 1;" {
		t.Errorf("reading through the read-only pod = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(e.target("reader"), "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing through the read-only pod: %v, want EROFS", err)
	}
	mounts := e.mountsUnder(t)
	if len(mounts) != 3 {
		t.Fatalf("%d mounts, want staging + 2 pods: %+v", len(mounts), mounts)
	}
	for _, m := range mounts {
		if m.Source != testSource || m.FSType != "nfs4" || !m.SameTree(mounts[0]) {
			t.Errorf("mount %+v: want an nfs4 mount of %s showing the staging mount", m, testSource)
		}
	}
	resp := e.stats(t, "reader")
	if resp.GetVolumeCondition().GetAbnormal() || len(resp.GetUsage()) != 2 || resp.GetUsage()[0].GetTotal() <= 0 {
		t.Errorf("stats = %v, want normal with usage", resp)
	}
	e.unpublishAndUnstage(t, "writer", "reader")
}

func TestStandInStaleExportIsMountedAgain(t *testing.T) {
	e := newStandInEnv(t)
	e.stage(t)
	e.publish(t, "old-pod", false)
	if err := os.WriteFile(filepath.Join(e.target("old-pod"), "upload.jpg"), []byte("jpg"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := standin.MakeStale(e.si.Dir(), testServer, "/data/export"); err != nil {
		t.Fatal(err)
	}
	if c := e.stats(t, "old-pod").GetVolumeCondition(); !c.GetAbnormal() || !strings.HasPrefix(c.GetMessage(), "stale file handle") {
		t.Errorf("condition of the stale mount = %v, want abnormal stale file handle", c)
	}

	// A new pod: publish finds the staging mount stale and mounts it again.
	e.publish(t, "new-pod", false)
	if b, err := os.ReadFile(filepath.Join(e.target("new-pod"), "upload.jpg")); err != nil || string(b) != "jpg" {
		t.Errorf("new pod does not see the files: %q, %v", b, err)
	}
	if c := e.stats(t, "new-pod").GetVolumeCondition(); c.GetAbnormal() {
		t.Errorf("new pod's condition = %v, want normal", c)
	}
	// The old pod's mount is bound again when it is published again.
	e.publish(t, "old-pod", false)
	if c := e.stats(t, "old-pod").GetVolumeCondition(); c.GetAbnormal() {
		t.Errorf("old pod's condition after republish = %v, want normal", c)
	}
	if n := len(e.mountsUnder(t)); n != 3 {
		t.Errorf("%d mounts, want staging + 2 pods (the stale ones gone)", n)
	}
	e.unpublishAndUnstage(t, "old-pod", "new-pod")
}

func TestStandInUnreachableServerNeitherHangsNorLeaks(t *testing.T) {
	e := newStandInEnv(t)
	e.stage(t)
	e.publish(t, "p1", false)
	e.publish(t, "p2", false)
	if err := standin.SetUnreachable(e.si.Dir(), testServer, true); err != nil {
		t.Fatal(err)
	}

	for i := range 20 {
		c := e.stats(t, "p1").GetVolumeCondition()
		if !c.GetAbnormal() || !strings.HasPrefix(c.GetMessage(), "NFS server 10.96.0.10 not responding after ") {
			t.Fatalf("stats %d: condition %v, want not responding", i, c)
		}
	}
	if n := e.si.BlockedStatfs(); n != 1 {
		t.Errorf("%d statfs calls blocked after 20 checks of one path, want 1", n)
	}
	e.stats(t, "p2")
	if n := e.si.BlockedStatfs(); n != 2 {
		t.Errorf("%d statfs calls blocked after checks of two paths, want 2", n)
	}

	// Staging and publishing again (kubelet's retries and republishes) leave the
	// mounts alone: the staging mount stays, the pods keep theirs, and a new pod
	// waits for the server instead of getting a mount that hangs.
	before := len(e.mountsUnder(t))
	if _, err := e.svc.NodeStageVolume(context.Background(), e.stageReq()); err != nil {
		t.Errorf("NodeStageVolume with the server unreachable = %v, want success (the volume is staged)", err)
	}
	e.publish(t, "p1", false)
	_, err := e.svc.NodePublishVolume(context.Background(), e.publishReq("p3", false))
	if got := code(err); got != codes.Unavailable {
		t.Errorf("NodePublishVolume of a new pod with the server unreachable = %v (%v), want Unavailable", got, err)
	}
	if after := len(e.mountsUnder(t)); after != before {
		t.Errorf("%d mounts after staging and publishing with the server unreachable, %d before", after, before)
	}
	if procs := standInHelpers(t); len(procs) != 0 {
		t.Errorf("stand-in helpers still running: %q", procs)
	}

	// Unpublish and unstage complete while the server is still gone.
	start := time.Now()
	for _, p := range []string{"p1", "p2"} {
		if _, err := e.svc.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: testVolume, TargetPath: e.target(p)}); err != nil {
			t.Fatalf("NodeUnpublishVolume(%s) with the server unreachable: %v", p, err)
		}
	}
	if _, err := e.svc.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: testVolume, StagingTargetPath: e.staging}); err != nil {
		t.Fatalf("NodeUnstageVolume with the server unreachable: %v", err)
	}
	t.Logf("unpublished 2 pods and unstaged with the server unreachable in %s", time.Since(start).Round(time.Millisecond))
	if left := e.mountsUnder(t); len(left) != 0 {
		t.Errorf("mounts left: %+v", left)
	}

	if err := standin.SetUnreachable(e.si.Dir(), testServer, false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return e.si.BlockedStatfs() == 0 && e.svc.health.inFlight() == 0 })
}

// standInHelpers lists the live processes running the stand-in's hung helpers.
func standInHelpers(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a zombie
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, "pvnfs-stand-in-") && strings.Contains(cmd, testServer) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}
