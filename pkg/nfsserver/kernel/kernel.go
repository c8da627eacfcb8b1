package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// Names of the helpers, as they appear in logs and errors.
const (
	helperMountd  = "rpc.mountd"
	helperNfsdcld = "nfsdcld"
)

// Remedies shared by several steps.
const (
	remedyNoNfsd = "nfsd is not available on this node: load the nfsd kernel module on the node " +
		"(modprobe nfsd, and add nfsd to /etc/modules-load.d), or use serverEngine: ganesha in the StorageClass"
	remedyPrivileged = "the kernel engine needs a privileged server container: check the pod's securityContext " +
		"and that the namespace's Pod Security admission allows privileged pods"
	remedyHungNfsd = "nfsd on this node does not answer: check the node's kernel log (dmesg) for nfsd errors; " +
		"a node reboot may be needed"
)

// StateSubdir is the directory below the state directory where nfsdcld keeps its
// client database.
const StateSubdir = "nfsdcld"

// Engine serves the volume with the kernel's nfsd.
type Engine struct {
	s       engine.Settings
	o       Options
	run     command.Runner
	helpers *command.Group
	// hostname returns the pod's hostname, which nfsd announces as its NFSv4.1
	// server owner and scope.
	hostname func() (string, error)
}

var _ engine.Engine = (*Engine)(nil)

// New returns the kernel engine for s. It starts nothing.
func New(s engine.Settings, o Options, run command.Runner) (*Engine, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if s.BindAddress != "" {
		return nil, fmt.Errorf("--bind-address=%s: the kernel engine listens on every address of the pod; leave it empty", s.BindAddress)
	}
	return &Engine{
		s: s, o: o, run: run,
		helpers:  command.NewGroup(run, 5*time.Second),
		hostname: os.Hostname,
	}, nil
}

// Name implements engine.Engine.
func (e *Engine) Name() string { return serverconfig.EngineKernel }

// Exited implements engine.Engine.
func (e *Engine) Exited() <-chan struct{} { return e.helpers.Exited() }

// ExitErr implements engine.Engine.
func (e *Engine) ExitErr() error { return e.helpers.Err() }

func (e *Engine) nfsd(name string) string { return filepath.Join(e.o.NfsdDir, name) }

func (e *Engine) cldStorageDir() string { return filepath.Join(e.s.StateDir, StateSubdir) }

