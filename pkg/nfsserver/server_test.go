package nfsserver_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/nfsserver"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/command/commandtest"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/kernel/kerneltest"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// fakeNFS answers every RPC NULL call with success, as nfsd would, on a free port.
func fakeNFS(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var hdr [4]byte
				if _, err := io.ReadFull(conn, hdr[:]); err != nil {
					return
				}
				call := make([]byte, binary.BigEndian.Uint32(hdr[:])&0x7fffffff)
				if _, err := io.ReadFull(conn, call); err != nil {
					return
				}
				reply := binary.BigEndian.AppendUint32(nil, 0x80000000|24)
				for _, w := range []uint32{binary.BigEndian.Uint32(call), 1, 0, 0, 0, 0} {
					reply = binary.BigEndian.AppendUint32(reply, w)
				}
				_, _ = conn.Write(reply)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// harness runs a Server and reaches its health port.
type harness struct {
	t       *testing.T
	addr    chan string
	base    string
	done    chan error
	cancel  context.CancelFunc
	termLog string
}

func testOptions(t *testing.T) nfsserver.Options {
	o := nfsserver.DefaultOptions()
	o.HealthInterval = 50 * time.Millisecond
	o.CheckTimeout = time.Second
	o.StartTimeout = 10 * time.Second
	o.ShutdownTimeout = 5 * time.Second
	o.FailureExitDelay = 500 * time.Millisecond
	o.TerminationLog = filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(o.TerminationLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

func start(t *testing.T, cfg serverconfig.Config, opts nfsserver.Options, deps nfsserver.Deps) *harness {
	t.Helper()
	h := &harness{t: t, addr: make(chan string, 1), done: make(chan error, 1), termLog: opts.TerminationLog}
	deps.Listen = func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, "127.0.0.1:0")
		if err == nil {
			h.addr <- ln.Addr().String()
		}
		return ln, err
	}
	srv, err := nfsserver.New(cfg, opts, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not return after cancel")
		}
	})
	go func() { h.done <- srv.Run(ctx) }()
	select {
	case a := <-h.addr:
		h.base = "http://" + a
	case err := <-h.done:
		h.done <- err
		t.Logf("server returned before listening: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("health port never opened")
	}
	return h
}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get(h.base + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls path until it answers with status, and returns the body.
func (h *harness) waitFor(path string, status int) string {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, body := h.get(path)
		if code == status {
			return body
		}
		last = fmt.Sprintf("%d %s", code, body)
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("%s never answered %d; last answer: %s", path, status, last)
	return ""
}

func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(15 * time.Second):
		h.t.Fatal("server did not return")
		return nil
	}
}

func kernelServer(t *testing.T, env *kerneltest.Env) (serverconfig.Config, nfsserver.Options) {
	cfg := env.Config
	cfg.NFSPort = fakeNFS(t)
	mode := serverconfig.Mode(0o2775)
	cfg.ExportOwner, cfg.ExportMode = &serverconfig.Owner{UID: 1234, GID: 5678}, &mode
	opts := testOptions(t)
	opts.ProcDir = env.Options.ProcDir
	opts.Kernel = env.Options
	return cfg, opts
}

