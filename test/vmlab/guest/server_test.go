//go:build vmlab

package guest_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// nfsSuperMagic is statfs's f_type of an NFS mount.
const nfsSuperMagic = 0x6969

// TestServerExport: a kernel NFS client mounts the ClusterIP with the node
// plugin's options, over NFS 4.2 and 4.1, and writes, reads and renames; it sees
// neither lost+found nor the server's state, not even through the pseudo-root;
// the export root has the owner and mode the StorageClass asked for; with
// rootSquash, what client root creates belongs to nobody.
func TestServerExport(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := testContext(t, 4*time.Minute)
			v, n := serveVolume(t, ctx, "export-"+engine, map[string]string{
				"serverEngine": engine, "exportOwner": "33:33", "exportMode": "2775"}, guest.BackendSpec{SizeMiB: 512})
			for _, version := range []string{"4.2", "4.1"} {
				t.Run("nfs"+version, func(t *testing.T) {
					target := "/mnt/" + version
					mountVolume(t, ctx, n, v, target, version)
					defer func() { _ = n.Unmount(ctx, target) }()
					checkReadWrite(t, n.Path(target), filepath.Join(v.Backend.MountPath, "export"), version)
					var root unix.Stat_t
					if err := unix.Stat(n.Path(target), &root); err != nil {
						t.Fatal(err)
					}
					if root.Uid != 33 || root.Gid != 33 || root.Mode&0o7777 != 0o2775 {
						t.Errorf("export root: owner %d:%d mode %04o; want 33:33 2775", root.Uid, root.Gid, root.Mode&0o7777)
					}
				})
			}
			t.Run("pseudo-root", func(t *testing.T) {
				if err := n.Mount(ctx, guest.ClusterIP+":/", "/mnt/root", mountOptions("4.2")); err != nil {
					t.Fatalf("mounting the pseudo-root: %v", err)
				}
				defer func() { _, _ = n.Exec(ctx, "umount", "-R", "/mnt/root") }()
				if got := listDir(t, n.Path("/mnt/root")); !slices.Equal(got, []string{"data"}) {
					t.Errorf("the pseudo-root shows %v, want [data]", got)
				}
				if got := listDir(t, n.Path("/mnt/root/data")); !slices.Equal(got, []string{"export"}) {
					t.Errorf("/data in the pseudo-root shows %v, want [export]", got)
				}
				for _, p := range []string{"/mnt/root/data/.pvnfs", "/mnt/root/data/lost+found"} {
					if _, err := os.Stat(n.Path(p)); err == nil {
						t.Errorf("%s is reachable through the pseudo-root", p)
					}
				}
			})
			t.Run("root-squash", func(t *testing.T) {
				sq := newVolume(t, ctx, "squash-"+engine, map[string]string{"serverEngine": engine, "rootSquash": "true", "exportMode": "0777"})
				if err := sq.Attach(ctx, n); err != nil {
					t.Fatal(err)
				}
				if _, err := sq.Start(ctx, nil); err != nil {
					t.Fatal(err)
				}
				mountVolume(t, ctx, n, sq, "/mnt/squash", "4.2")
				defer func() { _ = n.Unmount(ctx, "/mnt/squash") }()
				if err := os.WriteFile(n.Path("/mnt/squash/by-root"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(sq.Backend.MountPath, "export", "by-root"), &st); err != nil {
					t.Fatal(err)
				}
				if st.Uid != 65534 || st.Gid != 65534 {
					t.Errorf("a file client root created belongs to %d:%d on the backend, want 65534:65534 (nobody)", st.Uid, st.Gid)
				}
			})
		})
	}
}

// checkReadWrite writes, renames and reads back through the mount at dir, checks
// the result on the backend's export directory, and that the mount hides what the
// backend holds beside the export.
func checkReadWrite(t *testing.T, dir, backendExport, tag string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != nfsSuperMagic {
		t.Fatalf("statfs %s: type %#x, %v; want NFS", dir, st.Type, err)
	}
	want := []byte("written through NFS " + tag + "\n")
	name := "file-" + tag
	if err := os.WriteFile(filepath.Join(dir, name), want, 0o644); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d-"+tag), 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, "d-"+tag, name)); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "d-"+tag, name)); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back through NFS: %q, %v; want %q", got, err, want)
	}
	if got, err := os.ReadFile(filepath.Join(backendExport, "d-"+tag, name)); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("on the backend after the rename: %q, %v; want %q", got, err, want)
	}
	names := listDir(t, dir)
	for _, hidden := range []string{"lost+found", ".pvnfs"} {
		if slices.Contains(names, hidden) {
			t.Errorf("the export shows %s: %v", hidden, names)
		}
	}
}

