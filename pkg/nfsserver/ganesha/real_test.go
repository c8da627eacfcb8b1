package ganesha_test

// The tests in this file run pvnfs-server --engine=ganesha for real: the binary
// built from cmd/pvnfs-server, NFS-Ganesha from Debian, and the userspace NFS client
// of libnfs-utils speaking NFSv4.0 over loopback. They need root and the Debian
// packages of test/tools/install.sh; without them they skip, unless
// PVNFS_REQUIRE_ALL=1 (make test) makes a missing tool a failure.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// requireReal skips or fails a test that needs root and the Debian packages.
func requireReal(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("real NFS test: skipped with -short (it runs NFS-Ganesha as root)")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (Ganesha's VFS backend opens files by handle)")
	}
	for _, bin := range []string{"ganesha.nfsd", "dbus-daemon", "nfs-ls", "nfs-cp", "nfs-cat", "setpriv", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if fsal, _ := filepath.Glob("/usr/lib/*/ganesha/libfsalvfs.so"); len(fsal) == 0 {
		missing = append(missing, "Ganesha's VFS backend (nfs-ganesha-vfs)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "real NFS test needs " + strings.Join(missing, ", ") +
		": run as root after test/tools/install.sh apt (Debian packages nfs-ganesha nfs-ganesha-vfs libnfs-utils dbus-daemon util-linux)"
	if os.Getenv("PVNFS_REQUIRE_ALL") == "1" {
		tb.Fatal(msg + " (PVNFS_REQUIRE_ALL=1 makes this a failure)")
	}
	tb.Skip(msg)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary serverBinary built, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// serverBinary builds cmd/pvnfs-server once per test run.
func serverBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pvnfs-server-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pvnfs-server")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/pvnfs/pvnfs/cmd/pvnfs-server").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// volume is a temporary "backend volume" and the ports of its server.
type volume struct {
	root, runDir         string
	nfsPort, healthPort  int
	leaseSecs, graceSecs int
	// args are more pvnfs-server flags, e.g. --clients.
	args []string
}

func newVolume(tb testing.TB, lease, grace int) *volume {
	tb.Helper()
	base := tb.TempDir()
	v := &volume{root: filepath.Join(base, "vol"), runDir: filepath.Join(base, "run"),
		nfsPort: freePort(tb), healthPort: freePort(tb), leaseSecs: lease, graceSecs: grace}
	if err := os.MkdirAll(filepath.Join(v.root, "lost+found"), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.root, "lost+found", "#12345"), []byte("fsck found me"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return v
}

func (v *volume) exportDir() string { return filepath.Join(v.root, "export") }

// url is an nfs:// URL for libnfs; path is below the export ("" for the export).
func (v *volume) url(path string) string {
	return fmt.Sprintf("nfs://127.0.0.1%s?version=4&nfsport=%d", filepath.Join(v.exportDir(), path), v.nfsPort)
}

// server is one running pvnfs-server process.
type server struct {
	v    *volume
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

// start runs pvnfs-server --engine=ganesha over v with exactly the capabilities the
// controller gives the Ganesha server container (controller.ServerRuntimeFor), no new
// privileges, and the test-only settings: 127.0.0.1, free ports, NFS 4.0 for libnfs.
// owner is the test that outlives the server: its cleanup kills a server still
// running and shows the server's log when it failed.
func start(tb, owner testing.TB, v *volume) *server {
	tb.Helper()
	var caps []string
	for _, c := range controller.GaneshaCapabilities() {
		caps = append(caps, "+"+strings.ToLower(string(c)))
	}
	args := []string{
		"--no-new-privs", "--inh-caps=-all", "--bounding-set=-all," + strings.Join(caps, ","), "--",
		serverBinary(tb),
		"--volume-id=pvc-real-nfs", "--engine=ganesha", "--volume-root=" + v.root,
		"--nfs-versions=4.0,4.1,4.2", "--export-sync=true", "--root-squash=false",
		"--export-owner=1000:1000", "--export-mode=2775", "--threads=8",
		fmt.Sprintf("--lease-seconds=%d", v.leaseSecs), fmt.Sprintf("--grace-seconds=%d", v.graceSecs),
		fmt.Sprintf("--nfs-port=%d", v.nfsPort), fmt.Sprintf("--health-port=%d", v.healthPort),
		"--bind-address=127.0.0.1", "--run-dir=" + v.runDir, "--health-interval=250ms",
	}
	args = append(args, v.args...)
	s := &server{v: v, log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command("setpriv", args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	owner.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
		if owner.Failed() {
			owner.Logf("pvnfs-server log:\n%s", s.log.String())
		}
	})
	return s
}

func (s *server) get(path string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", s.v.healthPort, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitReady waits for /readyz, failing early if the server exits.
func (s *server) waitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if code, _, err := s.get("/readyz"); err == nil && code == http.StatusOK {
			return
		}
		select {
		case <-s.done:
			tb.Fatalf("pvnfs-server exited before it was ready: %v", s.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	tb.Fatalf("pvnfs-server not ready after %s", timeout)
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (s *server) stop(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	return s.wait(tb, timeout)
}

func (s *server) wait(tb testing.TB, timeout time.Duration) error {
	tb.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		tb.Fatalf("pvnfs-server did not exit within %s", timeout)
		return nil
	}
}

// nfs runs a libnfs client command with a deadline.
func nfs(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// put writes content to path in the export with nfs-cp, as uid:gid.
func put(ctx context.Context, v *volume, path, content string, uid int) error {
	f, err := os.CreateTemp("", "pvnfs-nfs-cp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(content); err != nil {
		return err
	}
	f.Close()
	_, err = nfs(ctx, "nfs-cp", f.Name(), fmt.Sprintf("%s&uid=%d&gid=%d", v.url(path), uid, uid))
	return err
}

// ls returns the names listed in a directory of the export, with their owners.
func ls(ctx context.Context, url string) (map[string]string, error) {
	out, err := nfs(ctx, "nfs-ls", url)
	if err != nil {
		return nil, err
	}
	entries := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 6 {
			entries[f[len(f)-1]] = f[2] + ":" + f[3]
		}
	}
	return entries, nil
}

func random(tb testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// metric returns the value of one sample of /metrics, e.g.
// `pvnfs_nfs_operations_total{operation="WRITE"}`.
func metric(tb testing.TB, s *server, sample string) float64 {
	tb.Helper()
	_, body, err := s.get("/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return v
		}
	}
	tb.Fatalf("/metrics has no sample %s:\n%s", sample, body)
	return 0
}

// recoveryRecords lists Ganesha's client records on the backend volume.
func recoveryRecords(tb testing.TB, v *volume) []string {
	tb.Helper()
	var recs []string
	for _, dir := range []string{"v4recov", "v4old"} {
		entries, _ := os.ReadDir(filepath.Join(v.root, ".pvnfs", "ganesha", dir, "node0"))
		for _, e := range entries {
			recs = append(recs, dir+"/"+e.Name())
		}
	}
	return recs
}

// TestGaneshaRealNFS serves a temporary backend volume with pvnfs-server
// --engine=ganesha and uses it with a real NFS client: write, list, read, metrics,
// SIGTERM, restart over the same volume with recovery, and the death of
// ganesha.nfsd under the supervisor.
func TestGaneshaRealNFS(t *testing.T) {
	requireReal(t)
	ctx := context.Background()
	v := newVolume(t, 10, 10)
	outer := t
	srv := start(t, outer, v)
	srv.waitReady(t, time.Minute)

	content := map[string]string{"a.txt": random(t), "b.txt": random(t)}
	t.Run("client writes, lists and reads the export", func(t *testing.T) {
		if err := put(ctx, v, "a.txt", content["a.txt"], 0); err != nil {
			t.Fatal(err)
		}
		if err := put(ctx, v, "b.txt", content["b.txt"], 1000); err != nil {
			t.Fatal(err)
		}
		entries, err := ls(ctx, v.url(""))
		if err != nil {
			t.Fatal(err)
		}
		for name := range content {
			if _, ok := entries[name]; !ok {
				t.Errorf("nfs-ls of the export lacks %s: %v", name, entries)
			}
		}
		// Owners go over the wire as numbers: uid 1000's file is 1000, not nobody;
		// the export root's setgid gives both files group 1000.
		if entries["b.txt"] != "1000:1000" || entries["a.txt"] != "0:1000" {
			t.Errorf("owners = %v, want a.txt 0:1000 and b.txt 1000:1000", entries)
		}
		for name, want := range content {
			got, err := nfs(ctx, "nfs-cat", v.url(name))
			if err != nil || got != want {
				t.Errorf("nfs-cat %s = %q, %v; want %q", name, got, err, want)
			}
			onDisk, err := os.ReadFile(filepath.Join(v.exportDir(), name))
			if err != nil || string(onDisk) != want {
				t.Errorf("%s on the backend volume = %q, %v", name, onDisk, err)
			}
		}
	})

	t.Run("lost+found and the server state are not visible", func(t *testing.T) {
		entries, err := ls(ctx, v.url(""))
		if err != nil {
			t.Fatal(err)
		}
		for _, hidden := range []string{"lost+found", ".pvnfs", "#12345", "health-probe"} {
			if _, ok := entries[hidden]; ok {
				t.Errorf("the export shows %s: %v", hidden, entries)
			}
		}
		// Above the export is only Ganesha's pseudo filesystem: the volume root's
		// other directories do not exist for clients.
		parent := fmt.Sprintf("nfs://127.0.0.1%s/?version=4&nfsport=%d", v.root, v.nfsPort)
		up, err := ls(ctx, parent)
		if err != nil {
			t.Fatal(err)
		}
		delete(up, ".")
		delete(up, "..")
		if _, ok := up["export"]; !ok || len(up) != 1 {
			t.Errorf("the pseudo filesystem above the export shows %v, want only export", up)
		}
		if _, err := nfs(ctx, "nfs-cat", fmt.Sprintf("nfs://127.0.0.1%s/lost+found/%%2312345?version=4&nfsport=%d", v.root, v.nfsPort)); err == nil {
			t.Error("a client read lost+found")
		}
	})

	t.Run("metrics report the client's operations", func(t *testing.T) {
		writes := metric(t, srv, `pvnfs_nfs_operations_total{operation="WRITE"}`)
		written := metric(t, srv, "pvnfs_nfs_written_bytes_total")
		reads := metric(t, srv, `pvnfs_nfs_operations_total{operation="READ"}`)
		read := metric(t, srv, "pvnfs_nfs_read_bytes_total")
		requests := metric(t, srv, `pvnfs_nfs_requests_total{version="4.0"}`)

		c := random(t) + random(t)
		if err := put(ctx, v, "metrics.txt", c, 0); err != nil {
			t.Fatal(err)
		}
		if got, err := nfs(ctx, "nfs-cat", v.url("metrics.txt")); err != nil || got != c {
			t.Fatalf("nfs-cat = %q, %v", got, err)
		}
		for _, m := range []struct {
			sample  string
			before  float64
			atLeast float64
		}{
			{`pvnfs_nfs_operations_total{operation="WRITE"}`, writes, 1},
			{"pvnfs_nfs_written_bytes_total", written, float64(len(c))},
			{`pvnfs_nfs_operations_total{operation="READ"}`, reads, 1},
			{"pvnfs_nfs_read_bytes_total", read, float64(len(c))},
			{`pvnfs_nfs_requests_total{version="4.0"}`, requests, 2},
		} {
			if after := metric(t, srv, m.sample); after-m.before < m.atLeast {
				t.Errorf("%s went from %v to %v, want an increase of at least %v", m.sample, m.before, after, m.atLeast)
			}
		}
		for _, sample := range []string{"pvnfs_nfs_clients", "pvnfs_nfs_threads", "pvnfs_nfs_stats_up", "pvnfs_server_ready", "pvnfs_server_healthy"} {
			if got := metric(t, srv, sample); got < 1 {
				t.Errorf("%s = %v, want at least 1", sample, got)
			}
		}
	})

	t.Run("healthz runs a real RPC probe", func(t *testing.T) {
		code, body, err := srv.get("/healthz")
		if err != nil || code != http.StatusOK {
			t.Fatalf("/healthz = %d %q %v", code, body, err)
		}
		for _, check := range []string{"[+] nfs-rpc: ok", "[+] backend-writable: ok", "[+] ganesha-running: ok", "[+] export-loaded: ok"} {
			if !strings.Contains(body, check) {
				t.Errorf("/healthz lacks %q:\n%s", check, body)
			}
		}
	})

	t.Run("SIGTERM exits 0 and keeps the client records", func(t *testing.T) {
		if err := srv.stop(t, 30*time.Second); err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
		if recs := recoveryRecords(t, v); len(recs) == 0 {
			t.Error("no client records in the recovery directory on the backend volume")
		}
		if leftovers := processesUnder(t, v.runDir); len(leftovers) > 0 {
			t.Errorf("helpers still run after the stop: %v", leftovers)
		}
	})

	t.Run("restart over the same volume: data kept, writable after the grace period", func(t *testing.T) {
		srv = start(t, outer, v)
		srv.waitReady(t, time.Minute)
		recs := recoveryRecords(t, v)
		if len(recs) == 0 {
			t.Error("the restarted server has no client records to wait for")
		}
		t.Logf("client records after the restart: %d", len(recs))

		c := random(t)
		var firstErr error
		deadline := time.Now().Add(time.Duration(v.graceSecs)*time.Second + 30*time.Second)
		for {
			err := put(ctx, v, "after-restart.txt", c, 0)
			if err == nil {
				break
			}
			if firstErr == nil {
				firstErr = err
			}
			if time.Now().After(deadline) {
				t.Fatalf("no write succeeded within the grace period and 30 s: %v", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if firstErr != nil {
			t.Logf("writes waited for the grace period; the first attempt got: %v", firstErr)
		}
		for name, want := range content {
			if got, err := nfs(ctx, "nfs-cat", v.url(name)); err != nil || got != want {
				t.Errorf("after the restart nfs-cat %s = %q, %v; want %q", name, got, err, want)
			}
		}
		if got, err := nfs(ctx, "nfs-cat", v.url("after-restart.txt")); err != nil || got != c {
			t.Errorf("nfs-cat after-restart.txt = %q, %v", got, err)
		}
	})

	t.Run("ganesha.nfsd killed: unhealthy, then the supervisor exits non-zero", func(t *testing.T) {
		pidText, err := os.ReadFile(filepath.Join(v.runDir, "ganesha.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
		if err != nil {
			t.Fatal(err)
		}
		// Watch /healthz until the supervisor is gone.
		seen := make(chan string, 1)
		go func() {
			for {
				code, body, err := srv.get("/healthz")
				if err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "ganesha.nfsd") {
					seen <- body
					return
				}
				select {
				case <-srv.done:
					close(seen)
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		body, ok := <-seen
		if !ok {
			t.Error("the supervisor exited without /healthz ever reporting ganesha.nfsd's death")
		} else if !strings.Contains(body, "phase: failed") {
			t.Errorf("/healthz after the kill:\n%s", body)
		}
		err = srv.wait(t, 30*time.Second)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
			t.Errorf("supervisor exit = %v, want a non-zero status", err)
		}
		if !strings.Contains(srv.log.String(), "ganesha.nfsd (pid "+strconv.Itoa(pid)+") exited: signal: killed") {
			t.Error("the log does not name ganesha.nfsd's death")
		}
		if leftovers := processesUnder(t, v.runDir); len(leftovers) > 0 {
			t.Errorf("helpers still run after the failure: %v", leftovers)
		}
	})
}

// processesUnder lists running processes whose command line mentions dir.
// TestGaneshaRealNFSClients: with --clients the export serves only those networks.
// The client (libnfs over loopback) comes from 127.0.0.1: admitted by 127.0.0.0/8,
// refused by networks without it (an IPv6 one among them, which Ganesha's
// configuration parser must accept too).
func TestGaneshaRealNFSClients(t *testing.T) {
	requireReal(t)
	for _, tc := range []struct {
		name    string
		clients string
		admit   bool
	}{
		{"client inside the networks", "10.255.0.0/16,127.0.0.0/8", true},
		{"client inside with an IPv6 network in the list", "fd00:10::/64,127.0.0.0/8", true},
		{"client outside the networks", "10.255.0.0/16,fd00:10::/64", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVolume(t, 10, 10)
			v.args = []string{"--clients=" + tc.clients}
			srv := start(t, t, v)
			srv.waitReady(t, time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			content := random(t)
			if err := os.WriteFile(filepath.Join(v.exportDir(), "hello.txt"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := nfs(ctx, "nfs-cat", v.url("hello.txt"))
			switch {
			case tc.admit && (err != nil || got != content):
				t.Errorf("--clients=%s: nfs-cat from 127.0.0.1 = %q, %v; want the file", tc.clients, got, err)
			case !tc.admit && err == nil:
				t.Errorf("--clients=%s: nfs-cat from 127.0.0.1 read %q; want it refused", tc.clients, got)
			case !tc.admit:
				t.Logf("refused as it should be: %v", err)
			}
			if err := put(ctx, v, "written.txt", "x", 0); (err == nil) != tc.admit {
				t.Errorf("--clients=%s: nfs-cp from 127.0.0.1: %v (admitted: %v)", tc.clients, err, tc.admit)
			}
		})
	}
}

func processesUnder(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && bytes.Contains(stat, []byte(") Z ")) {
			continue // a zombie waiting for its parent is not running
		}
		found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return found
}

// BenchmarkGaneshaStartToReady measures how long pvnfs-server --engine=ganesha
// takes from exec to /readyz over a fresh volume, and the SIGTERM-to-exit time.
// Run: go test -run '^$' -bench Ganesha -benchtime 5x ./pkg/nfsserver/...
func BenchmarkGaneshaStartToReady(b *testing.B) {
	requireReal(b)
	serverBinary(b)
	var ready, stop time.Duration
	for i := 0; i < b.N; i++ {
		v := newVolume(b, 30, 30)
		t0 := time.Now()
		s := start(b, b, v)
		s.waitReady(b, time.Minute)
		ready += time.Since(t0)
		t1 := time.Now()
		if err := s.stop(b, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		stop += time.Since(t1)
	}
	b.ReportMetric(ready.Seconds()/float64(b.N), "s-start-to-ready")
	b.ReportMetric(stop.Seconds()/float64(b.N), "s-sigterm-to-exit")
}

// BenchmarkGaneshaRestartToWritable measures, with the default lease and grace
// (30 s each), how long a restarted server takes from exec until a client that
// does not reclaim (libnfs) can write again: it waits out the whole grace period,
// because the previous instance left client records.
// Run: go test -run '^$' -bench GaneshaRestart -benchtime 1x ./pkg/nfsserver/...
func BenchmarkGaneshaRestartToWritable(b *testing.B) {
	requireReal(b)
	serverBinary(b)
	d := serverconfig.Default()
	ctx := context.Background()
	var ready, writable time.Duration
	for i := 0; i < b.N; i++ {
		v := newVolume(b, d.LeaseSeconds, d.GraceSeconds)
		s := start(b, b, v)
		s.waitReady(b, time.Minute)
		if err := put(ctx, v, "before.txt", "x", 0); err != nil {
			b.Fatal(err)
		}
		if err := s.stop(b, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		s = start(b, b, v)
		s.waitReady(b, time.Minute)
		ready += time.Since(t0)
		for {
			err := put(ctx, v, "after.txt", "y", 0)
			if err == nil {
				break
			}
			if time.Since(t0) > time.Duration(d.GraceSeconds)*time.Second+time.Minute {
				b.Fatalf("not writable: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		writable += time.Since(t0)
		if err := s.stop(b, 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(ready.Seconds()/float64(b.N), "s-restart-to-ready")
	b.ReportMetric(writable.Seconds()/float64(b.N), "s-restart-to-writable")
}

// syncBuffer is a bytes.Buffer safe for the process's two output streams.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