// TestKernelServerLifecycle runs start, serve and stop of the kernel engine against
// the fake kernel: the volume layout, the probes, the metrics and the shutdown.
func TestKernelServerLifecycle(t *testing.T) {
	env := kerneltest.New(t)
	cfg, opts := kernelServer(t, env)
	h := start(t, cfg, opts, nfsserver.Deps{Runner: env.Runner})

	h.waitFor("/readyz", http.StatusOK)
	health := h.waitFor("/healthz", http.StatusOK)
	for _, want := range []string{"phase: serving", "[+] nfs-rpc: ok", "[+] backend-writable: ok", "[+] nfsd-threads: ok", "[+] export-loaded: ok"} {
		if !strings.Contains(health, want) {
			t.Errorf("/healthz lacks %q:\n%s", want, health)
		}
	}

	// The backend volume: export and state below the root, lost+found untouched,
	// owner and mode applied to the export root.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(env.VolumeRoot, "export"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o2775 {
		t.Errorf("export root: owner %d:%d mode %04o, want 1234:5678 2775", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if fi, err := os.Stat(filepath.Join(env.VolumeRoot, ".pvnfs")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v %v, want 0700", fi, err)
	}
	if _, err := os.Stat(filepath.Join(env.VolumeRoot, "lost+found")); err != nil {
		t.Errorf("lost+found: %v", err)
	}

	_, metrics := h.get("/metrics")
	for _, want := range []string{
		`pvnfs_server_info{engine="kernel",version="dev",volume_id="pvc-0a1b2c3d"} 1`,
		"pvnfs_server_ready 1", "pvnfs_server_healthy 1", "pvnfs_nfs_stats_up 1",
		`pvnfs_server_health_check{check="nfs-rpc"} 1`,
		"pvnfs_nfs_read_bytes_total 4096", "pvnfs_nfs_written_bytes_total 8192",
		`pvnfs_nfs_requests_total{version="4"} 120`,
		`pvnfs_nfs_operations_total{operation="READ"} 7`, `pvnfs_nfs_operations_total{operation="WRITE"} 9`,
		"pvnfs_nfs_threads 8", "pvnfs_nfs_clients 2", "go_goroutines",
	} {
		if !strings.Contains(metrics, want+"\n") && !strings.Contains(metrics, want+" ") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	h.cancel() // SIGTERM
	if err := h.wait(); err != nil {
		t.Fatalf("Run after SIGTERM = %v, want nil", err)
	}
	// The threads stop first; no unexport before them refuses requests.
	if calls := env.Runner.Calls(); slices.Contains(calls, "run exportfs -ua") {
		t.Errorf("commands %q: the stop unexported", calls)
	}
	if got := env.NfsdFile(t, "threads"); got != "0\n" {
		t.Errorf("threads after SIGTERM = %q", got)
	}
	for _, p := range env.Runner.Procs() {
		if !p.Exited() {
			t.Errorf("%s still runs", p.Cmd.Name)
		}
	}
	if b, _ := os.ReadFile(h.termLog); len(b) != 0 {
		t.Errorf("termination log after a clean stop: %q", b)
	}
}

// TestKernelServerHelperDies: nfsdcld dies; /healthz says so, then the server
// stops everything and returns the cause.
func TestKernelServerHelperDies(t *testing.T) {
	env := kerneltest.New(t)
	cfg, opts := kernelServer(t, env)
	h := start(t, cfg, opts, nfsserver.Deps{Runner: env.Runner})
	h.waitFor("/readyz", http.StatusOK)

	env.Runner.Proc("nfsdcld").Exit(errors.New("exit status 1"))
	body := h.waitFor("/healthz", http.StatusServiceUnavailable)
	if !strings.Contains(body, "phase: failed") || !strings.Contains(body, "nfsdcld (pid 1000) exited: exit status 1") {
		t.Errorf("/healthz while failing:\n%s", body)
	}
	err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "nfsdcld") {
		t.Fatalf("Run() = %v, want nfsdcld's exit", err)
	}
	if !env.Runner.Proc("rpc.mountd").Exited() {
		t.Error("rpc.mountd still runs")
	}
	if got := env.NfsdFile(t, "threads"); got != "0\n" {
		t.Errorf("threads = %q after the failure, want 0", got)
	}
	if b, _ := os.ReadFile(h.termLog); !strings.Contains(string(b), "nfsdcld") {
		t.Errorf("termination log = %q", b)
	}
}

// TestKernelServerStartFails: a node without nfsd. The error names the step and the
// remedy, /healthz shows it until the server exits, and the termination log holds it.
func TestKernelServerStartFails(t *testing.T) {
	env := kerneltest.New(t)
	env.NfsdModule = false
	cfg, opts := kernelServer(t, env)
	h := start(t, cfg, opts, nfsserver.Deps{Runner: env.Runner})
	// Until the server exits, /healthz explains why it cannot serve.
	body := waitBody(h, "/healthz", "load the nfsd kernel module")
	if !strings.Contains(body, "phase: failed") {
		t.Errorf("/healthz:\n%s", body)
	}
	err := h.wait()
	var se *engine.StepError
	if !errors.As(err, &se) || se.Step != "mount the nfsd filesystem" {
		t.Fatalf("Run() = %v, want the failed mount", err)
	}
	if b, _ := os.ReadFile(h.termLog); !strings.Contains(string(b), "load the nfsd kernel module") {
		t.Errorf("termination log = %q", b)
	}
}

func waitBody(h *harness, path, want string) string {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, body := h.get(path); strings.Contains(body, want) {
			return body
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("%s never said %q", path, want)
	return ""
}

// fakeEngine is an engine.Engine whose behaviour each test sets.
type fakeEngine struct {
	startErr   error
	startBlock bool // Start waits for its context
	checks     []engine.Check
	stats      engine.Stats
	statsErr   error
	exited     chan struct{}
	exitErr    error
	stopErr    error
	started    atomic.Int32
	stopped    atomic.Int32
	once       sync.Once
}

func newFakeEngine() *fakeEngine { return &fakeEngine{exited: make(chan struct{})} }

func (f *fakeEngine) Name() string { return "fake" }
func (f *fakeEngine) Start(ctx context.Context) error {
	f.started.Add(1)
	if f.startBlock {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.startErr
}
func (f *fakeEngine) Exited() <-chan struct{}               { return f.exited }
func (f *fakeEngine) ExitErr() error                        { return f.exitErr }
func (f *fakeEngine) Checks(context.Context) []engine.Check { return f.checks }
func (f *fakeEngine) Stats(context.Context) (engine.Stats, error) {
	return f.stats, f.statsErr
}
func (f *fakeEngine) Stop(context.Context) error {
	f.stopped.Add(1)
	return f.stopErr
}
func (f *fakeEngine) die(err error) {
	f.once.Do(func() { f.exitErr = err; close(f.exited) })
}

func fakeConfig(t *testing.T) serverconfig.Config {
	c := serverconfig.Default()
	c.VolumeID = "pvc-fake"
	c.VolumeRoot = t.TempDir()
	c.NFSPort = fakeNFS(t)
	return c
}

func TestServerWithFakeEngine(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the engine, act runs once the server listens, then the
		// test waits for Run's result.
		setup      func(f *fakeEngine)
		act        func(h *harness, f *fakeEngine)
		wantErr    string // "" for a clean stop
		wantStops  int32
		wantStarts int32
	}{
		{name: "SIGTERM while the engine starts stops it and exits 0",
			setup: func(f *fakeEngine) { f.startBlock = true },
			act: func(h *harness, f *fakeEngine) {
				waitUntil(h.t, func() bool { return f.started.Load() == 1 })
				h.cancel()
			}, wantStops: 1, wantStarts: 1},
		{name: "a failed start is cleaned up and returned",
			setup: func(f *fakeEngine) {
				f.startErr = &engine.StepError{Step: "start x", Err: errors.New("boom"), Remedy: "fix x"}
			},
			act:     func(*harness, *fakeEngine) {},
			wantErr: "start x: boom. To fix: fix x", wantStops: 1, wantStarts: 1},
		{name: "an engine check failing makes /healthz fail but not /readyz",
			setup: func(f *fakeEngine) { f.checks = []engine.Check{{Name: "export-loaded", Err: errors.New("gone")}} },
			act: func(h *harness, f *fakeEngine) {
				h.waitFor("/readyz", http.StatusOK)
				body := h.waitFor("/healthz", http.StatusServiceUnavailable)
				if !strings.Contains(body, "[-] export-loaded: gone") {
					h.t.Errorf("/healthz:\n%s", body)
				}
				if _, m := h.get("/metrics"); !strings.Contains(m, `pvnfs_server_health_check{check="export-loaded"} 0`) || !strings.Contains(m, "pvnfs_server_healthy 0") {
					h.t.Errorf("/metrics does not show the failing check")
				}
				h.cancel()
			}, wantStops: 1, wantStarts: 1},
		{name: "statistics that cannot be read are reported as such",
			setup: func(f *fakeEngine) { f.statsErr = errors.New("no stats") },
			act: func(h *harness, f *fakeEngine) {
				h.waitFor("/readyz", http.StatusOK)
				if _, m := h.get("/metrics"); !strings.Contains(m, "pvnfs_nfs_stats_up 0") || strings.Contains(m, "pvnfs_nfs_read_bytes_total") {
					h.t.Errorf("/metrics:\n%s", m)
				}
				h.cancel()
			}, wantStops: 1, wantStarts: 1},
		{name: "POST /flush syncs the backend volume while serving; other methods are refused",
			act: func(h *harness, f *fakeEngine) {
				h.waitFor("/readyz", http.StatusOK)
				resp, err := http.Post(h.base+volume.FlushPath+"?"+volume.FlushTimeoutParam+"=10s", "", nil)
				if err != nil {
					h.t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "flushed ") {
					h.t.Errorf("POST %s = %d %s, want 200 flushed", volume.FlushPath, resp.StatusCode, body)
				}
				if code, _ := h.get(volume.FlushPath); code != http.StatusMethodNotAllowed {
					h.t.Errorf("GET %s = %d, want 405", volume.FlushPath, code)
				}
				h.cancel()
			}, wantStops: 1, wantStarts: 1},
		{name: "a stop that fails is returned",
			setup: func(f *fakeEngine) { f.stopErr = errors.New("unexport failed") },
			act: func(h *harness, f *fakeEngine) {
				h.waitFor("/readyz", http.StatusOK)
				h.cancel()
			}, wantErr: "stop: unexport failed", wantStops: 1, wantStarts: 1},
		{name: "a dead helper ends the server with its error",
			act: func(h *harness, f *fakeEngine) {
				h.waitFor("/readyz", http.StatusOK)
				f.die(errors.New("ganesha.nfsd (pid 7) exited: signal: killed"))
				body := h.waitFor("/healthz", http.StatusServiceUnavailable)
				if !strings.Contains(body, "failure: ganesha.nfsd (pid 7) exited") {
					h.t.Errorf("/healthz:\n%s", body)
				}
				if code, _ := h.get("/readyz"); code != http.StatusServiceUnavailable {
					h.t.Errorf("/readyz = %d while failing", code)
				}
			}, wantErr: "ganesha.nfsd (pid 7) exited", wantStops: 1, wantStarts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEngine()
			if tc.setup != nil {
				tc.setup(f)
			}
			h := start(t, fakeConfig(t), testOptions(t), nfsserver.Deps{Engine: f})
			tc.act(h, f)
			err := h.wait()
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Run() = %v, want %q", err, tc.wantErr)
			}
			if f.stopped.Load() != tc.wantStops || f.started.Load() != tc.wantStarts {
				t.Errorf("engine started %d and stopped %d times, want %d and %d", f.started.Load(), f.stopped.Load(), tc.wantStarts, tc.wantStops)
			}
		})
	}
}

