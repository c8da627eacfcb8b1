package ganesha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/rpcprobe"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// Names of the helpers, as they appear in logs and errors.
const (
	helperGanesha = "ganesha.nfsd"
	helperDBus    = "dbus-daemon"
)

// Engine serves the volume with NFS-Ganesha.
type Engine struct {
	s       engine.Settings
	o       Options
	helpers *command.Group
	// probeAddr is where the start-up waits for NFS to answer.
	probeAddr string
	// busAddress is the private bus's D-Bus address.
	busAddress string
}

var _ engine.Engine = (*Engine)(nil)

// New returns the Ganesha engine for s. It starts nothing.
func New(s engine.Settings, o Options, run command.Runner) (*Engine, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := CheckSettings(s); err != nil {
		return nil, err
	}
	host := s.BindAddress
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return &Engine{
		s: s, o: o,
		helpers:    command.NewGroup(run, 5*time.Second),
		probeAddr:  net.JoinHostPort(host, strconv.Itoa(s.NFSPort)),
		busAddress: "unix:path=" + filepath.Join(o.RunDir, socketName),
	}, nil
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return serverconfig.EngineGanesha }

// Exited implements engine.Engine.
func (e *Engine) Exited() <-chan struct{} { return e.helpers.Exited() }

// ExitErr implements engine.Engine.
func (e *Engine) ExitErr() error { return e.helpers.Err() }

// RecoveryRoot is Ganesha's RecoveryRoot on the backend volume.
func (e *Engine) RecoveryRoot() string { return filepath.Join(e.s.StateDir, RecoverySubdir) }

func (e *Engine) run(name string) string { return filepath.Join(e.o.RunDir, name) }

