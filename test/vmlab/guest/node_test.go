//go:build vmlab

package guest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// cluster is a volume served by its server pod and nodes running the node
// plugin, each with a kubelet driving it for the volume.
type cluster struct {
	v        *guest.Volume
	kubelets []*guest.Kubelet
}

// newCluster starts a volume with params, and nodes with the node plugin
// (pluginFlags added to its defaults); mountOptions are the StorageClass's.
func newCluster(t *testing.T, ctx context.Context, name string, nodes int, params map[string]string, mountOptions []string, pluginFlags ...string) *cluster {
	t.Helper()
	c := &cluster{v: newVolume(t, ctx, name, params)}
	if _, err := c.v.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < nodes; i++ {
		n := newNode(t, ctx, fmt.Sprintf("%s-%c", name, 'a'+i))
		if err := c.v.Attach(ctx, n); err != nil {
			t.Fatal(err)
		}
		p, err := guest.StartNodePlugin(ctx, n, pluginFlags...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.Stop()
			if t.Failed() {
				t.Logf("node plugin log: %s", p.Log)
			}
		})
		c.kubelets = append(c.kubelets, &guest.Kubelet{Plugin: p, VolumeID: c.v.ID, Context: c.v.Context().Map(), MountFlags: mountOptions})
	}
	return c
}

// stageAndPublish stages the volume on the node and publishes it for pods; it
// returns the pods' target paths.
func stageAndPublish(t *testing.T, ctx context.Context, k *guest.Kubelet, pods ...string) []string {
	t.Helper()
	start := time.Now()
	if err := k.Stage(ctx); err != nil {
		t.Fatalf("NodeStageVolume on %s: %v", k.Plugin.Node.Name, err)
	}
	t.Logf("staged on %s in %s", k.Plugin.Node.Name, time.Since(start).Round(time.Millisecond))
	var targets []string
	for _, pod := range pods {
		target, err := k.Publish(ctx, pod)
		if err != nil {
			t.Fatalf("NodePublishVolume of %s on %s: %v", pod, k.Plugin.Node.Name, err)
		}
		targets = append(targets, target)
	}
	return targets
}

// volumeMounts returns the node's mounts of the volume's export: the staging mount
// and the pods' bind mounts of it show the same source.
func volumeMounts(t *testing.T, n *guest.Node, source string) []mounter.MountPoint {
	t.Helper()
	mounts, err := n.NFSMounts()
	if err != nil {
		t.Fatal(err)
	}
	var out []mounter.MountPoint
	for _, m := range mounts {
		if m.Source == source {
			out = append(out, m)
		}
	}
	return out
}

// mountWatch checks every second that the staging path and every target of the
// kubelet are mount points, and records every moment one was not.
type mountWatch struct {
	mu      sync.Mutex
	missing []string
}

func watchMounts(ctx context.Context, k *guest.Kubelet, targets func() []string) *mountWatch {
	w := &mountWatch{}
	go func() {
		for ctx.Err() == nil {
			table, err := k.Plugin.Node.Mounts()
			if err == nil {
				for _, p := range append([]string{k.StagingPath()}, targets()...) {
					if _, ok := mounter.FindMount(table, p); !ok {
						w.mu.Lock()
						w.missing = append(w.missing, time.Now().Format("15:04:05")+" "+p)
						w.mu.Unlock()
					}
				}
			}
			time.Sleep(time.Second)
		}
	}()
	return w
}

func (w *mountWatch) report() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.missing...)
}

