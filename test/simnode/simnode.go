package simnode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/standin"
)

// Options describe a simulated node.
type Options struct {
	// Binary is the pvnfs-csi binary (see Build). Required.
	Binary string
	// Name is the node name, passed as --node-id. Required.
	Name string
	// DriverName is the CSI driver name; default volume.DefaultDriverName.
	DriverName string
	// StandInDir holds the stood-in NFS exports (<dir>/<server><share>) and the
	// fault markers; nodes that share it see the same "NFS servers". Required.
	StandInDir string
	// Dir holds the node's kubelet directory, socket and log. Empty: a new temp
	// directory, removed by Close.
	Dir string
	// Args are extra pvnfs-csi flags, e.g. "--mount-timeout=2s", "-v=4".
	Args []string
	// Log receives the plugin's output; nil: <Dir>/plugin.log.
	Log io.Writer
	// StartTimeout bounds how long starting the plugin may take until it answers
	// on its socket; default 30s.
	StartTimeout time.Duration
}

// Node is a simulated node. Its methods may be called from several goroutines.
type Node struct {
	// Node and Identity are CSI clients of the plugin. They stay valid across
	// Restart: the connection redials the socket.
	Node     csi.NodeClient
	Identity csi.IdentityClient

	opts       Options
	dir        string
	ownDir     bool
	socketDir  string // a short directory of its own when Dir is too long for a socket path
	kubelet    string
	socket     string
	standInDir string
	holder     *exec.Cmd
	holderPID  int
	holderDone chan struct{}
	nsLink     string
	conn       *grpc.ClientConn
	logFile    *os.File

	mu         sync.Mutex
	plugin     *exec.Cmd
	pluginDone chan struct{}
}

// StandInTag is the build tag that gives pvnfs-csi the NFS stand-in and its flag
// --nfs-stand-in-dir; the production build has neither.
const StandInTag = "pvnfs_standin"

// Build builds pvnfs-csi with the NFS stand-in (StandInTag) into outDir with the go
// command and returns its path. Run it from inside the pvnfs module (tests do: their
// working directory is their package's directory).
func Build(ctx context.Context, outDir string) (string, error) {
	out := filepath.Join(outDir, "pvnfs-csi")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", StandInTag, "-o", out, "github.com/pvnfs/pvnfs/cmd/pvnfs-csi")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build pvnfs-csi: %w\n%s", err, b)
	}
	return out, nil
}

// Start creates the node: its directories, the namespace holder, the plugin, and
// the client; it returns once the plugin answers. On error nothing is left behind.
func Start(ctx context.Context, opts Options) (n *Node, err error) {
	if opts.Binary == "" || opts.Name == "" || opts.StandInDir == "" {
		return nil, errors.New("simnode: Binary, Name and StandInDir are required")
	}
	for _, tool := range []string{"nsenter", "sleep"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("simnode needs %s (util-linux, coreutils): %w", tool, err)
		}
	}
	if opts.DriverName == "" {
		opts.DriverName = volume.DefaultDriverName
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	n = &Node{opts: opts, dir: opts.Dir}
	defer func() {
		if err != nil {
			_ = n.Close()
			n = nil
		}
	}()
	if n.dir == "" {
		if n.dir, err = os.MkdirTemp("", "simnode-"+opts.Name+"-"); err != nil {
			return n, err
		}
		n.ownDir = true
	}
	if n.dir, err = filepath.Abs(n.dir); err != nil {
		return n, err
	}
	n.kubelet = filepath.Join(n.dir, "kubelet")
	for _, d := range []string{filepath.Join(n.kubelet, "plugins/kubernetes.io/csi", opts.DriverName), filepath.Join(n.kubelet, "pods"), opts.StandInDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return n, err
		}
	}
	if n.standInDir, err = filepath.EvalSymlinks(opts.StandInDir); err != nil {
		return n, err
	}
	n.socket = filepath.Join(n.dir, "csi.sock")
	if len(n.socket) > 100 { // sun_path holds 108 bytes
		if n.socketDir, err = os.MkdirTemp("", "simnode-sock-"); err != nil {
			return n, err
		}
		n.socket = filepath.Join(n.socketDir, "csi.sock")
	}
	if opts.Log == nil {
		if n.logFile, err = os.OpenFile(filepath.Join(n.dir, "plugin.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return n, err
		}
		n.opts.Log = n.logFile
	}
	if err := n.startHolder(); err != nil {
		return n, err
	}
	n.conn, err = grpc.NewClient("unix://"+n.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return n, err
	}
	n.Node, n.Identity = csi.NewNodeClient(n.conn), csi.NewIdentityClient(n.conn)
	return n, n.StartPlugin(ctx)
}

