package guest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// NodePlugin is pvnfs-csi --mode=node running in a node's namespaces, as its
// DaemonSet pod runs it (host network, the node's mount namespace), with a CSI
// client on its socket.
type NodePlugin struct {
	Node *Node
	Log  string
	csi.NodeClient

	cmd  *exec.Cmd
	conn *grpc.ClientConn
	done chan struct{}
}

// pluginSocket is the node plugin's socket in the node, where kubelet finds it.
const pluginSocket = KubeletDir + "/plugins/" + volume.DefaultDriverName + "/csi.sock"

// StartNodePlugin starts the node plugin in n with extra flags and connects to it.
func StartNodePlugin(ctx context.Context, n *Node, flags ...string) (*NodePlugin, error) {
	p := &NodePlugin{Node: n, Log: filepath.Join(OutDir, "plugins", n.Name+".log"), done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--mode=node", "--endpoint=unix://" + pluginSocket, "--node-id=" + n.Name, "--v=4"}, flags...)
	p.cmd = n.Command(filepath.Join(BinDir, "pvnfs-csi"), args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	sock := n.Path(pluginSocket)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("the node plugin on %s exited at start; see %s", n.Name, p.Log)
		case <-ctx.Done():
			p.Stop()
			return nil, fmt.Errorf("the node plugin on %s did not create its socket: %w", n.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	p.conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.Stop()
		return nil, err
	}
	p.NodeClient = csi.NewNodeClient(p.conn)
	return p, nil
}

// PID is the plugin's process ID in the guest.
func (p *NodePlugin) PID() int { return p.cmd.Process.Pid }

// BlockedThreads returns the plugin's threads that sleep uninterruptibly (state
// D): calls stuck in the kernel on an NFS server that does not answer.
func (p *NodePlugin) BlockedThreads() ([]string, error) {
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.PID()), "task"))
	if err != nil {
		return nil, err
	}
	var blocked []string
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID()), "task", task.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ...: the state follows the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) && s[i+2] == 'D' {
			wchan, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID()), "task", task.Name(), "wchan"))
			blocked = append(blocked, task.Name()+" in "+string(wchan))
		}
	}
	return blocked, nil
}

// Stop stops the plugin (SIGTERM, then SIGKILL).
func (p *NodePlugin) Stop() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kubelet drives a node plugin the way kubelet does for one CSI volume: the
// staging and target paths it chooses, the requests it sends, and the periodic
// republish of every published target when the CSIDriver asks for it.
type Kubelet struct {
	Plugin *NodePlugin
	// VolumeID and Context are the PV's volume handle and volume attributes;
	// MountFlags its StorageClass's mountOptions.
	VolumeID   string
	Context    map[string]string
	MountFlags []string

	mu         sync.Mutex
	published  map[string]string // pod UID -> target path
	republishN int
	republishE []error
}

// StagingPath is kubelet's staging path of the volume:
// plugins/kubernetes.io/csi/<driver>/<sha256 of the handle>/globalmount.
func (k *Kubelet) StagingPath() string {
	sum := sha256.Sum256([]byte(k.VolumeID))
	return filepath.Join(KubeletDir, "plugins/kubernetes.io/csi", volume.DefaultDriverName, hex.EncodeToString(sum[:]), "globalmount")
}

// TargetPath is a pod's target path of the volume.
func (k *Kubelet) TargetPath(podUID string) string {
	return filepath.Join(KubeletDir, "pods", podUID, "volumes/kubernetes.io~csi", "pv-"+k.VolumeID, "mount")
}

func (k *Kubelet) capability() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: k.MountFlags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
}

// kubeletTimeout is how long kubelet lets a CSI call run.
const kubeletTimeout = 2 * time.Minute

// Stage calls NodeStageVolume.
func (k *Kubelet) Stage(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, kubeletTimeout)
	defer cancel()
	// kubelet creates the staging directory's parent.
	if err := os.MkdirAll(filepath.Dir(k.Plugin.Node.Path(k.StagingPath())), 0o750); err != nil {
		return err
	}
	_, err := k.Plugin.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
		VolumeId: k.VolumeID, StagingTargetPath: k.StagingPath(), VolumeCapability: k.capability(), VolumeContext: k.Context})
	return err
}

// Publish calls NodePublishVolume for a pod and records the target for
// republishing.
func (k *Kubelet) Publish(ctx context.Context, podUID string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeletTimeout)
	defer cancel()
	target := k.TargetPath(podUID)
	// kubelet creates the target's parent (and writes vol_data.json there).
	if err := os.MkdirAll(filepath.Dir(k.Plugin.Node.Path(target)), 0o750); err != nil {
		return "", err
	}
	_, err := k.Plugin.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: k.VolumeID, StagingTargetPath: k.StagingPath(), TargetPath: target,
		VolumeCapability: k.capability(), VolumeContext: k.Context})
	if err == nil {
		k.mu.Lock()
		if k.published == nil {
			k.published = map[string]string{}
		}
		k.published[podUID] = target
		k.mu.Unlock()
	}
	return target, err
}

// Unpublish calls NodeUnpublishVolume for a pod.
func (k *Kubelet) Unpublish(ctx context.Context, podUID string) error {
	ctx, cancel := context.WithTimeout(ctx, kubeletTimeout)
	defer cancel()
	_, err := k.Plugin.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: k.VolumeID, TargetPath: k.TargetPath(podUID)})
	if err == nil {
		k.mu.Lock()
		delete(k.published, podUID)
		k.mu.Unlock()
	}
	return err
}

// Unstage calls NodeUnstageVolume.
func (k *Kubelet) Unstage(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, kubeletTimeout)
	defer cancel()
	_, err := k.Plugin.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: k.VolumeID, StagingTargetPath: k.StagingPath()})
	return err
}

// Stats calls NodeGetVolumeStats on a path of the volume.
func (k *Kubelet) Stats(ctx context.Context, path string) (*csi.NodeGetVolumeStatsResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeletTimeout)
	defer cancel()
	return k.Plugin.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: k.VolumeID, VolumePath: path})
}

// Republish republishes every published target every interval until ctx ends,
// as kubelet does for a CSIDriver with requiresRepublish, each call with
// kubelet's deadline. Failures are recorded, not fatal: kubelet retries them.
func (k *Kubelet) Republish(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		k.mu.Lock()
		pods := make([]string, 0, len(k.published))
		for uid := range k.published {
			pods = append(pods, uid)
		}
		k.mu.Unlock()
		for _, uid := range pods {
			_, err := k.Publish(ctx, uid)
			k.mu.Lock()
			k.republishN++
			if err != nil && ctx.Err() == nil {
				k.republishE = append(k.republishE, fmt.Errorf("%s: %w", uid, err))
			}
			k.mu.Unlock()
		}
	}
}

// Republished returns how many republish calls were made and those that failed.
func (k *Kubelet) Republished() (int, []error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.republishN, append([]error(nil), k.republishE...)
}