// TestNodeOutage: the server is unreachable (every packet to it dropped) for
// 150 s, longer than every timeout of the node plugin and the kubelet, while
// kubelet republishes the running pods every 10 s; one pod is published during
// the outage (kubelet retrying every 10 s until it succeeds) and one after. When
// the server is reachable again, the running pods resume without an error and
// with every acknowledged write, both new pods work, and at no moment did the
// node leave the staging path or a pod's target without its mount.
func TestNodeOutage(t *testing.T) {
	t.Parallel()
	const outage = 150 * time.Second
	ctx := testContext(t, 8*time.Minute)
	c := newCluster(t, ctx, "outage", 1, map[string]string{"serverEngine": "kernel"}, nil)
	k := c.kubelets[0]
	targets := stageAndPublish(t, ctx, k, "running")
	load := startWorkload(t, ctx, k.Plugin.Node, targets[0], 2)

	var mu sync.Mutex
	published := []string{targets[0]}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch := watchMounts(wctx, k, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), published...)
	})
	go k.Republish(wctx, 10*time.Second)
	defer func() {
		stopWatch()
		n, errs := k.Republished()
		t.Logf("%d republishes during the test, %d failed: %v", n, len(errs), errs)
		if missing := watch.report(); len(missing) > 0 {
			t.Errorf("the node left paths without their mount (%d observations): %s", len(missing), strings.Join(head10(missing), "; "))
		}
	}()

	start := time.Now()
	if err := c.v.Sandbox.Block(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	// A pod scheduled during the outage: kubelet retries its publish.
	duringDone := make(chan string, 1)
	go func() {
		attempts := 0
		for ctx.Err() == nil {
			attempts++
			target, err := k.Publish(ctx, "during")
			if err == nil {
				mu.Lock()
				published = append(published, target)
				mu.Unlock()
				duringDone <- fmt.Sprintf("published after %d attempts, %s after the outage began", attempts, time.Since(start).Round(time.Second))
				return
			}
			t.Logf("publish during the outage, attempt %d (%s): %v", attempts, time.Since(start).Round(time.Second), err)
			time.Sleep(10 * time.Second)
		}
		duringDone <- "never published"
	}()
	time.Sleep(outage - time.Since(start))
	if err := c.v.Sandbox.Unblock(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("server reachable again after %s", back.Sub(start).Round(time.Second))

	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	resumed := load.resumedAfter(t, rctx, back)
	cancel()
	t.Logf("FIGURE node, %s outage: running pods resumed %s after the server was reachable again", outage, resumed.Round(time.Millisecond))
	select {
	case r := <-duringDone:
		t.Logf("the pod scheduled during the outage: %s", r)
	case <-time.After(2 * time.Minute):
		t.Error("the pod scheduled during the outage was not published within 2 minutes of the server's return")
	}
	after, err := k.Publish(ctx, "after")
	if err != nil {
		t.Fatalf("publishing a pod after the outage: %v", err)
	}
	mu.Lock()
	published = append(published, after)
	mu.Unlock()
	for _, p := range []string{"during", "after"} {
		dir := k.Plugin.Node.Path(k.TargetPath(p))
		if err := os.WriteFile(filepath.Join(dir, "from-"+p), []byte(p), 0o644); err != nil {
			t.Errorf("pod %s cannot write: %v", p, err)
		} else if got, err := os.ReadFile(filepath.Join(c.v.Backend.MountPath, "export", "from-"+p)); err != nil || string(got) != p {
			t.Errorf("pod %s's write is not on the backend: %q, %v", p, got, err)
		}
	}
	load.check(t, filepath.Join(c.v.Backend.MountPath, "export"))
}

func head10(s []string) []string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// TestNodeFanout: two nodes with three pods each. Each node mounts the export
// once (one NFS superblock, one client of the server), and binds it into its
// pods; what one pod writes every other pod reads, on both nodes.
func TestNodeFanout(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 4*time.Minute)
	c := newCluster(t, ctx, "fanout", 2, map[string]string{"serverEngine": "kernel"}, nil)
	type pod struct {
		k      *guest.Kubelet
		name   string
		target string
	}
	var pods []pod
	for _, k := range c.kubelets {
		names := []string{k.Plugin.Node.Name + "-p1", k.Plugin.Node.Name + "-p2", k.Plugin.Node.Name + "-p3"}
		for i, target := range stageAndPublish(t, ctx, k, names...) {
			pods = append(pods, pod{k, names[i], target})
		}
		mounts := volumeMounts(t, k.Plugin.Node, c.v.Context().Source())
		devices := map[string]bool{}
		for _, m := range mounts {
			devices[m.Device] = true
		}
		if len(mounts) != 4 || len(devices) != 1 {
			t.Errorf("%s: %d mounts of the export on %d superblocks, want the staging mount and 3 binds of one superblock: %+v", k.Plugin.Node.Name, len(mounts), len(devices), mounts)
		}
	}
	sums := map[string][32]byte{}
	for _, p := range pods {
		data := make([]byte, 256<<10)
		_, _ = rand.Read(data)
		if err := os.WriteFile(filepath.Join(p.k.Plugin.Node.Path(p.target), "from-"+p.name), data, 0o644); err != nil {
			t.Fatalf("%s writes: %v", p.name, err)
		}
		sums[p.name] = sha256.Sum256(data)
	}
	for _, reader := range pods {
		for _, writer := range pods {
			got, err := os.ReadFile(filepath.Join(reader.k.Plugin.Node.Path(reader.target), "from-"+writer.name))
			if err != nil || sha256.Sum256(got) != sums[writer.name] {
				t.Errorf("%s reads what %s wrote: %d bytes, %v; checksum differs: %v", reader.name, writer.name, len(got), err, err == nil)
			}
		}
	}
	t.Logf("FIGURE fan-out: 2 nodes x 3 pods, 1 NFS mount per node, %d cross-reads with matching checksums", len(pods)*len(pods))
	for _, k := range c.kubelets {
		for _, p := range pods {
			if p.k == k {
				if err := k.Unpublish(ctx, p.name); err != nil {
					t.Errorf("NodeUnpublishVolume %s: %v", p.name, err)
				}
			}
		}
		if err := k.Unstage(ctx); err != nil {
			t.Errorf("NodeUnstageVolume on %s: %v", k.Plugin.Node.Name, err)
		}
		if left := volumeMounts(t, k.Plugin.Node, c.v.Context().Source()); len(left) > 0 {
			t.Errorf("%s keeps mounts of the volume after unpublish and unstage: %+v", k.Plugin.Node.Name, left)
		}
	}
}

