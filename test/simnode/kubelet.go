package simnode

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// Volume is what kubelet knows of a PersistentVolume of pvnfs.
type Volume struct {
	// Handle is the PV's volumeHandle: the CSI volume ID.
	Handle string
	// PVName is the PV's name, part of pods' target paths; default Handle.
	PVName string
	// Context is the PV's volumeAttributes (server, share, nfsVersion).
	Context map[string]string
	// Capability is the access type and mode; default MountCapability(MULTI_NODE_MULTI_WRITER).
	Capability *csi.VolumeCapability
}

// MountCapability is a filesystem capability with the access mode and the
// StorageClass's mountOptions.
func MountCapability(mode csi.VolumeCapability_AccessMode_Mode, mountOptions ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: mountOptions}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func (v Volume) pvName() string {
	if v.PVName != "" {
		return v.PVName
	}
	return v.Handle
}

func (v Volume) capability() *csi.VolumeCapability {
	if v.Capability != nil {
		return v.Capability
	}
	return MountCapability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
}

// Stage does what kubelet does to mount a volume's device for the first pod on
// the node: creates the staging directory and calls NodeStageVolume. It returns
// the staging path.
func (n *Node) Stage(ctx context.Context, v Volume) (string, error) {
	staging := n.StagingPath(v.Handle)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return staging, err
	}
	_, err := n.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
		VolumeId: v.Handle, StagingTargetPath: staging, VolumeCapability: v.capability(), VolumeContext: v.Context,
	})
	return staging, err
}

// Unstage calls NodeUnstageVolume and then removes the volume's directory as
// kubelet does.
func (n *Node) Unstage(ctx context.Context, v Volume) error {
	staging := n.StagingPath(v.Handle)
	if _, err := n.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.Handle, StagingTargetPath: staging}); err != nil {
		return err
	}
	return removeEmpty(filepath.Dir(staging))
}

// Publish does what kubelet does to mount a volume into a pod: creates the pod's
// volume directory and calls NodePublishVolume (the plugin creates the "mount"
// directory itself). It returns the target path.
func (n *Node) Publish(ctx context.Context, v Volume, podUID string, readOnly bool) (string, error) {
	target := n.TargetPath(podUID, v.pvName())
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return target, err
	}
	_, err := n.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId: v.Handle, StagingTargetPath: n.StagingPath(v.Handle), TargetPath: target,
		VolumeCapability: v.capability(), VolumeContext: v.Context, Readonly: readOnly,
	})
	return target, err
}

// Unpublish calls NodeUnpublishVolume and then removes the pod's volume directory
// as kubelet does.
func (n *Node) Unpublish(ctx context.Context, v Volume, podUID string) error {
	target := n.TargetPath(podUID, v.pvName())
	if _, err := n.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.Handle, TargetPath: target}); err != nil {
		return err
	}
	return removeEmpty(filepath.Dir(target))
}

// Stats calls NodeGetVolumeStats for a pod's target path.
func (n *Node) Stats(ctx context.Context, v Volume, podUID string) (*csi.NodeGetVolumeStatsResponse, error) {
	return n.Node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: v.Handle, VolumePath: n.TargetPath(podUID, v.pvName())})
}

func removeEmpty(dir string) error {
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