// Start implements engine.Engine: every step in order, each logged and named in its
// error.
func (e *Engine) Start(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"check the pod's hostname", e.checkHostname},
		{"mount the nfsd filesystem", e.mountNfsd},
		{"stop nfsd left running in this pod", e.stopLeftover},
		{"mount rpc_pipefs", e.mountPipefs},
		{"configure nfsd versions, lease and grace", e.configure},
		{"build the NFSv4 pseudo-root", e.buildPseudoRoot},
		{"write the exports file", e.writeExports},
		{"start nfsdcld", e.startNfsdcld},
		{"start rpc.mountd", e.startMountd},
		{"load the export", e.loadExport},
		{"open the NFS port", e.openPort},
		{"start the nfsd threads", e.startThreads},
		{"check NFSv4 client tracking", e.checkClientTracking},
	}
	for _, st := range steps {
		if err := engine.RunStep(st.name, func() error { return st.fn(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// checkHostname warns when the pod's hostname is not the stable server name: nfsd
// announces the hostname as its NFSv4.1 server scope, and clients refuse to reclaim
// state from a server whose scope changed, as a new pod's generated name does.
func (e *Engine) checkHostname(context.Context) error {
	h, err := e.hostname()
	if err != nil {
		return fmt.Errorf("read hostname: %w", err)
	}
	if h != e.s.ServerName {
		klog.ErrorS(nil, "The pod's hostname changes with every new pod, so NFSv4.1 clients will not reclaim their locks and opens after a failover: set the server pod's spec.hostname",
			"hostname", h, "want", e.s.ServerName)
	}
	return nil
}

// mountNfsd mounts the nfsd filesystem unless it already is (a restarted container
// of the same pod finds it unmounted: mounts belong to the container).
func (e *Engine) mountNfsd(ctx context.Context) error {
	if _, err := os.Stat(e.nfsd("threads")); err == nil {
		klog.InfoS("nfsd filesystem already mounted", "dir", e.o.NfsdDir)
		return nil
	}
	if err := e.mount(ctx, "nfsd", "nfsd", e.o.NfsdDir); err != nil {
		return engine.Fail("mount the nfsd filesystem", err, e.mountRemedy("nfsd"))
	}
	if _, err := os.Stat(e.nfsd("threads")); err != nil {
		return engine.Fail("mount the nfsd filesystem", fmt.Errorf("mounted, but %w", err), remedyNoNfsd)
	}
	return nil
}

// mountRemedy tells a missing kernel module from missing privileges.
func (e *Engine) mountRemedy(fstype string) string {
	b, err := os.ReadFile(filepath.Join(e.o.ProcDir, "filesystems"))
	if err == nil && !bytes.Contains(b, []byte("\t"+fstype+"\n")) {
		return remedyNoNfsd
	}
	return remedyPrivileged
}

func (e *Engine) mount(ctx context.Context, fstype, source, dir string) error {
	return e.runMount(ctx, dir, "-t", fstype, source, dir)
}

// runMount runs mount(8) with args, creating the mount point dir first.
func (e *Engine) runMount(ctx context.Context, dir string, args ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.o.CommandTimeout)
	defer cancel()
	out, err := e.run.Run(ctx, command.Cmd{Name: e.o.MountCmd, Args: args})
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// buildPseudoRoot gives nfsd an NFSv4 pseudo-root it can export. Without one,
// rpc.mountd builds it on the container's root filesystem, which is an overlayfs
// under every container runtime, and the kernel refuses to export overlayfs
// ("exp_export: export of invalid fs type"): no client could mount the volume. A
// small tmpfs instead holds the export's path with the export bound there, and
// nfs.conf's [exports] rootdir makes it the root of every export path. Clients
// still mount /data/export, and walking the pseudo-root shows them nothing of the
// container or the backend volume but the export.
func (e *Engine) buildPseudoRoot(ctx context.Context) error {
	const step = "build the NFSv4 pseudo-root"
	root := e.o.NFSRootDir
	if err := e.runMount(ctx, root, "-t", "tmpfs", "-o", "mode=0755,size=1m", "pvnfs-nfsroot", root); err != nil {
		return engine.Fail(step, err, remedyPrivileged)
	}
	target := filepath.Join(root, e.s.ExportDir)
	if err := e.runMount(ctx, target, "--bind", e.s.ExportDir, target); err != nil {
		return engine.Fail(step, err, remedyPrivileged)
	}
	if err := os.MkdirAll(filepath.Dir(e.o.NFSConfFile), 0o755); err != nil {
		return engine.Fail(step, err, "the container's "+filepath.Dir(e.o.NFSConfFile)+" must be writable")
	}
	conf := fmt.Sprintf("# Written by pvnfs-server; rewritten at every start.\n[exports]\nrootdir = %s\n", root)
	if err := os.WriteFile(e.o.NFSConfFile, []byte(conf), 0o644); err != nil {
		return engine.Fail(step, err, "the container's "+filepath.Dir(e.o.NFSConfFile)+" must be writable")
	}
	klog.InfoS("NFSv4 pseudo-root built", "root", root, "export", e.s.ExportDir, "conf", e.o.NFSConfFile)
	return nil
}

// stopLeftover stops nfsd threads a crashed earlier container of this pod left
// running: nfsd belongs to the pod's network namespace, which outlives containers,
// and its versions, lease and grace cannot be set while it runs.
func (e *Engine) stopLeftover(ctx context.Context) error {
	threads, err := e.readInt(ctx, "threads")
	if err != nil {
		return engine.Fail("stop nfsd left running in this pod", err, remedyHungNfsd)
	}
	ports, err := e.readCtl(ctx, "portlist")
	if err != nil {
		return engine.Fail("stop nfsd left running in this pod", err, remedyHungNfsd)
	}
	if threads == 0 && strings.TrimSpace(ports) == "" {
		return nil
	}
	// As in Stop, the threads alone: stopping them drops the namespace's export
	// cache, and the earlier container's exports table went with its filesystem.
	klog.InfoS("nfsd is running from an earlier container of this pod; stopping it", "threads", threads, "listeners", strings.TrimSpace(ports))
	if err := e.writeCtl(ctx, "threads", "0\n"); err != nil {
		return engine.Fail("stop nfsd left running in this pod", err, remedyHungNfsd)
	}
	if threads, err = e.readInt(ctx, "threads"); err != nil || threads != 0 {
		return engine.Fail("stop nfsd left running in this pod",
			fmt.Errorf("nfsd still runs %d threads (%v)", threads, err), "delete the server pod so that it starts in a new network namespace")
	}
	return nil
}

func (e *Engine) mountPipefs(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(e.o.RPCPipefsDir, "nfsd")); err == nil {
		klog.InfoS("rpc_pipefs already mounted", "dir", e.o.RPCPipefsDir)
		return nil
	}
	if err := e.mount(ctx, "rpc_pipefs", "sunrpc", e.o.RPCPipefsDir); err != nil {
		return engine.Fail("mount rpc_pipefs", err, e.mountRemedy("rpc_pipefs"))
	}
	return nil
}

// configure sets the versions, lease and grace. The kernel refuses them once the
// NFS service exists, so this comes before the port and the threads.
func (e *Engine) configure(ctx context.Context) error {
	const step = "configure nfsd versions, lease and grace"
	if err := e.writeCtl(ctx, "versions", VersionsRequest(e.s)); err != nil {
		return engine.Fail(step, err, "the node's kernel does not serve the NFS versions asked for; serve only versions it supports (--nfs-versions)")
	}
	got, err := e.readCtl(ctx, "versions")
	if err != nil {
		return engine.Fail(step, err, remedyHungNfsd)
	}
	if err := checkVersions(got, e.s); err != nil {
		return engine.Fail(step, err, "the node's kernel does not serve the NFS versions asked for")
	}
	for _, t := range []struct {
		file string
		v    int
	}{{"nfsv4leasetime", e.s.LeaseSeconds}, {"nfsv4gracetime", e.s.GraceSeconds}} {
		if err := e.writeCtl(ctx, t.file, strconv.Itoa(t.v)+"\n"); err != nil {
			return engine.Fail(step, err, "nfsd takes lease and grace times from 10 to 3600 seconds")
		}
	}
	klog.InfoS("nfsd configured", "versions", strings.TrimSpace(got), "leaseSeconds", e.s.LeaseSeconds, "graceSeconds", e.s.GraceSeconds)
	return nil
}

func (e *Engine) writeExports(context.Context) error {
	content := ExportsFile(e.s)
	if err := os.MkdirAll(filepath.Dir(e.o.ExportsFile), 0o755); err != nil {
		return err
	}
	tmp := e.o.ExportsFile + ".tmp"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, e.o.ExportsFile); err != nil {
		return err
	}
	klog.InfoS("Exports file written", "file", e.o.ExportsFile, "export", strings.TrimSpace(string(content[bytes.IndexByte(content, '\n')+1:])))
	return nil
}

// startNfsdcld starts the client tracking daemon and waits until it is ready for
// nfsd: nfsd looks for nfsdcld once, when its threads start, and gives it one
// second to open the upcall pipe before it falls back to no client tracking at
// all in a container (so that no client can reclaim its state after a restart).
// nfsdcld opens the pipe from its event loop, which it enters only after it has
// opened and set up its database on the backend volume: on slow storage that
// alone takes seconds. It is ready once it watches rpc_pipefs for the pipe
// (an inotify descriptor) or holds the pipe.
func (e *Engine) startNfsdcld(ctx context.Context) error {
	const step = "start nfsdcld"
	if err := os.MkdirAll(e.cldStorageDir(), 0o700); err != nil {
		return engine.Fail(step, err, "the backend volume must be writable by root")
	}
	p, err := e.helpers.Start(helperNfsdcld, command.Cmd{Name: e.o.NfsdcldCmd,
		Args: []string{"--foreground", "--pipefsdir", e.o.RPCPipefsDir, "--storagedir", e.cldStorageDir()}})
	if err != nil {
		return engine.Fail(step, err, "the server image must contain nfsdcld (Debian package nfs-kernel-server)")
	}
	if err := e.waitOpen(ctx, helperNfsdcld, p, e.o.HelperTimeout, inotifyFile, e.cldPipe()); err != nil {
		return engine.Fail(step, err, "check nfsdcld's messages above; it keeps its database in "+e.cldStorageDir()+
			" on the backend volume, which must be writable and answer within "+e.o.HelperTimeout.String())
	}
	return nil
}

// inotifyFile is how /proc/PID/fd shows an inotify descriptor.
const inotifyFile = "anon_inode:inotify"

func (e *Engine) cldPipe() string { return filepath.Join(e.o.RPCPipefsDir, "nfsd", "cld") }

func (e *Engine) startMountd(ctx context.Context) error {
	const step = "start rpc.mountd"
	// -N 2 -N 3: NFSv4 only, so rpc.mountd opens no MOUNT listener and needs no
	// rpcbind; it only answers the kernel's export upcalls.
	p, err := e.helpers.Start(helperMountd, command.Cmd{Name: e.o.MountdCmd,
		Args: []string{"--foreground", "--no-nfs-version", "2", "--no-nfs-version", "3"}})
	if err != nil {
		return engine.Fail(step, err, "the server image must contain rpc.mountd (Debian package nfs-kernel-server)")
	}
	if err := e.waitOpen(ctx, helperMountd, p, e.o.HelperTimeout, "/net/rpc/nfsd.export/channel"); err != nil {
		return engine.Fail(step, err, "check rpc.mountd's messages above")
	}
	return nil
}

func (e *Engine) loadExport(ctx context.Context) error {
	const step = "load the export"
	if _, err := e.runExportfs(ctx, "-r"); err != nil {
		return engine.Fail(step, err, "check the exports file "+e.o.ExportsFile+" and exportfs's message")
	}
	etab, err := engine.ReadFile(ctx, filepath.Join(e.o.NFSStateDir, "etab"))
	if err == nil {
		err = etabHasExport(etab, e.s)
	}
	return engine.Fail(step, err, "exportfs did not load the export: check its messages above")
}

func (e *Engine) runExportfs(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.CommandTimeout)
	defer cancel()
	out, err := e.run.Run(ctx, command.Cmd{Name: e.o.ExportfsCmd, Args: args})
	if len(bytes.TrimSpace(out)) > 0 {
		klog.InfoS("exportfs output", "args", strings.Join(args, " "), "output", string(bytes.TrimSpace(out)))
	}
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (e *Engine) openPort(ctx context.Context) error {
	err := e.writeCtl(ctx, "portlist", fmt.Sprintf("tcp %d\n", e.s.NFSPort))
	if errors.Is(err, syscall.EADDRINUSE) {
		return engine.Fail("open the NFS port", err, fmt.Sprintf("another process in the pod listens on port %d", e.s.NFSPort))
	}
	return engine.Fail("open the NFS port", err, remedyHungNfsd)
}

func (e *Engine) startThreads(ctx context.Context) error {
	const step = "start the nfsd threads"
	if err := e.writeCtl(ctx, "threads", fmt.Sprintf("%d\n", e.s.Threads)); err != nil {
		return engine.Fail(step, err, remedyHungNfsd)
	}
	n, err := e.readInt(ctx, "threads")
	if err != nil {
		return engine.Fail(step, err, remedyHungNfsd)
	}
	if n != e.s.Threads {
		return engine.Fail(step, fmt.Errorf("nfsd runs %d threads, %d were asked for", n, e.s.Threads), remedyHungNfsd)
	}
	klog.InfoS("nfsd threads started", "threads", n, "port", e.s.NFSPort)
	return nil
}

// trackingAttempts bounds the restarts of the threads in checkClientTracking.
const trackingAttempts = 3

// checkClientTracking verifies that nfsd found nfsdcld: the kernel creates the
// upcall pipe when its threads start, and nfsdcld opens it at once. Without it,
// nfsd keeps no client records and clients cannot reclaim state after a restart.
// nfsd gives nfsdcld one second; when it gave up before nfsdcld opened the pipe,
// the threads are started again (nfsd sets up tracking anew each time), which
// costs nothing this early: no client has state yet.
func (e *Engine) checkClientTracking(ctx context.Context) error {
	const step = "check NFSv4 client tracking"
	p := e.helperProcess(helperNfsdcld)
	var err error
	for attempt := 1; attempt <= trackingAttempts; attempt++ {
		if err = e.waitOpen(ctx, helperNfsdcld, p, e.o.TrackingTimeout, e.cldPipe()); err == nil {
			return nil
		}
		if p == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-p.Done():
			return engine.Fail(step, command.ExitError(helperNfsdcld, p), "check nfsdcld's messages above")
		default:
		}
		klog.ErrorS(err, "nfsd started without NFSv4 client tracking; starting its threads again", "attempt", attempt)
		if err := e.writeCtl(ctx, "threads", "0\n"); err != nil {
			return engine.Fail(step, err, remedyHungNfsd)
		}
		if err := e.startThreads(ctx); err != nil {
			return err
		}
	}
	return engine.Fail(step, fmt.Errorf("nfsd started %d times without nfsdcld: %w", trackingAttempts, err),
		"nfsdcld did not open nfsd's upcall pipe within the second the kernel waits for it: check nfsdcld's messages above and the node's kernel log "+
			"(dmesg: \"NFSD: Unable to initialize client recovery tracking\"); the node's kernel must track NFSv4 clients through nfsdcld in a container (verified with Linux 6.1)")
}

// Stop implements engine.Engine: stop the threads, then the helpers. Each step
// runs even when an earlier one failed, so nothing is left behind.
//
// The threads go first, as systemd's nfs-server unit does it. Unexporting first
// (exportfs -ua) leaves nfsd running without the export for as long as that
// takes (up to a second under load), and every request in that window is
// refused with NFS4ERR_ACCESS, which the client's hard mount does not retry:
// applications saw EACCES on open, write and fsync. With the threads stopped,
// clients see a server that does not answer, wait, and reclaim their state from
// the next one; stopping the threads also drops the kernel's export cache of
// this network namespace, so no unexport is needed.
func (e *Engine) Stop(ctx context.Context) error {
	var errs []error
	if err := engine.RunStep("stop the nfsd threads", func() error {
		if _, err := os.Stat(e.nfsd("threads")); err != nil {
			return nil // never mounted: nothing runs
		}
		return e.writeCtl(ctx, "threads", "0\n")
	}); err != nil {
		errs = append(errs, err)
	}
	if err := engine.RunStep("stop the helpers", func() error { return e.helpers.Stop(ctx) }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Checks implements engine.Engine.
func (e *Engine) Checks(ctx context.Context) []engine.Check {
	threads := engine.Check{Name: "nfsd-threads"}
	if n, err := e.readInt(ctx, "threads"); err != nil {
		threads.Err = err
	} else if n < 1 {
		threads.Err = fmt.Errorf("nfsd runs no threads")
	}
	export := engine.Check{Name: "export-loaded"}
	if etab, err := engine.ReadFile(ctx, filepath.Join(e.o.NFSStateDir, "etab")); err != nil {
		export.Err = err
	} else {
		export.Err = etabHasExport(etab, e.s)
	}
	return []engine.Check{threads, export}
}

// Stats implements engine.Engine from the kernel's per-namespace statistics.
func (e *Engine) Stats(ctx context.Context) (engine.Stats, error) {
	b, err := engine.ReadFile(ctx, filepath.Join(e.o.ProcDir, "net", "rpc", "nfsd"))
	if err != nil {
		return engine.Stats{}, err
	}
	st, err := ParseStats(b)
	if err != nil {
		return engine.Stats{}, err
	}
	// The threads file is exact; the th line is missing on some kernels.
	if n, err := e.readInt(ctx, "threads"); err == nil {
		st.Threads = n
	}
	st.Clients = -1
	if entries, err := os.ReadDir(e.nfsd("clients")); err == nil {
		st.Clients = 0
		for _, d := range entries {
			if d.IsDir() {
				st.Clients++
			}
		}
	}
	return st, nil
}

func (e *Engine) readCtl(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.o.CommandTimeout)
	defer cancel()
	b, err := engine.ReadFile(ctx, e.nfsd(name))
	return string(b), err
}

func (e *Engine) writeCtl(ctx context.Context, name, data string) error {
	ctx, cancel := context.WithTimeout(ctx, e.o.CommandTimeout)
	defer cancel()
	if err := engine.WriteControl(ctx, e.nfsd(name), []byte(data)); err != nil {
		return fmt.Errorf("write %q to %s: %w", strings.TrimSpace(data), e.nfsd(name), err)
	}
	return nil
}

func (e *Engine) readInt(ctx context.Context, name string) (int, error) {
	s, err := e.readCtl(ctx, name)
	if err != nil {
		return 0, err
	}
	// threads may list one count per pool: "8" or "4 4".
	total := 0
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a number", e.nfsd(name), strings.TrimSpace(s))
		}
		total += n
	}
	return total, nil
}