// TestNodeServerRestartAndMove: pods on two nodes write and read while the
// server restarts gracefully, then crashes and comes back as a new pod at a new
// address (every node's Service rule changes, its connection-tracking entries of
// the old address go): the pods see no error and resume within the grace period.
func TestNodeServerRestartAndMove(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 5*time.Minute)
	c := newCluster(t, ctx, "move", 2, map[string]string{"serverEngine": "kernel"}, nil)
	var loads []*workload
	for _, k := range c.kubelets {
		targets := stageAndPublish(t, ctx, k, k.Plugin.Node.Name+"-p1")
		loads = append(loads, startWorkload(t, ctx, k.Plugin.Node, targets[0], 1))
	}
	grace := time.Duration(c.v.Params.Server.GraceSeconds) * time.Second
	resumed := func(event string, since time.Time) {
		t.Helper()
		ready := time.Now()
		var longest time.Duration
		for _, w := range loads {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			longest = max(longest, w.resumed(t, rctx, since, ready))
			cancel()
		}
		t.Logf("FIGURE node, %s: pods paused at most %s (grace period %s)", event, longest.Round(time.Millisecond), grace)
		if longest > grace {
			t.Errorf("pods were held up %s by the %s, longer than the grace period %s", longest, event, grace)
		}
	}

	stop := time.Now()
	if err := c.v.Pod.Terminate(30 * time.Second); err != nil {
		t.Errorf("graceful stop: %v", err) // go on: the pods need a server again to stop
	}
	if _, err := c.v.Start(ctx, c.v.Sandbox); err != nil {
		t.Fatal(err)
	}
	resumed("graceful restart", stop)

	kill := time.Now()
	old := c.v.Sandbox
	crash(t, ctx, c.v, true)
	if _, err := c.v.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if c.v.Sandbox.IP == old.IP {
		t.Fatalf("the new pod has the old address %s", old.IP)
	}
	resumed("crash and move to a new address", kill)
	for _, w := range loads {
		w.check(t, filepath.Join(c.v.Backend.MountPath, "export"))
	}
}

