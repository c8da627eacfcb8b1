package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/utils/clock"

	"github.com/pvnfs/pvnfs/pkg/inflight"
	"github.com/pvnfs/pvnfs/pkg/mounter"
)

// Config is what the node service is built from. Every side effect comes in here.
type Config struct {
	// NodeID is the Kubernetes node name, returned by NodeGetInfo.
	NodeID string
	// DriverName is the CSI driver name; kubelet's staging paths contain it, which
	// lets NodeGetVolumeStats tell one volume's mounts from another's.
	DriverName string
	// Mounter makes and lists mounts: mounter.New in production, wrapped by
	// standin.New on machines without NFS.
	Mounter mounter.Interface
	// MountTimeout bounds each mount helper (one NFS mount attempt, one bind).
	MountTimeout time.Duration
	// UnmountTimeout bounds each step of the unmount ladder (umount, umount -f,
	// umount -l).
	UnmountTimeout time.Duration
	// StatTimeout bounds each health check (statfs) of a mount.
	StatTimeout time.Duration
	// Clock times the health checks; nil is the real clock.
	Clock clock.Clock
}

// Service is the CSI node service.
type Service struct {
	csi.UnimplementedNodeServer
	cfg      Config
	mounter  mounter.Interface
	inflight *inflight.Guard
	health   *checker
}

var _ csi.NodeServer = &Service{}

// New returns the node service, or an error naming every bad field of cfg.
func New(cfg Config) (*Service, error) {
	var errs []error
	if cfg.NodeID == "" {
		errs = append(errs, errors.New("node ID is empty"))
	}
	if cfg.DriverName == "" {
		errs = append(errs, errors.New("driver name is empty"))
	}
	if cfg.Mounter == nil {
		errs = append(errs, errors.New("mounter is nil"))
	}
	for name, d := range map[string]time.Duration{"mount timeout": cfg.MountTimeout, "unmount timeout": cfg.UnmountTimeout, "stat timeout": cfg.StatTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("node service: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Service{
		cfg:      cfg,
		mounter:  cfg.Mounter,
		inflight: inflight.New(),
		health:   newChecker(cfg.Mounter.Statfs, cfg.StatTimeout, cfg.Clock),
	}, nil
}

// nodeCapabilities: staging gives one NFS mount per node; stats and condition
// report usage and stale or hung mounts; SINGLE_NODE_MULTI_WRITER lets the CO
// tell ReadWriteOncePod (enforced in NodePublishVolume) from ReadWriteOnce.
func nodeCapabilities() []csi.NodeServiceCapability_RPC_Type {
	return []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_VOLUME_CONDITION,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
}

// NodeGetCapabilities lists what the node service offers.
func (s *Service) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	resp := &csi.NodeGetCapabilitiesResponse{}
	for _, c := range nodeCapabilities() {
		resp.Capabilities = append(resp.Capabilities, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}}})
	}
	return resp, nil
}

// NodeGetInfo returns the node name. There is no topology (every node reaches every
// volume's Service) and no volume limit (a volume costs the node one NFS mount).
func (s *Service) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: s.cfg.NodeID}, nil
}

// key is the in-flight key of an operation on a volume at a path.
func key(volumeID, path string) string { return volumeID + "\x00" + path }