// startVolume creates a volume with params, a node routed to it, starts its server
// and mounts the export in the node at /mnt/vol over NFS 4.2.
func startVolume(t *testing.T, ctx context.Context, name string, params map[string]string) (*guest.Volume, *guest.Node) {
	t.Helper()
	return startVolumeOn(t, ctx, name, params, guest.BackendSpec{SizeMiB: 512})
}

// startVolumeOn is startVolume on a backend of its own description.
func startVolumeOn(t *testing.T, ctx context.Context, name string, params map[string]string, backend guest.BackendSpec) (*guest.Volume, *guest.Node) {
	t.Helper()
	v, n := serveVolume(t, ctx, name, params, backend)
	mountVolume(t, ctx, n, v, "/mnt/vol", "4.2")
	return v, n
}

// serveVolume creates a volume on backend, a node routed to it, and starts its
// server; nothing is mounted yet.
func serveVolume(t *testing.T, ctx context.Context, name string, params map[string]string, backend guest.BackendSpec) (*guest.Volume, *guest.Node) {
	t.Helper()
	v := newVolumeOn(t, ctx, name, params, backend)
	n := newNode(t, ctx, "node-"+name)
	if err := v.Attach(ctx, n); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := v.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("server ready %s after its start", time.Since(start).Round(time.Millisecond))
	return v, n
}

// TestServerRestart: a graceful restart (SIGTERM, a new container in the same
// pod, on the same backend) while writers open, append, fsync and close, one
// writer holds its file open and a reader holds another: no application sees an
// error, every acknowledged append is on the backend, and (kernel) the clients'
// reclaims end the grace period early.
func TestServerRestart(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := testContext(t, 5*time.Minute)
			v, n := startVolume(t, ctx, "restart-"+engine, map[string]string{"serverEngine": engine})
			w := startWorkload(t, ctx, n, "/mnt/vol", 4)
			reclaimsBefore := len(dmesgGrep(t, "all clients done reclaiming"))

			stop := time.Now()
			// An unclean stop is a failure, but the test goes on: the pod is
			// gone either way, and the applications block on their hard mount
			// until a server answers again.
			if err := v.Pod.Terminate(30 * time.Second); err != nil {
				t.Errorf("the server did not stop cleanly on SIGTERM: %v\n%s", err, v.Pod.LogTail(30))
			}
			stopped := time.Since(stop)
			if _, err := v.Start(ctx, v.Sandbox); err != nil {
				t.Fatal(err)
			}
			ready := time.Since(stop)
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			held := w.resumed(t, rctx, stop, stop.Add(ready))
			cancel()
			t.Logf("FIGURE %s graceful restart: stopped in %s, ready again %s after SIGTERM, longest pause of an application %s",
				engine, stopped.Round(time.Millisecond), ready.Round(time.Millisecond), held.Round(time.Millisecond))
			time.Sleep(time.Second) // a second of normal work after the restart
			w.check(t, filepath.Join(v.Backend.MountPath, "export"))
			if engine == "kernel" {
				if got := len(dmesgGrep(t, "all clients done reclaiming")); got <= reclaimsBefore {
					t.Errorf("nfsd did not end its grace period early after the clients reclaimed: %q", dmesgGrep(t, "grace"))
				}
			}
		})
	}
}

// TestServerCrash: the server pod is killed (SIGKILL to its PID 1, which takes
// every process of the pod with it) while applications write and read. First the
// pod's sandbox (its network namespace) stays, as when only the container died:
// once the kubelet unmounts the backend, nothing holds the device any more, so
// nfsd in the surviving network namespace pins nothing; a new container starts
// in the same sandbox on the backend mounted again. Then the pod is killed again
// and deleted with its sandbox, and a new pod with a new address starts: the
// Service now leads there. The applications never see an error and every
// acknowledged append is on the backend.
func TestServerCrash(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := testContext(t, 6*time.Minute)
			v, n := startVolume(t, ctx, "crash-"+engine, map[string]string{"serverEngine": engine})
			w := startWorkload(t, ctx, n, "/mnt/vol", 2)

			// 1. The container dies; the kubelet starts a new one in the same sandbox.
			kill := time.Now()
			crash(t, ctx, v, false)
			if _, err := v.Start(ctx, v.Sandbox); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			held := w.resumed(t, rctx, kill, time.Now())
			cancel()
			t.Logf("FIGURE %s crash, new container in the same pod: longest pause of an application %s", engine, held.Round(time.Millisecond))

			// 2. The pod dies and is deleted; a new pod gets a new address.
			kill = time.Now()
			old := v.Sandbox
			crash(t, ctx, v, true)
			if _, err := v.Start(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if v.Sandbox.IP == old.IP {
				t.Fatalf("the new pod has the old address %s", old.IP)
			}
			rctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
			held = w.resumed(t, rctx, kill, time.Now())
			cancel()
			t.Logf("FIGURE %s crash, new pod at a new address: longest pause of an application %s", engine, held.Round(time.Millisecond))
			time.Sleep(time.Second)
			w.check(t, filepath.Join(v.Backend.MountPath, "export"))
		})
	}
}