// TestNodeStaleExport: the server comes back over a recreated filesystem (its
// data lost, the backend formatted again). With Ganesha, whose file handle of the
// export root names the root directory's inode, the node's mount is then stale
// (ESTALE): volume stats report it; the next publish mounts the export again (a
// new superblock: the old one stays with the pods that use it), the new pod
// reads the new filesystem, and republishing the old pod binds its target to the
// healed mount, so a restart of its container sees the volume again. The kernel
// server's handle of the export root is the export's fsid alone, which the
// volume keeps, so its mount never goes stale: the new filesystem shows through
// at once, and the stats stay normal.
func TestNodeStaleExport(t *testing.T) {
	t.Parallel()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := testContext(t, 4*time.Minute)
			c := newCluster(t, ctx, "stale-"+engine, 1, map[string]string{"serverEngine": engine}, nil)
			k := c.kubelets[0]
			old := stageAndPublish(t, ctx, k, "old")[0]
			if err := os.WriteFile(filepath.Join(k.Plugin.Node.Path(old), "before"), []byte("before"), 0o644); err != nil {
				t.Fatal(err)
			}
			crash(t, ctx, c.v, true)
			if err := c.v.Backend.Unmount(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := guest.Run(ctx, "mkfs.ext4", "-q", "-F", c.v.Backend.Device); err != nil {
				t.Fatal(err)
			}
			if err := c.v.Backend.Mount(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.v.Start(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.v.Backend.MountPath, "export", "after"), []byte("after"), 0o644); err != nil {
				t.Fatal(err)
			}
			condition := func() string {
				t.Helper()
				resp, err := k.Stats(ctx, old)
				if err != nil {
					t.Fatalf("NodeGetVolumeStats: %v", err)
				}
				cond := resp.GetVolumeCondition()
				if cond.GetAbnormal() {
					return cond.GetMessage()
				}
				return ""
			}
			if engine == "kernel" {
				if got, err := os.ReadFile(filepath.Join(k.Plugin.Node.Path(old), "after")); err != nil || string(got) != "after" {
					t.Errorf("the old pod reads %q, %v; want the new filesystem's file through the same mount", got, err)
				}
				if msg := condition(); msg != "" {
					t.Errorf("volume stats report %q for a mount that works", msg)
				}
				return
			}
			var stale string
			for deadline := time.Now().Add(time.Minute); stale == "" && time.Now().Before(deadline); time.Sleep(time.Second) {
				stale = condition()
			}
			t.Logf("volume stats of the old pod: %q", stale)
			if !strings.Contains(stale, "stale") {
				t.Fatalf("volume stats did not report the stale mount: %q", stale)
			}
			fresh, err := k.Publish(ctx, "new")
			if err != nil {
				t.Fatalf("publishing a new pod over the stale staging mount: %v", err)
			}
			if got, err := os.ReadFile(filepath.Join(k.Plugin.Node.Path(fresh), "after")); err != nil || string(got) != "after" {
				t.Fatalf("the new pod reads %q, %v; want the new filesystem's file", got, err)
			}
			if _, err := k.Publish(ctx, "old"); err != nil {
				t.Fatalf("republishing the old pod: %v", err)
			}
			if got, err := os.ReadFile(filepath.Join(k.Plugin.Node.Path(old), "after")); err != nil || string(got) != "after" {
				t.Errorf("after its republish the old pod's target shows %q, %v; want the healed mount", got, err)
			}
			if msg := condition(); msg != "" {
				t.Errorf("volume stats of the old pod after its republish: %q", msg)
			}
		})
	}
}

