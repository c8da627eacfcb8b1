package kubeletsim

import (
	"context"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/pvnfs/pvnfs/test/simnode"
)

// Node is one simulated node's kubelet directory and CSI node plugin: what the
// kubelet acts on. *simnode.Node, wrapped by SimNode, is one; tests may fake it.
type Node interface {
	// Name is the Kubernetes node name.
	Name() string
	// Stage, Publish, Unpublish and Unstage make the CSI node calls with kubelet's
	// paths and directory handling (see simnode.Node).
	Stage(ctx context.Context, v simnode.Volume) (string, error)
	Publish(ctx context.Context, v simnode.Volume, podUID string, readOnly bool) (string, error)
	Unpublish(ctx context.Context, v simnode.Volume, podUID string) error
	Unstage(ctx context.Context, v simnode.Volume) error
	// Capabilities answers NodeGetCapabilities: kubelet maps access modes by them.
	Capabilities(ctx context.Context) ([]csi.NodeServiceCapability_RPC_Type, error)
}

// SimNode makes a simulated node a Node. Its Unpublish also removes the pod's
// directories once they are empty, as kubelet does when it cleans up after a pod.
func SimNode(n *simnode.Node) Node { return simNode{n} }

type simNode struct{ *simnode.Node }

func (s simNode) Capabilities(ctx context.Context) ([]csi.NodeServiceCapability_RPC_Type, error) {
	resp, err := s.Node.Node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		return nil, err
	}
	var out []csi.NodeServiceCapability_RPC_Type
	for _, c := range resp.GetCapabilities() {
		out = append(out, c.GetRpc().GetType())
	}
	return out, nil
}

func (s simNode) Unpublish(ctx context.Context, v simnode.Volume, podUID string) error {
	if err := s.Node.Unpublish(ctx, v, podUID); err != nil {
		return err
	}
	// <kubelet>/pods/<uid>/volumes/kubernetes.io~csi, then volumes, then the pod's
	// directory: each only if empty (os.Remove refuses otherwise), never recursively,
	// so nothing mounted below can be touched.
	dir := filepath.Join(s.KubeletDir(), "pods", podUID)
	for _, d := range []string{filepath.Join(dir, "volumes", "kubernetes.io~csi"), filepath.Join(dir, "volumes"), dir} {
		if err := os.Remove(d); err != nil {
			break
		}
	}
	return nil
}
