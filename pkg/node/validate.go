package node

import (
	"fmt"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// requirePath checks a required absolute path field.
func requirePath(field, p string) error {
	if p == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", field)
	}
	if !filepath.IsAbs(p) {
		return status.Errorf(codes.InvalidArgument, "%s %q must be an absolute path", field, p)
	}
	return nil
}

// requireVolumeID checks the volume ID. The node does not parse it: it mounts what
// the volume context says, and the ID only names the volume in keys and logs.
func requireVolumeID(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "volume_id is required")
	}
	return nil
}

// checkCapability accepts a filesystem volume of NFS in any access mode.
func checkCapability(c *csi.VolumeCapability) error {
	switch {
	case c == nil:
		return status.Error(codes.InvalidArgument, "volume_capability is required")
	case c.GetBlock() != nil:
		return status.Error(codes.InvalidArgument, "volume_capability: access type block is not supported: pvnfs volumes are NFS filesystems; use volumeMode: Filesystem")
	case c.GetMount() == nil:
		return status.Error(codes.InvalidArgument, "volume_capability: access type must be mount")
	case c.GetAccessMode() == nil || c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN:
		return status.Error(codes.InvalidArgument, "volume_capability: access_mode is required")
	}
	if fs := c.GetMount().GetFsType(); fs != "" && fs != "nfs" && fs != "nfs4" {
		return status.Errorf(codes.InvalidArgument, "volume_capability: fs_type %q is not supported: pvnfs volumes are NFS; leave fsType empty", fs)
	}
	return nil
}

// readerOnly reports whether the access mode allows no writer at all; such volumes
// are mounted read-only everywhere.
func readerOnly(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}

// parseContext parses the volume context; a bad one wraps volume.ErrInvalidContext,
// which csiserver.ToStatus maps to InvalidArgument.
func parseContext(m map[string]string) (volume.Context, error) {
	c, err := volume.ParseContext(m)
	if err != nil {
		return volume.Context{}, fmt.Errorf("volume_context: %w (it comes from the PersistentVolume's volumeAttributes, which pvnfs's CreateVolume sets)", err)
	}
	return c, nil
}
