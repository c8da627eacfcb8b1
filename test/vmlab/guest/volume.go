package guest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Volume is one pvnfs volume in the lab: its backend, its server pod as the
// controller's Deployment would run it, and its Service address, which the nodes
// route to whichever pod serves it now.
type Volume struct {
	ID     string
	Params parameters.Parameters
	// Config is what the controller passes the server (parameters.ServerConfig).
	Config  serverconfig.Config
	Backend *Backend
	// Pod is the server pod serving now, and Sandbox its network namespace.
	Pod     *Pod
	Sandbox *NetNS

	nodes []*Node
}

var (
	volumeSeq atomic.Int32
	podIPSeq  atomic.Int32
)

// NewVolume creates a volume with StorageClass parameters params and its
// backend. It starts no server.
func NewVolume(ctx context.Context, name string, params map[string]string, backend BackendSpec) (*Volume, error) {
	id, err := volume.IDFromName(name)
	if err != nil {
		return nil, err
	}
	p, err := parameters.Parse(params)
	if err != nil {
		return nil, err
	}
	b, err := NewBackend(ctx, fmt.Sprintf("%s-%d", id, volumeSeq.Add(1)), backend)
	if err != nil {
		return nil, err
	}
	return &Volume{ID: id, Params: p, Config: p.ServerConfig(id, nil), Backend: b}, nil
}

// Context is the volume context CreateVolume returns for the volume.
func (v *Volume) Context() volume.Context {
	return volume.Context{Server: ClusterIP, Share: volume.ExportPath, NFSVersion: v.Params.NFSVersion}
}

// NewSandbox creates a pod sandbox with a new pod address, as for a new pod.
func (v *Volume) NewSandbox(ctx context.Context) (*NetNS, error) {
	n := podIPSeq.Add(1)
	return NewNetNS(ctx, fmt.Sprintf("pod%d", n), fmt.Sprintf("10.244.1.%d", n))
}

// Start starts a server container in sandbox (nil: a new sandbox, i.e. a new
// pod), waits until it is ready, and routes the Service of every attached node
// to it.
func (v *Volume) Start(ctx context.Context, sandbox *NetNS) (*Pod, error) {
	if sandbox == nil {
		var err error
		if sandbox, err = v.NewSandbox(ctx); err != nil {
			return nil, err
		}
	}
	pod, err := StartPod(ctx, PodSpec{
		Name:       v.ID,
		Hostname:   volume.ObjectName(v.ID),
		Sandbox:    sandbox,
		Backend:    v.Backend,
		VolumeRoot: v.Config.VolumeRoot,
		Args:       v.Config.Args(),
		Runtime:    controller.ServerRuntimeFor(v.Config.Engine),
	})
	if err != nil {
		return nil, err
	}
	v.Pod, v.Sandbox = pod, sandbox
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := pod.WaitReady(rctx); err != nil {
		return pod, err
	}
	for _, n := range v.nodes {
		if err := n.Net.RouteService(ctx, ClusterIP, sandbox.IP); err != nil {
			return pod, err
		}
	}
	return pod, nil
}

// Attach routes node's Service address to the volume's current pod, as
// kube-proxy does on every node.
func (v *Volume) Attach(ctx context.Context, node *Node) error {
	v.nodes = append(v.nodes, node)
	if v.Sandbox == nil {
		return nil
	}
	return node.Net.RouteService(ctx, ClusterIP, v.Sandbox.IP)
}

// Close stops the pod (killing it when it does not stop), removes its sandbox
// and the backend.
func (v *Volume) Close(ctx context.Context) error {
	var errs []error
	if v.Pod != nil {
		select {
		case <-v.Pod.Exited():
		default:
			if err := v.Pod.Terminate(30 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if v.Sandbox != nil {
		errs = append(errs, v.Sandbox.Remove(ctx))
	}
	errs = append(errs, v.Backend.Remove(ctx))
	return errors.Join(errs...)
}
