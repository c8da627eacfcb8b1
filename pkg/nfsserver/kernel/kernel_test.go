package kernel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/command/commandtest"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/kernel"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/kernel/kerneltest"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

func newEngine(t *testing.T, env *kerneltest.Env) *kernel.Engine {
	t.Helper()
	s, err := engine.NewSettings(env.Config, "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kernel.New(s, env.Options, env.Runner)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestStartStop runs the whole start and stop against the fake kernel and checks
// every file written and every command run.
func TestStartStop(t *testing.T) {
	env := kerneltest.New(t)
	e := newEngine(t, env)
	if err := e.Start(ctx(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	o, vol := env.Options, env.VolumeRoot
	uuid := serverconfig.FSIDUUID(env.Config.VolumeID)

	for file, want := range map[string]string{
		"versions":       "-2 -3 +4 -4.0 +4.1 +4.2\n",
		"nfsv4leasetime": "30\n",
		"nfsv4gracetime": "30\n",
		"portlist":       "tcp 2049\n",
		"threads":        "8\n",
	} {
		if got := env.NfsdFile(t, file); got != want {
			t.Errorf("nfsd/%s = %q, want %q", file, got, want)
		}
	}
	exports, err := os.ReadFile(o.ExportsFile)
	if err != nil {
		t.Fatal(err)
	}
	wantLine := vol + "/export *(rw,sync,no_subtree_check,insecure,no_root_squash,fsid=" + uuid + ",sec=sys)\n"
	if !strings.HasSuffix(string(exports), "\n"+wantLine) {
		t.Errorf("exports file:\n%s\nwant its export line to be\n%s", exports, wantLine)
	}
	wantCalls := []string{
		"run mount -t nfsd nfsd " + o.NfsdDir,
		"run mount -t rpc_pipefs sunrpc " + o.RPCPipefsDir,
		"run mount -t tmpfs -o mode=0755,size=1m pvnfs-nfsroot " + o.NFSRootDir,
		"run mount --bind " + vol + "/export " + o.NFSRootDir + vol + "/export",
		"start nfsdcld --foreground --pipefsdir " + o.RPCPipefsDir + " --storagedir " + vol + "/.pvnfs/nfsdcld",
		"start rpc.mountd --foreground --no-nfs-version 2 --no-nfs-version 3",
		"run exportfs -r",
	}
	if got := env.Runner.Calls(); !slices.Equal(got, wantCalls) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	// The pseudo-root is the tmpfs: exports are paths below it.
	if conf, err := os.ReadFile(o.NFSConfFile); err != nil || !strings.Contains(string(conf), "[exports]\nrootdir = "+o.NFSRootDir+"\n") {
		t.Errorf("nfs.conf drop-in: %q, %v; want [exports] rootdir = %s", conf, err, o.NFSRootDir)
	}
	if st, err := os.Stat(filepath.Join(vol, ".pvnfs", "nfsdcld")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("nfsdcld storage dir: %v, %v; want a 0700 directory on the backend volume", st, err)
	}
	for _, c := range e.Checks(ctx(t)) {
		if c.Err != nil {
			t.Errorf("check %s failed after start: %v", c.Name, c.Err)
		}
	}

	st, err := e.Stats(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.ReadBytes != 4096 || st.WrittenBytes != 8192 || st.Threads != 8 || st.Clients != 2 ||
		st.Requests["4"] != 120 || st.Operations["READ"] != 7 || st.Operations["WRITE"] != 9 {
		t.Errorf("Stats = %+v", st)
	}

	mountd, cld := env.Runner.Proc("rpc.mountd"), env.Runner.Proc("nfsdcld")
	if err := e.Stop(ctx(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// The threads stop first and nothing is unexported: a request between an
	// unexport and the threads' stop would be refused with EACCES.
	if stopCalls := env.Runner.Calls()[len(wantCalls):]; len(stopCalls) != 0 {
		t.Errorf("stop commands = %q, want none (threads to 0, helpers stopped)", stopCalls)
	}
	if got := env.NfsdFile(t, "threads"); got != "0\n" {
		t.Errorf("threads after stop = %q, want 0", got)
	}
	for _, p := range []*commandtest.Proc{mountd, cld} {
		if !p.Exited() || !slices.Equal(p.Signals(), []syscall.Signal{syscall.SIGTERM}) {
			t.Errorf("%s: exited %v, signals %v; want stopped by SIGTERM", p.Cmd.Name, p.Exited(), p.Signals())
		}
	}
	for _, c := range e.Checks(ctx(t)) {
		if c.Name == "nfsd-threads" && c.Err == nil {
			t.Errorf("check %s passes after stop", c.Name)
		}
	}
	select {
	case <-e.Exited():
		t.Error("helpers stopped by Stop were reported as exited on their own")
	default:
	}
}

// TestStartStopsLeftoverNfsd: a crashed earlier container of the pod left nfsd
// running in the pod's network namespace; it is stopped before it is configured.
func TestStartStopsLeftoverNfsd(t *testing.T) {
	env := kerneltest.New(t)
	env.MountNfsd(t, 8, "tcp 2049\n")
	e := newEngine(t, env)
	if err := e.Start(ctx(t)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	calls := env.Runner.Calls()
	if len(calls) < 1 || strings.Contains(calls[0], "-t nfsd") || slices.Contains(calls, "run exportfs -ua") {
		t.Errorf("commands = %q; want no nfsd mount (it is mounted) and no unexport (stopping the threads is enough)", calls)
	}
	if got := env.NfsdFile(t, "threads"); got != "8\n" {
		t.Errorf("threads = %q", got)
	}
}

func TestStartFailures(t *testing.T) {
	replaceWithDir := func(env *kerneltest.Env, name string) error {
		p := filepath.Join(env.Options.NfsdDir, name)
		if err := os.Remove(p); err != nil {
			return err
		}
		return os.Mkdir(p, 0o755)
	}
	// afterMount runs f once the fake nfsd filesystem is mounted.
	afterMount := func(env *kerneltest.Env, f func(*kerneltest.Env) error) {
		mount := env.Runner.OnRun["mount"]
		env.Runner.OnRun["mount"] = func(c command.Cmd) ([]byte, error) {
			out, err := mount(c)
			if err == nil && c.Args[1] == "nfsd" {
				err = f(env)
			}
			return out, err
		}
	}
	tests := []struct {
		name       string
		setup      func(t *testing.T, env *kerneltest.Env)
		wantStep   string
		wantErr    string
		wantRemedy string
	}{
		{name: "node without the nfsd module", setup: func(t *testing.T, env *kerneltest.Env) { env.NfsdModule = false },
			wantStep: "mount the nfsd filesystem", wantErr: "unknown filesystem type 'nfsd'",
			wantRemedy: "nfsd is not available on this node: load the nfsd kernel module"},
		{name: "mount refused to an unprivileged container", setup: func(t *testing.T, env *kerneltest.Env) {
			mustWrite(t, filepath.Join(env.Options.ProcDir, "filesystems"), "nodev\tnfsd\nnodev\trpc_pipefs\n")
			env.Runner.OnRun["mount"] = func(command.Cmd) ([]byte, error) {
				return []byte("mount: permission denied"), fmt.Errorf("exit status 32")
			}
		}, wantStep: "mount the nfsd filesystem", wantErr: "permission denied", wantRemedy: "privileged"},
		{name: "kernel refuses the versions", setup: func(t *testing.T, env *kerneltest.Env) {
			afterMount(env, func(env *kerneltest.Env) error { return replaceWithDir(env, "versions") })
		}, wantStep: "configure nfsd versions, lease and grace", wantErr: "versions",
			wantRemedy: "does not serve the NFS versions"},
		{name: "nfsdcld missing from the image", setup: func(t *testing.T, env *kerneltest.Env) {
			env.Runner.OnStart["nfsdcld"] = func(command.Cmd, *commandtest.Proc) error {
				return fmt.Errorf(`exec: "nfsdcld": executable file not found in $PATH`)
			}
		}, wantStep: "start nfsdcld", wantErr: "executable file not found", wantRemedy: "nfs-kernel-server"},
		{name: "nfsdcld dies at start", setup: func(t *testing.T, env *kerneltest.Env) {
			env.Runner.OnStart["nfsdcld"] = func(_ command.Cmd, p *commandtest.Proc) error {
				p.Exit(fmt.Errorf("exit status 1"))
				return nil
			}
		}, wantStep: "start nfsdcld", wantErr: "nfsdcld (pid 1000) exited: exit status 1", wantRemedy: ".pvnfs/nfsdcld on the backend volume"},
		{name: "rpc.mountd never reaches the kernel", setup: func(t *testing.T, env *kerneltest.Env) {
			env.Runner.OnStart["rpc.mountd"] = func(command.Cmd, *commandtest.Proc) error { return nil }
		}, wantStep: "start rpc.mountd", wantErr: "did not open /net/rpc/nfsd.export/channel", wantRemedy: "rpc.mountd's messages"},
		{name: "exportfs fails", setup: func(t *testing.T, env *kerneltest.Env) {
			env.Runner.OnRun["exportfs"] = func(command.Cmd) ([]byte, error) {
				return []byte("exportfs: Failed to stat /data/export: No such file or directory"), fmt.Errorf("exit status 1")
			}
		}, wantStep: "load the export", wantErr: "Failed to stat", wantRemedy: "exports file"},
		{name: "export missing from etab", setup: func(t *testing.T, env *kerneltest.Env) { env.LoadExports = false },
			wantStep: "load the export", wantErr: "etab does not list", wantRemedy: "exportfs did not load the export"},
		{name: "port refused", setup: func(t *testing.T, env *kerneltest.Env) {
			afterMount(env, func(env *kerneltest.Env) error { return nil })
			exportfs := env.Runner.OnRun["exportfs"]
			env.Runner.OnRun["exportfs"] = func(c command.Cmd) ([]byte, error) {
				out, err := exportfs(c)
				if err == nil {
					err = replaceWithDir(env, "portlist")
				}
				return out, err
			}
		}, wantStep: "open the NFS port", wantErr: "portlist", wantRemedy: "dmesg"},
		{name: "threads refused", setup: func(t *testing.T, env *kerneltest.Env) {
			exportfs := env.Runner.OnRun["exportfs"]
			env.Runner.OnRun["exportfs"] = func(c command.Cmd) ([]byte, error) {
				out, err := exportfs(c)
				if err == nil {
					err = replaceWithDir(env, "threads")
				}
				return out, err
			}
		}, wantStep: "start the nfsd threads", wantErr: "is a directory", wantRemedy: "dmesg"},
		{name: "no client tracking", setup: func(t *testing.T, env *kerneltest.Env) { env.TrackClients = false },
			wantStep: "check NFSv4 client tracking", wantErr: "nfsd started 3 times without nfsdcld", wantRemedy: "Unable to initialize client recovery tracking"},
		{name: "hung nfsd control file", setup: func(t *testing.T, env *kerneltest.Env) {
			env.Options.CommandTimeout = 200 * time.Millisecond
			afterMount(env, func(env *kerneltest.Env) error {
				fifo := filepath.Join(env.Options.NfsdDir, "nfsv4leasetime")
				if err := os.Remove(fifo); err != nil {
					return err
				}
				t.Cleanup(func() { unblockFIFO(fifo) })
				return syscall.Mkfifo(fifo, 0o600)
			})
		}, wantStep: "configure nfsd versions, lease and grace", wantErr: "no answer before the deadline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := kerneltest.New(t)
			tc.setup(t, env)
			e := newEngine(t, env)
			err := e.Start(ctx(t))
			var se *engine.StepError
			if !errorsAs(err, &se) {
				t.Fatalf("Start() = %v, want a *engine.StepError", err)
			}
			if se.Step != tc.wantStep || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(se.Remedy, tc.wantRemedy) {
				t.Errorf("Start() = %v\nwant step %q, error containing %q, remedy containing %q", err, tc.wantStep, tc.wantErr, tc.wantRemedy)
			}
			// The server always stops the engine after a failed start: nothing may
			// be left running.
			_ = e.Stop(ctx(t))
			for _, p := range env.Runner.Procs() {
				if !p.Exited() {
					t.Errorf("%s still runs after Stop", p.Cmd.Name)
				}
			}
		})
	}
}

// TestHelperDeath: a helper that dies after the start is reported, naming it.
func TestHelperDeath(t *testing.T) {
	env := kerneltest.New(t)
	e := newEngine(t, env)
	if err := e.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	env.Runner.Proc("rpc.mountd").Exit(fmt.Errorf("signal: segmentation fault"))
	select {
	case <-e.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the death of rpc.mountd was not reported")
	}
	if err := e.ExitErr(); err == nil || !strings.Contains(err.Error(), "rpc.mountd (pid 1001) exited: signal: segmentation fault") {
		t.Errorf("ExitErr() = %v", err)
	}
	_ = e.Stop(ctx(t))
}

func TestNewRefusesBindAddress(t *testing.T) {
	env := kerneltest.New(t)
	s, err := engine.NewSettings(env.Config, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kernel.New(s, env.Options, env.Runner); err == nil || !strings.Contains(err.Error(), "--bind-address") {
		t.Errorf("New() = %v, want an error about --bind-address", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(o *kernel.Options)
		wantErr string
	}{
		{name: "defaults", mutate: func(*kernel.Options) {}},
		{name: "relative nfsd dir", mutate: func(o *kernel.Options) { o.NfsdDir = "proc/fs/nfsd" }, wantErr: "--nfsd-dir"},
		{name: "no exportfs", mutate: func(o *kernel.Options) { o.ExportfsCmd = "" }, wantErr: "--exportfs-cmd"},
		{name: "no timeout", mutate: func(o *kernel.Options) { o.CommandTimeout = 0 }, wantErr: "--kernel-command-timeout"},
		{name: "no helper timeout", mutate: func(o *kernel.Options) { o.HelperTimeout = -time.Second }, wantErr: "--kernel-helper-timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := kernel.DefaultOptions()
			tc.mutate(&o)
			err := o.Validate()
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// unblockFIFO opens the reading end, so that a write blocked on the FIFO returns.
func unblockFIFO(path string) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	time.Sleep(50 * time.Millisecond)
	f.Close()
}