// crash kills the volume's pod, removes its sandbox when deleted is set, unmounts
// the backend as the kubelet does, checks that nothing holds the device any more
// (so it could be attached to another node), and mounts it again.
func crash(t *testing.T, ctx context.Context, v *guest.Volume, deleted bool) {
	t.Helper()
	if err := v.Pod.Kill(); err != nil {
		t.Fatal(err)
	}
	if deleted {
		if err := v.Sandbox.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Backend.Unmount(ctx); err != nil {
		t.Fatalf("the kubelet cannot unmount the backend after the pod died: %v", err)
	}
	released := waitReleased(t, v.Backend, 30*time.Second)
	t.Logf("backend device released %s after the kubelet's unmount (sandbox removed: %v)", released.Round(time.Millisecond), deleted)
	if err := v.Backend.Mount(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitReleased waits until nothing claims the backend device and returns how
// long that took; the test fails when something still does after timeout.
func waitReleased(t *testing.T, b *guest.Backend, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		claimed, err := b.Claimed()
		if err != nil {
			t.Fatal(err)
		}
		if !claimed {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s is still claimed %s after its last mount went: a filesystem on it is still alive in the kernel", b.Device, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestServerClientTracking: nfsd finds nfsdcld, so that it keeps client records
// on the backend, on the first start in a new pod (a new network namespace,
// where the race between nfsd and nfsdcld is), 20 times out of 20, in the worst
// case: backend storage whose every I/O takes 50 ms (network block storage
// under load) and a new volume, whose nfsdcld database is created at the start.
func TestServerClientTracking(t *testing.T) {
	const starts = 20
	ctx := testContext(t, 6*time.Minute)
	v := newVolumeOn(t, ctx, "tracking", map[string]string{"serverEngine": "kernel"}, guest.BackendSpec{SizeMiB: 256, Delay: &guest.Delay{ReadWrite: 50 * time.Millisecond}})
	failures := 0
	var took []time.Duration
	for i := 1; i <= starts; i++ {
		start := time.Now()
		_, err := v.Start(ctx, nil)
		if err != nil {
			failures++
			t.Errorf("start %d: %v", i, err)
		} else {
			took = append(took, time.Since(start))
		}
		if err := v.Pod.Terminate(30 * time.Second); err != nil {
			t.Logf("start %d: stopping: %v", i, err)
		}
		if err := v.Sandbox.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		v.Sandbox = nil
		if err := os.RemoveAll(filepath.Join(v.Backend.MountPath, ".pvnfs", "nfsdcld")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("FIGURE kernel first starts in a new pod: %d of %d served with client tracking; start to ready median %s",
		starts-failures, starts, median(took).Round(time.Millisecond))
	if lines := dmesgGrep(t, "umh client tracking", "Unable to initialize client recovery tracking"); len(lines) > 0 {
		t.Errorf("nfsd fell back from nfsdcld:\n%s", strings.Join(lines, "\n"))
	}
}

// TestServerLivenessUnderLoad: four applications write 1 MiB blocks and fsync each
// as fast as they can for 60 s, to slow backend storage (every write 5 ms, every
// cache flush 2.5 s, so one fsync waits seconds for the journal): a kubelet
// probing /healthz as the Deployment's liveness probe does (every 10 s, 5 s
// timeout, 3 failures) sees no failure, so it would never restart a server that
// is merely busy, and /readyz (every 2 s, 2 failures) never takes the only
// endpoint away.
func TestServerLivenessUnderLoad(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	v, n := startVolumeOn(t, ctx, "load", map[string]string{"serverEngine": "kernel"}, guest.BackendSpec{SizeMiB: 512, Delay: &guest.Delay{}})
	if err := v.Backend.SetDelay(ctx, guest.Delay{ReadWrite: 5 * time.Millisecond, Flush: 2500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var apps []*guest.App
	for i := 1; i <= 4; i++ {
		a, err := guest.StartApp(ctx, n, guest.AppSpec{Name: fmt.Sprintf("load%d", i), Mode: guest.ModeLoad, File: fmt.Sprintf("/mnt/vol/load%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		apps = append(apps, a)
	}
	live := probeLoop(ctx, v.Pod, "/healthz", 10*time.Second, 60*time.Second)
	ready := probeLoop(ctx, v.Pod, "/readyz", 2*time.Second, 60*time.Second)
	livenessResults, readinessResults := <-live, <-ready
	if err := v.Backend.SetDelay(ctx, guest.Delay{}); err != nil {
		t.Fatal(err)
	}
	var written int64
	for _, a := range apps {
		if err := a.Stop(2 * time.Minute); err != nil {
			t.Error(err)
		}
		for _, e := range a.Events() {
			if e.OK() {
				written += e.Size
			}
		}
		for _, e := range a.Errors() {
			t.Errorf("%s: %s", a.Spec.Name, e.Err)
		}
	}
	t.Logf("FIGURE kernel under load on slow storage: %d MiB written and fsynced in 60 s; liveness %s; readiness %s",
		written>>20, livenessResults, readinessResults)
	if livenessResults.failures > 0 {
		t.Errorf("the liveness probe failed %d times (%d in a row; 3 make the kubelet restart the server)", livenessResults.failures, livenessResults.maxConsecutiveFailures)
	}
	if readinessResults.maxConsecutiveFailures >= 2 {
		t.Errorf("the readiness probe failed %d times in a row: the Service would have lost its only endpoint", readinessResults.maxConsecutiveFailures)
	}
}

type probeResults struct {
	probes, failures, maxConsecutiveFailures int
	firstFailure                             string
}

func (r probeResults) String() string {
	s := fmt.Sprintf("%d probes, %d failed, at most %d in a row", r.probes, r.failures, r.maxConsecutiveFailures)
	if r.firstFailure != "" {
		s += " (first: " + r.firstFailure + ")"
	}
	return s
}

// probeLoop probes path every period for d, as the kubelet does, and sends the
// tally when done.
func probeLoop(ctx context.Context, p *guest.Pod, path string, period, d time.Duration) <-chan probeResults {
	ch := make(chan probeResults, 1)
	go func() {
		var r probeResults
		consecutive := 0
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			r.probes++
			code, body, err := p.Get(ctx, path)
			if err != nil || code != 200 {
				r.failures++
				consecutive++
				if r.firstFailure == "" {
					r.firstFailure = fmt.Sprintf("%d %v %s", code, err, strings.ReplaceAll(strings.TrimSpace(body), "\n", "; "))
				}
			} else {
				consecutive = 0
			}
			r.maxConsecutiveFailures = max(r.maxConsecutiveFailures, consecutive)
			time.Sleep(period)
		}
		ch <- r
	}()
	return ch
}

// TestServerBackendGrow: the backend grows online (the device, then resize2fs on
// the mounted filesystem, as the backend's CSI driver does): the client's statfs
// through NFS shows the new size without a remount or a server restart.
func TestServerBackendGrow(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ctx := testContext(t, 3*time.Minute)
			v, n := startVolume(t, ctx, "grow-"+engine, map[string]string{"serverEngine": engine})
			before, err := n.Statfs("/mnt/vol", 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Backend.Grow(ctx, 1024); err != nil {
				t.Fatal(err)
			}
			backend, err := v.Backend.Statfs()
			if err != nil {
				t.Fatal(err)
			}
			// The client reports space in its own block size, so the sizes agree
			// to within a block of it, not to the byte.
			want := backend.Blocks * uint64(backend.Bsize)
			near := func(st unix.Statfs_t) bool {
				got := st.Blocks * uint64(st.Bsize)
				return got+uint64(st.Bsize) >= want && got <= want+uint64(st.Bsize)
			}
			after, err := n.Statfs("/mnt/vol", 30*time.Second)
			for deadline := time.Now().Add(30 * time.Second); err == nil && !near(after) && time.Now().Before(deadline); {
				time.Sleep(500 * time.Millisecond)
				after, err = n.Statfs("/mnt/vol", 30*time.Second)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("size through NFS: %d MiB before, %d MiB after; the backend has %d MiB",
				before.Blocks*uint64(before.Bsize)>>20, after.Blocks*uint64(after.Bsize)>>20, want>>20)
			if !near(after) {
				t.Errorf("NFS shows %d bytes in blocks of %d, the grown backend %d", after.Blocks*uint64(after.Bsize), after.Bsize, want)
			}
		})
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