func (e *Engine) helperProcess(name string) command.Process { return e.helpers.Process(name) }

// waitOpen waits up to timeout until helper p has a file open whose path ends
// with one of suffixes: the sign that it has reached its kernel interface. It
// fails early when p exits.
func (e *Engine) waitOpen(ctx context.Context, name string, p command.Process, timeout time.Duration, suffixes ...string) error {
	if p == nil {
		return fmt.Errorf("%s is not running", name)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fdDir := filepath.Join(e.o.ProcDir, strconv.Itoa(p.Pid()), "fd")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if file, ok := hasOpen(fdDir, suffixes); ok {
			klog.InfoS("Helper is connected", "helper", name, "pid", p.Pid(), "file", file)
			return nil
		}
		select {
		case <-p.Done():
			return command.ExitError(name, p)
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) did not open %s within %s", name, p.Pid(), strings.Join(suffixes, " or "), timeout)
		case <-tick.C:
		}
	}
}

// hasOpen returns the first open file in fdDir that ends with one of suffixes.
func hasOpen(fdDir string, suffixes []string) (string, bool) {
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return "", false
	}
	for _, d := range entries {
		target, err := os.Readlink(filepath.Join(fdDir, d.Name()))
		if err != nil {
			continue
		}
		for _, s := range suffixes {
			if strings.HasSuffix(target, s) {
				return target, true
			}
		}
	}
	return "", false
}
