package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// stageSpec is what staging a volume needs; NodeStageVolume and a NodePublishVolume
// that finds the staging mount broken both build one.
type stageSpec struct {
	volumeID string
	// path is the staging path, canonical once the call holds its in-flight key.
	path     string
	vctx     volume.Context
	attempts [][]string
	readOnly bool
}

// NodeStageVolume mounts the volume's NFS export at the staging path: once per
// node, whatever the number of pods. A mount of the same export there is success
// when it is healthy or its server does not answer (a hard mount resumes by
// itself; mounting again cannot help while the server is away); a stale one is
// mounted again.
func (s *Service) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	spec, err := validateStage(req)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(spec.path), 0o750); err != nil {
		return nil, fmt.Errorf("creating the parent of the staging path %s: %w", spec.path, err)
	}
	if spec.path, _, err = canonical(spec.path); err != nil {
		return nil, err
	}
	release, ok := s.inflight.TryAcquire(key(spec.volumeID, spec.path))
	if !ok {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s at %s is already in progress", spec.volumeID, spec.path)
	}
	defer release()
	if err := s.ensureStaged(ctx, spec); err != nil {
		return nil, err
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

// validateStage checks the request's fields and returns what staging needs, with
// the staging path as requested.
func validateStage(req *csi.NodeStageVolumeRequest) (stageSpec, error) {
	id, path, capability := req.GetVolumeId(), req.GetStagingTargetPath(), req.GetVolumeCapability()
	if err := requireVolumeID(id); err != nil {
		return stageSpec{}, err
	}
	if err := requirePath("staging_target_path", path); err != nil {
		return stageSpec{}, err
	}
	if err := checkCapability(capability); err != nil {
		return stageSpec{}, err
	}
	vctx, err := parseContext(req.GetVolumeContext())
	if err != nil {
		return stageSpec{}, err
	}
	attempts, err := mountAttempts(vctx.NFSVersion, capability.GetMount().GetMountFlags(), readerOnly(capability))
	if err != nil {
		return stageSpec{}, err
	}
	return stageSpec{volumeID: id, path: path, vctx: vctx, attempts: attempts, readOnly: readerOnly(capability)}, nil
}

// ensureStaged makes sure a healthy mount of the volume's export is at the staging
// path. The caller holds the in-flight key of the staging path.
func (s *Service) ensureStaged(ctx context.Context, spec stageSpec) error {
	table, err := s.mounter.List()
	if err != nil {
		return err
	}
	if m, mounted := mounter.FindMount(table, spec.path); mounted {
		if !isNFS(m) || !sameSource(m.Source, spec.vctx.Source()) {
			return status.Errorf(codes.AlreadyExists, "staging path %s already holds a %s mount of %s, not volume %s's export %s: unmount it or stage the volume elsewhere",
				spec.path, m.FSType, m.Source, spec.volumeID, spec.vctx.Source())
		}
		if m.ReadOnly() != spec.readOnly {
			return status.Errorf(codes.AlreadyExists, "volume %s is already staged at %s with read-only=%v, the request asks for read-only=%v: unstage it first",
				spec.volumeID, spec.path, m.ReadOnly(), spec.readOnly)
		}
		_, err := s.health.check(ctx, spec.path)
		h, known := classify(err)
		if !known {
			return fmt.Errorf("checking the staging mount %s of volume %s: %w", spec.path, spec.volumeID, err)
		}
		switch h {
		case healthy:
			klog.V(4).InfoS("Volume already staged", "volumeID", spec.volumeID, "stagingPath", spec.path)
			return nil
		case notResponding:
			klog.InfoS("Volume is staged, but its NFS server does not answer; leaving the mount alone, it resumes when the server is back",
				"volumeID", spec.volumeID, "stagingPath", spec.path, "err", err)
			return nil
		}
		return s.restage(ctx, spec, table, m, err)
	}
	if err := os.MkdirAll(spec.path, 0o750); err != nil {
		return fmt.Errorf("creating the staging directory %s: %w", spec.path, err)
	}
	return s.mountNFS(ctx, spec)
}

// restage replaces the stale staging mount m (found stale because of cause) with
// a new mount. The caller holds the in-flight key of the staging path.
//
// Only a stale mount is replaced, never one whose server does not answer: a new
// mount could not reach the server either (it would hang until its deadline),
// and taking the old one away would leave the node without the volume, its pods
// unable to start, when the server comes back.
func (s *Service) restage(ctx context.Context, spec stageSpec, table []mounter.MountPoint, m mounter.MountPoint, cause error) error {
	// A stale superblock fails every request anyway, so aborting them with
	// umount -f costs the pods nothing.
	others := othersOf(table, m, spec.path)
	klog.InfoS("Staging mount is stale; mounting it again", "volumeID", spec.volumeID, "stagingPath", spec.path,
		"source", m.Source, "err", cause, "podMounts", len(others))
	if err := s.unmountAll(ctx, spec.path, true); err != nil {
		return fmt.Errorf("removing the stale staging mount of volume %s: %w", spec.volumeID, err)
	}
	if err := os.MkdirAll(spec.path, 0o750); err != nil {
		return fmt.Errorf("creating the staging directory %s: %w", spec.path, err)
	}
	return s.mountNFS(ctx, spec)
}

// mountNFS runs the mount attempts in order until one succeeds. Only "protocol not
// supported" moves on to the next (older) version: an unreachable server would
// not answer the older version either, and trying would only double the wait.
func (s *Service) mountNFS(ctx context.Context, spec stageSpec) error {
	source := spec.vctx.Source()
	var err error
	for i, opts := range spec.attempts {
		mctx, cancel := context.WithTimeout(ctx, s.cfg.MountTimeout)
		err = s.mounter.Mount(mctx, source, spec.path, "nfs4", opts)
		cancel()
		if err == nil {
			klog.V(2).InfoS("Staged volume", "volumeID", spec.volumeID, "source", source, "stagingPath", spec.path, "options", strings.Join(opts, ","))
			return nil
		}
		if mounter.IsProtocolNotSupported(err) && i+1 < len(spec.attempts) {
			klog.V(2).InfoS("NFS server does not speak this version; trying the next", "volumeID", spec.volumeID, "source", source,
				"options", strings.Join(opts, ","), "next", strings.Join(spec.attempts[i+1], ","))
			continue
		}
		opts := strings.Join(opts, ",")
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("mounting %s at %s (options %s): the NFS server did not answer in time; check that volume %s's server pod is running and its Service reachable from this node: %w",
				source, spec.path, opts, spec.volumeID, err)
		}
		return fmt.Errorf("mounting %s at %s (options %s): %w", source, spec.path, opts, err)
	}
	return err
}

// NodeUnstageVolume unmounts the staging mount and removes the directory. It
// succeeds when there is nothing to unmount, and completes when the server is
// gone (the last unmount step is lazy and needs no answer).
func (s *Service) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id := req.GetVolumeId()
	canon, release, err := s.beginTeardown(id, "staging_target_path", req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	if release == nil {
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	defer release()
	table, err := s.mounter.List()
	if err != nil {
		return nil, err
	}
	if m, mounted := mounter.FindMount(table, canon); mounted {
		others := othersOf(table, m, canon)
		if len(others) > 0 {
			klog.InfoS("Unstaging a volume that is still bind-mounted on this node; those mounts stay", "volumeID", id, "stagingPath", canon, "mounts", others)
		}
		if err := s.unmountAll(ctx, canon, len(others) == 0); err != nil {
			return nil, fmt.Errorf("unstaging volume %s: %w", id, err)
		}
	}
	if err := removeDir(canon); err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Unstaged volume", "volumeID", id, "stagingPath", canon)
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// removeDir removes the empty directory a mount was at. A directory that still
// holds files is left alone: they were written while nothing was mounted there.
func removeDir(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("removing %s after unmounting it: %w (files in it were written while no volume was mounted there; move them away)", path, err)
}