// TestServerBackendNotMounted: a volume root that is not a directory stops the
// start before any engine runs.
func TestServerBackendNotMounted(t *testing.T) {
	f := newFakeEngine()
	cfg := fakeConfig(t)
	cfg.VolumeRoot = filepath.Join(cfg.VolumeRoot, "missing")
	h := start(t, cfg, testOptions(t), nfsserver.Deps{Engine: f})
	err := h.wait()
	var se *engine.StepError
	if !errors.As(err, &se) || se.Step != "prepare the backend volume" || !strings.Contains(se.Remedy, "backend PVC") {
		t.Fatalf("Run() = %v, want the backend volume step", err)
	}
	if f.started.Load() != 0 || f.stopped.Load() != 0 {
		t.Errorf("engine started %d, stopped %d times; want neither", f.started.Load(), f.stopped.Load())
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *serverconfig.Config, o *nfsserver.Options)
		wantErr string
	}{
		{name: "no volume ID", mutate: func(c *serverconfig.Config, o *nfsserver.Options) { c.VolumeID = "" }, wantErr: "--volume-id"},
		{name: "bad bind address", mutate: func(c *serverconfig.Config, o *nfsserver.Options) { o.BindAddress = "localhost" }, wantErr: "--bind-address"},
		{name: "kernel engine with a bind address", mutate: func(c *serverconfig.Config, o *nfsserver.Options) { o.BindAddress = "127.0.0.1" }, wantErr: "kernel engine listens on every address"},
		{name: "ganesha with a long lease", mutate: func(c *serverconfig.Config, o *nfsserver.Options) {
			c.Engine, c.LeaseSeconds, c.GraceSeconds = "ganesha", 600, 600
		}, wantErr: "NFS-Ganesha takes at most 120"},
		{name: "no shutdown timeout", mutate: func(c *serverconfig.Config, o *nfsserver.Options) { o.ShutdownTimeout = 0 }, wantErr: "--shutdown-timeout"},
		{name: "relative proc dir", mutate: func(c *serverconfig.Config, o *nfsserver.Options) { o.ProcDir = "proc" }, wantErr: "--proc-dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := serverconfig.Default()
			c.VolumeID = "pvc-1"
			o := nfsserver.DefaultOptions()
			tc.mutate(&c, &o)
			_, err := nfsserver.New(c, o, nfsserver.Deps{Runner: commandtest.New(1)})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