// Start implements engine.Engine.
func (e *Engine) Start(ctx context.Context) error {
	if !e.s.Sync {
		// Ganesha has no equivalent of the kernel's async: it honours every stable
		// write and COMMIT, i.e. it behaves as with sync.
		klog.ErrorS(nil, "Ganesha has no async export mode: the export behaves as with sync (--export-sync=false has no effect)")
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"check the mount table", e.checkMountTable},
		{"prepare the run directory", e.prepareRunDir},
		{"start dbus-daemon", e.startDBus},
		{"write the Ganesha configuration", e.writeConfig},
		{"start ganesha.nfsd", e.startGanesha},
		{"wait for NFS and the export", e.waitServing},
	}
	for _, st := range steps {
		if err := engine.RunStep(st.name, func() error { return st.fn(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// checkMountTable fails early, and says why, when the image lacks /etc/mtab:
// Ganesha would fail to create the export with "setmntent(/etc/mtab): No such
// file or directory" and keep running without it.
func (e *Engine) checkMountTable(context.Context) error {
	_, err := os.Stat(e.o.MountTable)
	return engine.Fail("check the mount table", err,
		"the server image must link "+e.o.MountTable+" to /proc/self/mounts (the pvnfs-server image does): Ganesha finds the export's filesystem there")
}

func (e *Engine) prepareRunDir(context.Context) error {
	if err := os.MkdirAll(e.o.RunDir, 0o700); err != nil {
		return engine.Fail("prepare the run directory", err, "--run-dir must be writable (an emptyDir in the pod)")
	}
	// A socket or pid file left by an earlier container would fool the waits below.
	for _, name := range []string{socketName, pidFileName} {
		if err := os.Remove(e.run(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.MkdirAll(e.RecoveryRoot(), 0o700)
}

func (e *Engine) startDBus(ctx context.Context) error {
	const step = "start dbus-daemon"
	conf := e.run(dbusConf)
	if err := os.WriteFile(conf, DBusConfig(e.o.RunDir), 0o600); err != nil {
		return engine.Fail(step, err, "--run-dir must be writable")
	}
	p, err := e.helpers.Start(helperDBus, command.Cmd{Name: e.o.DBusDaemonCmd,
		Args: []string{"--config-file=" + conf, "--nofork", "--nopidfile", "--nosyslog"}})
	if err != nil {
		return engine.Fail(step, err, "the server image must contain dbus-daemon (Debian package dbus-daemon)")
	}
	// The bus is up once its socket accepts connections.
	ctx, cancel := context.WithTimeout(ctx, e.o.CallTimeout)
	defer cancel()
	sock := e.run(socketName)
	err = poll(ctx, p, helperDBus, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return engine.Fail(step, err, "check dbus-daemon's messages above")
}

func (e *Engine) writeConfig(context.Context) error {
	conf := Config(e.s, e.o.RunDir)
	if err := os.WriteFile(e.run(configName), conf, 0o644); err != nil {
		return engine.Fail("write the Ganesha configuration", err, "--run-dir must be writable")
	}
	klog.InfoS("Ganesha configuration written", "file", e.run(configName), "exportDir", e.s.ExportDir,
		"filesystemID", fmt.Sprintf("%d.%d", e.s.FSIDMajor, e.s.FSIDMinor), "minorVersions", e.s.MinorVersions,
		"rootSquash", e.s.RootSquash, "recoveryRoot", e.RecoveryRoot())
	return nil
}

func (e *Engine) startGanesha(context.Context) error {
	_, err := e.helpers.Start(helperGanesha, command.Cmd{
		Name: e.o.GaneshaCmd,
		// -F: foreground, so this process supervises it; -L STDERR: its log goes to
		// the container log through our relay.
		Args: []string{"-F", "-f", e.run(configName), "-L", "STDERR", "-N", e.o.LogLevel, "-p", e.run(pidFileName)},
		// Ganesha connects to the "system" bus; this one is ours.
		Env: []string{"DBUS_SYSTEM_BUS_ADDRESS=" + e.busAddress},
	})
	return engine.Fail("start ganesha.nfsd", err, "the server image must contain ganesha.nfsd and its VFS backend (Debian packages nfs-ganesha, nfs-ganesha-vfs)")
}

// waitServing waits until NFS answers an RPC NULL call and Ganesha lists the export
// on D-Bus: then clients can mount.
func (e *Engine) waitServing(ctx context.Context) error {
	p := e.helpers.Process(helperGanesha)
	err := poll(ctx, p, helperGanesha, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, e.o.CallTimeout)
		defer cancel()
		if err := rpcprobe.Null(cctx, e.probeAddr, rpcprobe.ProgramNFS, rpcprobe.VersionNFS4); err != nil {
			return err
		}
		return e.checkExport(cctx)
	})
	return engine.Fail("wait for NFS and the export", err,
		"check ganesha.nfsd's messages above; the server container needs the capabilities listed in docs/security.md")
}

// checkExport asks Ganesha whether it serves the export.
func (e *Engine) checkExport(ctx context.Context) error {
	b, err := dial(ctx, e.busAddress)
	if err != nil {
		return err
	}
	defer b.Close()
	paths, err := b.exportPaths(ctx)
	if err != nil {
		return err
	}
	if paths[ExportID] != e.s.ExportDir {
		return fmt.Errorf("export %d of %s is not loaded in Ganesha (exports: %v)", ExportID, e.s.ExportDir, paths)
	}
	return nil
}

// Stop implements engine.Engine. Ganesha unexports and writes its client records on
// SIGTERM, then the bus goes.
func (e *Engine) Stop(ctx context.Context) error {
	return engine.RunStep("stop ganesha.nfsd and dbus-daemon", func() error { return e.helpers.Stop(ctx) })
}

// Checks implements engine.Engine.
func (e *Engine) Checks(ctx context.Context) []engine.Check {
	proc := engine.Check{Name: "ganesha-running"}
	if p := e.helpers.Process(helperGanesha); p == nil {
		proc.Err = errors.New("ganesha.nfsd was not started")
	} else {
		select {
		case <-p.Done():
			proc.Err = command.ExitError(helperGanesha, p)
		default:
		}
	}
	ctx, cancel := context.WithTimeout(ctx, e.o.CallTimeout)
	defer cancel()
	return []engine.Check{proc, {Name: "export-loaded", Err: e.checkExport(ctx)}}
}

// Stats implements engine.Engine from Ganesha's D-Bus counters.
func (e *Engine) Stats(ctx context.Context) (engine.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.CallTimeout)
	defer cancel()
	b, err := dial(ctx, e.busAddress)
	if err != nil {
		return engine.Stats{}, err
	}
	defer b.Close()
	st, err := b.stats(ctx)
	if err != nil {
		return engine.Stats{}, err
	}
	if p := e.helpers.Process(helperGanesha); p != nil {
		if tasks, err := os.ReadDir(filepath.Join(e.o.ProcDir, strconv.Itoa(p.Pid()), "task")); err == nil {
			st.Threads = len(tasks)
		}
	}
	return st, nil
}

// poll calls try every 100 ms until it succeeds, ctx ends, or helper p exits.
func poll(ctx context.Context, p command.Process, name string, try func(context.Context) error) error {
	if p == nil {
		return fmt.Errorf("%s was not started", name)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = try(ctx); last == nil {
			return nil
		}
		select {
		case <-p.Done():
			return command.ExitError(name, p)
		case <-ctx.Done():
			return fmt.Errorf("%s was not ready before the deadline: %w", name, last)
		case <-tick.C:
		}
	}
}