// startHolder starts the process that owns the node's mount namespace. Go makes
// "/" rprivate in the new namespace, so nothing mounted in it reaches the host.
func (n *Node) startHolder() error {
	n.holder = exec.Command("sleep", "infinity")
	n.holder.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := n.holder.Start(); err != nil {
		return fmt.Errorf("starting the mount namespace holder (needs root): %w", err)
	}
	n.holderPID = n.holder.Process.Pid
	n.holderDone = make(chan struct{})
	go func() { _ = n.holder.Wait(); close(n.holderDone) }()
	link, err := os.Readlink(n.nsPath())
	if err != nil {
		return err
	}
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	if link == self {
		return errors.New("the holder shares the test's mount namespace: unsharing it failed")
	}
	n.nsLink = link
	return nil
}

// StartPlugin starts the plugin in the node's mount namespace and waits until it
// answers. It fails when a plugin is already running.
func (n *Node) StartPlugin(ctx context.Context) error {
	n.mu.Lock()
	if n.plugin != nil {
		n.mu.Unlock()
		return errors.New("simnode: the plugin is already running")
	}
	args := append([]string{"--mount=" + n.nsPath(), "--", n.opts.Binary,
		"--mode=node", "--node-id=" + n.opts.Name, "--driver-name=" + n.opts.DriverName,
		"--endpoint=unix://" + n.socket, "--nfs-stand-in-dir=" + n.standInDir}, n.opts.Args...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = n.opts.Log, n.opts.Log
	// nsenter execs the plugin, so this is the plugin's pid; it dies with the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		return fmt.Errorf("starting the plugin: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.plugin, n.pluginDone = cmd, done
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, n.opts.StartTimeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		resp, err := n.Identity.Probe(pctx, &csi.ProbeRequest{})
		pcancel()
		if err == nil && resp.GetReady().GetValue() {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("the plugin of node %s exited while starting: %v; see its log in %s", n.opts.Name, cmd.ProcessState, n.dir)
		case <-ctx.Done():
			return fmt.Errorf("the plugin of node %s does not answer on %s: %v (last error %v)", n.opts.Name, n.socket, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopPlugin stops the plugin gracefully (SIGTERM, SIGKILL after 10s). The
// namespace and its mounts stay.
func (n *Node) StopPlugin() error { return n.stopPlugin(syscall.SIGTERM) }

// KillPlugin kills the plugin with SIGKILL, as a crash or an OOM kill would. The
// namespace and its mounts stay.
func (n *Node) KillPlugin() error { return n.stopPlugin(syscall.SIGKILL) }

func (n *Node) stopPlugin(sig syscall.Signal) error {
	n.mu.Lock()
	cmd, done := n.plugin, n.pluginDone
	n.plugin, n.pluginDone = nil, nil
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-done
	if sig == syscall.SIGTERM {
		return fmt.Errorf("the plugin of node %s ignored SIGTERM for 10s and was killed", n.opts.Name)
	}
	return nil
}

// Restart stops the plugin gracefully and starts a new one into the same mount
// namespace, as a DaemonSet rollout does.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.StopPlugin(); err != nil {
		return err
	}
	return n.StartPlugin(ctx)
}

// PluginPID is the plugin's process ID, 0 when it is not running.
func (n *Node) PluginPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.plugin == nil {
		return 0
	}
	return n.plugin.Process.Pid
}

// Close kills every process in the node's mount namespace (the plugin, its
// helpers, the holder), so that the namespace and all its mounts vanish, closes
// the client and removes the node's directory if Start created it.
func (n *Node) Close() error {
	var errs []error
	if err := n.KillPlugin(); err != nil {
		errs = append(errs, err)
	}
	if n.conn != nil {
		_ = n.conn.Close()
	}
	if n.holder != nil && n.holder.Process != nil {
		if n.nsLink != "" {
			n.killNamespace()
		}
		_ = n.holder.Process.Kill()
		<-n.holderDone
		n.holder = nil
	}
	if n.logFile != nil {
		_ = n.logFile.Close()
	}
	if n.ownDir {
		if err := os.RemoveAll(n.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if n.socketDir != "" {
		_ = os.RemoveAll(n.socketDir)
	}
	return errors.Join(errs...)
}

// killNamespace kills the processes left in the namespace other than the holder:
// helpers the plugin started (a hung mount helper outlives a killed plugin).
func (n *Node) killNamespace() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == n.holderPID {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns/mnt")); err == nil && link == n.nsLink {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Name is the node name.
func (n *Node) Name() string { return n.opts.Name }

// Dir is the node's directory.
func (n *Node) Dir() string { return n.dir }

// KubeletDir is the node's kubelet root directory (like /var/lib/kubelet).
func (n *Node) KubeletDir() string { return n.kubelet }

// Socket is the plugin's CSI socket.
func (n *Node) Socket() string { return n.socket }

// LogPath is the plugin's log file, "" when Options.Log was given.
func (n *Node) LogPath() string {
	if n.logFile == nil {
		return ""
	}
	return n.logFile.Name()
}

// HolderPID is the process that owns the node's mount namespace.
func (n *Node) HolderPID() int { return n.holderPID }

func (n *Node) nsPath() string { return fmt.Sprintf("/proc/%d/ns/mnt", n.holderPID) }

// StagingPath is where kubelet stages a volume:
// <kubelet>/plugins/kubernetes.io/csi/<driver>/<sha256 of the volume handle>/globalmount.
func (n *Node) StagingPath(volumeHandle string) string {
	sum := sha256.Sum256([]byte(volumeHandle))
	return filepath.Join(n.kubelet, "plugins/kubernetes.io/csi", n.opts.DriverName, hex.EncodeToString(sum[:]), "globalmount")
}

// TargetPath is where kubelet publishes a volume for a pod:
// <kubelet>/pods/<pod UID>/volumes/kubernetes.io~csi/<PV name>/mount.
func (n *Node) TargetPath(podUID, pvName string) string {
	return filepath.Join(n.kubelet, "pods", podUID, "volumes/kubernetes.io~csi", pvName, "mount")
}

// InNode is path as seen inside the node's mount namespace, for the test process:
// /proc/<holder>/root/<path>.
func (n *Node) InNode(path string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.holderPID), path)
}

// ReadFile reads a file as a process on the node sees it (through its mounts).
func (n *Node) ReadFile(path string) ([]byte, error) { return os.ReadFile(n.InNode(path)) }

// WriteFile writes a file as a process on the node would.
func (n *Node) WriteFile(path string, data []byte) error {
	return os.WriteFile(n.InNode(path), data, 0o644)
}

// Mounts is the node's mount table, with the stand-in's bind mounts shown as the
// nfs4 mounts they stand for.
func (n *Node) Mounts() ([]mounter.MountPoint, error) {
	table, err := mounter.ReadMountInfo(fmt.Sprintf("/proc/%d/mountinfo", n.holderPID))
	if err != nil {
		return nil, err
	}
	return standin.Translate(n.standInDir, table), nil
}

// VolumeMounts are the mounts of one NFS export on a node, by kind.
type VolumeMounts struct {
	// NFS are the NFS-leg mounts: in kubelet's plugins directory (staging paths).
	NFS []string
	// Pods are the bind mounts in pods' volume directories.
	Pods []string
	// Other are mounts of the export anywhere else; there should be none.
	Other []string
}

// Total is the number of mounts of the export.
func (v VolumeMounts) Total() int { return len(v.NFS) + len(v.Pods) + len(v.Other) }

// VolumeMounts lists the node's mounts of the export source ("10.96.0.10:/data/export").
func (n *Node) VolumeMounts(source string) (VolumeMounts, error) {
	table, err := n.Mounts()
	if err != nil {
		return VolumeMounts{}, err
	}
	var v VolumeMounts
	for _, m := range table {
		if m.Source != source || (m.FSType != "nfs4" && m.FSType != "nfs") {
			continue
		}
		switch {
		case strings.HasPrefix(m.Path, filepath.Join(n.kubelet, "plugins")+"/"):
			v.NFS = append(v.NFS, m.Path)
		case strings.HasPrefix(m.Path, filepath.Join(n.kubelet, "pods")+"/"):
			v.Pods = append(v.Pods, m.Path)
		default:
			v.Other = append(v.Other, m.Path)
		}
	}
	return v, nil
}
