package controller

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultCapacity is the backend size of a volume whose request sets no capacity.
const DefaultCapacity int64 = 1 << 30

// validateCapabilities accepts filesystem (mount) volumes in every access mode: NFS
// serves many writers on many nodes. Raw block is refused: an NFS export is a
// filesystem.
func validateCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume_capabilities: at least one capability is required")
	}
	for i, c := range caps {
		if c == nil {
			return status.Errorf(codes.InvalidArgument, "volume_capabilities[%d]: empty capability", i)
		}
		if c.GetBlock() != nil {
			return status.Errorf(codes.InvalidArgument, "volume_capabilities[%d]: access type block is not supported: pvnfs volumes are NFS filesystems; use volumeMode: Filesystem", i)
		}
		if c.GetMount() == nil {
			return status.Errorf(codes.InvalidArgument, "volume_capabilities[%d]: access type must be mount", i)
		}
		if fs := c.GetMount().GetFsType(); fs != "" && fs != "nfs" && fs != "nfs4" {
			return status.Errorf(codes.InvalidArgument, "volume_capabilities[%d]: fs_type %q is not supported: pvnfs volumes are NFS; leave fsType empty", i, fs)
		}
		if c.GetAccessMode() == nil || c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN {
			return status.Errorf(codes.InvalidArgument, "volume_capabilities[%d]: access_mode is required", i)
		}
	}
	return nil
}

// capacityFor returns the backend size for a capacity range: the required bytes, or
// DefaultCapacity (cut to the limit) when none are required.
func capacityFor(r *csi.CapacityRange) (int64, error) {
	req, lim := r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case req < 0 || lim < 0:
		return 0, status.Errorf(codes.InvalidArgument, "capacity_range: required_bytes (%d) and limit_bytes (%d) must not be negative", req, lim)
	case lim > 0 && req > lim:
		// CSI names OUT_OF_RANGE for a capacity the plugin cannot satisfy.
		return 0, status.Errorf(codes.OutOfRange, "capacity_range: required_bytes (%d) exceeds limit_bytes (%d); no size satisfies both", req, lim)
	case req > 0:
		return req, nil
	case lim > 0 && lim < DefaultCapacity:
		return lim, nil
	}
	return DefaultCapacity, nil
}

// capacityFits reports whether an existing volume of size bytes satisfies r.
func capacityFits(size int64, r *csi.CapacityRange) bool {
	if r.GetRequiredBytes() > 0 && size < r.GetRequiredBytes() {
		return false
	}
	return r.GetLimitBytes() == 0 || size <= r.GetLimitBytes()
}

func requireField(name, value string) error {
	if value == "" {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("%s is required", name))
	}
	return nil
}