// TestNodeServerGone: the server is gone for good (its pod killed, its sandbox
// removed: the Service leads nowhere) while two pods have the volume mounted,
// one idle and one writing. Once the kubelet has killed the pods' containers,
// NodeUnpublishVolume and NodeUnstageVolume finish within kubelet's deadline and
// leave no mount in the node's table, no helper process and no plugin thread
// stuck in the kernel.
//
// The writing pod's process is the kernel's, not the plugin's, to free: asleep
// uninterruptibly on its hard mount (waiting for its dirty pages to reach the
// server), it survives SIGKILL, and its pod would stay Terminating. What frees it
// is a server at the volume's address again (the reconciler recreates a deleted
// server; docs/operations.md): the test brings one back and the process ends.
func TestNodeServerGone(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 5*time.Minute)
	c := newCluster(t, ctx, "gone", 1, map[string]string{"serverEngine": "kernel"}, nil)
	k := c.kubelets[0]
	n := k.Plugin.Node
	targets := stageAndPublish(t, ctx, k, "idle", "busy")
	writer, err := guest.StartApp(ctx, n, guest.AppSpec{Name: "busy", Mode: guest.ModeLoad, File: filepath.Join(targets[1], "busy")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.WaitOK(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := c.v.Pod.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.v.Sandbox.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	c.v.Sandbox = nil
	time.Sleep(5 * time.Second) // the writer blocks on the server
	stuck := writer.Kill(10*time.Second) != nil
	if stuck {
		stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", writer.PID()))
		t.Logf("the writing pod's process survived SIGKILL; its kernel stack:\n%s", stack)
	}

	for _, pod := range []string{"idle", "busy"} {
		start := time.Now()
		if err := k.Unpublish(ctx, pod); err != nil {
			t.Errorf("NodeUnpublishVolume %s: %v", pod, err)
		}
		t.Logf("FIGURE node, server gone: NodeUnpublishVolume %s took %s", pod, time.Since(start).Round(time.Millisecond))
	}
	start := time.Now()
	if err := k.Unstage(ctx); err != nil {
		t.Errorf("NodeUnstageVolume: %v", err)
	}
	t.Logf("FIGURE node, server gone: NodeUnstageVolume took %s", time.Since(start).Round(time.Millisecond))
	if left := volumeMounts(t, n, c.v.Context().Source()); len(left) > 0 {
		t.Errorf("mounts left: %+v", left)
	}
	// Whatever the calls left behind has a few seconds to go away.
	var helpers string
	var blocked []string
	for i := 0; i < 10; i++ {
		out, _ := guest.Run(ctx, "ps", "-eo", "pid,stat,comm")
		helpers = ""
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) == 3 && (strings.HasPrefix(f[2], "mount") || strings.HasPrefix(f[2], "umount")) {
				helpers += l + "; "
			}
		}
		if blocked, err = k.Plugin.BlockedThreads(); err != nil {
			t.Fatal(err)
		}
		if helpers == "" && len(blocked) == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	if helpers != "" {
		t.Errorf("mount helpers left running: %s", helpers)
	}
	if len(blocked) > 0 {
		t.Errorf("node plugin threads stuck in the kernel: %v", blocked)
	}

	if stuck {
		if _, err := c.v.Start(ctx, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-writer.Exited():
			t.Logf("the writing pod's process ended once a server answered at the volume's address again")
		case <-time.After(90 * time.Second):
			t.Error("the writing pod's process did not end after the server came back")
		}
	}
}

// TestNodeMountOptions: a StorageClass's mountOptions add to the options failover
// depends on instead of replacing them: nconnect=4 gives four connections and
// keeps hard and noresvport, on the real client.
func TestNodeMountOptions(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	c := newCluster(t, ctx, "options", 1, map[string]string{"serverEngine": "kernel"}, []string{"nconnect=4"})
	k := c.kubelets[0]
	stageAndPublish(t, ctx, k)
	table, err := k.Plugin.Node.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mounter.FindMount(table, k.StagingPath())
	if !ok {
		t.Fatal("not staged")
	}
	opts, err := superOptions(k.Plugin.Node, m.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the staging mount's options: %s", opts)
	for _, want := range []string{"nconnect=4", "hard", "noresvport", "timeo=600"} {
		if !strings.Contains(","+opts+",", ","+want+",") {
			t.Errorf("the staging mount lacks %s: %s", want, opts)
		}
	}
}

// superOptions returns the NFS options of the mount at path as /proc/mounts shows
// them (mountinfo's super options).
func superOptions(n *guest.Node, path string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(n.PID()), "mounts"))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[1] == path {
			return f[3], nil
		}
	}
	return "", fmt.Errorf("%s is not in the node's /proc/mounts", path)
}

