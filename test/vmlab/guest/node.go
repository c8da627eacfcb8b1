package guest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pvnfs/pvnfs/pkg/mounter"
)

// KubeletDir is the kubelet's directory in a node's mount namespace: a tmpfs of
// its own, so two nodes never share a staging or target directory.
const KubeletDir = "/var/lib/kubelet"

// Node is a Kubernetes node as its NFS client sees it: its own network namespace
// on the cluster network (the host network the node plugin runs in), its own
// mount namespace (the node's mount table) and its own UTS namespace, whose
// hostname is the node's name and so the NFSv4 client's identity. An anchor
// process holds the namespaces; everything else enters them.
type Node struct {
	Name string
	Net  *NetNS

	anchor *exec.Cmd
}

// NewNode creates the node with its address on the cluster network.
func NewNode(ctx context.Context, name, ip string) (*Node, error) {
	netns, err := NewNetNS(ctx, name, ip)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Net: netns}
	// The node's mount namespace starts as a copy of the guest's; the lab's
	// scratch tmpfs goes from it, or the node would hold copies of the backend
	// mounts, which live on another machine in a cluster.
	n.anchor = exec.Command("nsenter", "--net="+netns.Path(), "--",
		"unshare", "--mount", "--uts", "--propagation", "private", "--",
		"sh", "-c", `umount -l "$2" && mkdir -p "$0" && mount -t tmpfs -o mode=0750 tmpfs "$0" && hostname "$1" && echo ready && exec sleep infinity`,
		KubeletDir, name, WorkDir)
	stdout, err := n.anchor.StdoutPipe()
	if err != nil {
		return nil, err
	}
	n.anchor.Stderr = os.Stderr
	if err := n.anchor.Start(); err != nil {
		_ = netns.Remove(ctx)
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("anchor said %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = n.Remove(ctx)
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	return n, nil
}

// PID is the anchor's process ID.
func (n *Node) PID() int { return n.anchor.Process.Pid }

// Command returns a command that runs in the node's namespaces.
func (n *Node) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.PID()), "-n", "-m", "-u", "--", name}, args...)...)
}

// Exec runs a helper in the node's namespaces with ctx's deadline.
func (n *Node) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return Run(ctx, "nsenter", append([]string{"-t", strconv.Itoa(n.PID()), "-n", "-m", "-u", "--", name}, args...)...)
}

// Path is path in the node's mount namespace, reachable from the guest's.
func (n *Node) Path(path string) string {
	return filepath.Join("/proc", strconv.Itoa(n.PID()), "root", path)
}

// Mount mounts an NFS export in the node the way the node plugin does: mount(8),
// which runs mount.nfs from the image.
func (n *Node) Mount(ctx context.Context, source, target string, options []string) error {
	if err := os.MkdirAll(n.Path(target), 0o750); err != nil {
		return err
	}
	_, err := n.Exec(ctx, "mount", "-t", "nfs4", "-o", strings.Join(options, ","), source, target)
	return err
}

// Unmount unmounts target in the node.
func (n *Node) Unmount(ctx context.Context, target string) error {
	_, err := n.Exec(ctx, "umount", target)
	return err
}

// Mounts returns the node's mount table.
func (n *Node) Mounts() ([]mounter.MountPoint, error) {
	return mounter.ReadMountInfo(filepath.Join("/proc", strconv.Itoa(n.PID()), "mountinfo"))
}

// NFSMounts returns the node's NFS mounts.
func (n *Node) NFSMounts() ([]mounter.MountPoint, error) {
	table, err := n.Mounts()
	var out []mounter.MountPoint
	for _, m := range table {
		if strings.HasPrefix(m.FSType, "nfs") {
			out = append(out, m)
		}
	}
	return out, err
}

// Statfs returns statfs of path in the node, or an error when it does not answer
// within timeout (the call is left behind in the kernel).
func (n *Node) Statfs(path string, timeout time.Duration) (unix.Statfs_t, error) {
	type result struct {
		st  unix.Statfs_t
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		r.err = unix.Statfs(n.Path(path), &r.st)
		ch <- r
	}()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-time.After(timeout):
		return unix.Statfs_t{}, fmt.Errorf("statfs %s: no answer within %s", path, timeout)
	}
}

// Remove ends the node: its anchor, so its mount namespace goes (mounts in it
// are detached), and its network namespace.
func (n *Node) Remove(ctx context.Context) error {
	var errs []error
	if n.anchor != nil && n.anchor.Process != nil {
		_ = n.anchor.Process.Kill()
		_ = n.anchor.Wait()
	}
	errs = append(errs, n.Net.Remove(ctx))
	return errors.Join(errs...)
}