// TestNodeVolumeStats: NodeGetVolumeStats on a real mount reports the backend's
// bytes and inodes as df on the server shows them; with the server unreachable it
// reports an abnormal condition within the stat timeout instead of hanging.
func TestNodeVolumeStats(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	c := newCluster(t, ctx, "stats", 1, map[string]string{"serverEngine": "kernel"}, nil, "--stat-timeout=5s")
	k := c.kubelets[0]
	target := stageAndPublish(t, ctx, k, "p1")[0]
	if err := os.WriteFile(filepath.Join(k.Plugin.Node.Path(target), "ten-mib"), bytes.Repeat([]byte{1}, 10<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := k.Stats(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := c.v.Backend.Statfs()
	if err != nil {
		t.Fatal(err)
	}
	// The client counts in its own block size (the transfer size), rounding up:
	// the figures agree to within one of its blocks.
	client, err := k.Plugin.Node.Statfs(target, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	bsize, tolerance := int64(backend.Bsize), int64(client.Bsize)
	for _, u := range resp.GetUsage() {
		switch u.GetUnit().String() {
		case "BYTES":
			near(t, "bytes total", u.GetTotal(), int64(backend.Blocks)*bsize, tolerance)
			near(t, "bytes available", u.GetAvailable(), int64(backend.Bavail)*bsize, tolerance)
			near(t, "bytes used", u.GetUsed(), int64(backend.Blocks-backend.Bfree)*bsize, tolerance)
		case "INODES":
			near(t, "inodes total", u.GetTotal(), int64(backend.Files), 0)
			near(t, "inodes available", u.GetAvailable(), int64(backend.Ffree), 1)
		}
		t.Logf("%s: total %d, used %d, available %d", u.GetUnit(), u.GetTotal(), u.GetUsed(), u.GetAvailable())
	}
	if err := c.v.Sandbox.Block(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.v.Sandbox.Unblock(ctx) }()
	time.Sleep(2 * time.Second) // cached attributes expire
	start := time.Now()
	resp, err = k.Stats(ctx, target)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE node: volume stats with the server unreachable answered in %s: %v", took.Round(time.Millisecond), resp.GetVolumeCondition())
	if !resp.GetVolumeCondition().GetAbnormal() {
		t.Errorf("volume condition with the server unreachable: %v, want abnormal", resp.GetVolumeCondition())
	}
	if took > 10*time.Second {
		t.Errorf("NodeGetVolumeStats took %s with the server unreachable, want about the 5 s stat timeout", took)
	}
}

func near(t *testing.T, what string, got, want, tolerance int64) {
	t.Helper()
	if d := got - want; d < -tolerance || d > tolerance {
		t.Errorf("%s: %d, df on the server's backend says %d (tolerance %d)", what, got, want, tolerance)
	}
}
