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
)

// singleWriterKey is the in-flight key that serializes the publishes of a
// SINGLE_NODE_SINGLE_WRITER volume, so two cannot both find no other target.
const singleWriterKey = "\x00single-writer"

// publishRequest is a validated NodePublishVolumeRequest.
type publishRequest struct {
	id           string
	stagingPath  string // as requested
	targetPath   string // as requested
	spec         stageSpec
	readOnly     bool
	singleWriter bool
}

// NodePublishVolume bind-mounts the staging mount at the pod's target path,
// read-only when asked. It first checks the staging mount and stages again when it
// is stale, so a pod never gets a stale mount. When the server does not answer,
// it changes nothing: a target already published stays as it is (kubelet's
// periodic republish must never take a running pod's volume away), and a new one
// waits (Unavailable, which kubelet retries) until the server answers again.
func (s *Service) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	p, err := validatePublish(req)
	if err != nil {
		return nil, err
	}
	staging, target, err := publishPaths(p)
	if err != nil {
		return nil, err
	}
	p.spec.path = staging
	keys := []string{key(p.id, target)}
	if p.singleWriter {
		keys = append(keys, p.id+singleWriterKey)
	}
	release, ok := s.inflight.TryAcquire(keys...)
	if !ok {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s at %s is already in progress", p.id, target)
	}
	defer release()

	// One read of the mount table serves the staging and the target checks: it
	// grows with every pod's bind mount, and a node publishes many.
	stagingMount, table, err := s.healthyStaging(ctx, p.spec)
	var nr *serverAwayError
	if errors.As(err, &nr) {
		return s.publishWhileServerAway(p, target, table, stagingMount, nr)
	}
	if err != nil {
		return nil, err
	}
	published, err := s.prepareTarget(ctx, p, target, table, stagingMount)
	if err != nil {
		return nil, err
	}
	if published {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, fmt.Errorf("creating the target directory %s: %w", target, err)
	}
	bctx, cancel := context.WithTimeout(ctx, s.cfg.MountTimeout)
	err = s.mounter.Bind(bctx, staging, target, p.readOnly)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bind-mounting volume %s from %s at %s: %w", p.id, staging, target, err)
	}
	if err := s.verifyBind(ctx, p.id, target, stagingMount, p.readOnly); err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Published volume", "volumeID", p.id, "stagingPath", staging, "targetPath", target, "readOnly", p.readOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

// validatePublish checks the request's fields, in the order csi-sanity expects
// their errors.
func validatePublish(req *csi.NodePublishVolumeRequest) (publishRequest, error) {
	id, capability := req.GetVolumeId(), req.GetVolumeCapability()
	if err := requireVolumeID(id); err != nil {
		return publishRequest{}, err
	}
	if err := requirePath("target_path", req.GetTargetPath()); err != nil {
		return publishRequest{}, err
	}
	if err := checkCapability(capability); err != nil {
		return publishRequest{}, err
	}
	if err := requirePath("staging_target_path", req.GetStagingTargetPath()); err != nil {
		return publishRequest{}, status.Errorf(codes.InvalidArgument, "%s: pvnfs stages every volume (STAGE_UNSTAGE_VOLUME)", status.Convert(err).Message())
	}
	vctx, err := parseContext(req.GetVolumeContext())
	if err != nil {
		return publishRequest{}, err
	}
	attempts, err := mountAttempts(vctx.NFSVersion, capability.GetMount().GetMountFlags(), readerOnly(capability))
	if err != nil {
		return publishRequest{}, err
	}
	return publishRequest{
		id:           id,
		stagingPath:  req.GetStagingTargetPath(),
		targetPath:   req.GetTargetPath(),
		spec:         stageSpec{volumeID: id, vctx: vctx, attempts: attempts, readOnly: readerOnly(capability)},
		readOnly:     req.GetReadonly() || readerOnly(capability),
		singleWriter: capability.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
	}, nil
}

// publishPaths returns the canonical staging and target paths, creating the
// target's parent as kubelet does.
func publishPaths(p publishRequest) (staging, target string, err error) {
	staging, stagingParent, err := canonical(p.stagingPath)
	if err != nil {
		return "", "", err
	}
	if !stagingParent {
		return "", "", status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s (the directory does not exist): NodeStageVolume must succeed first", p.id, staging)
	}
	if err := os.MkdirAll(filepath.Dir(p.targetPath), 0o750); err != nil {
		return "", "", fmt.Errorf("creating the parent of the target path %s: %w", p.targetPath, err)
	}
	if target, _, err = canonical(p.targetPath); err != nil {
		return "", "", err
	}
	if target == staging {
		return "", "", status.Errorf(codes.InvalidArgument, "target_path and staging_target_path are the same directory %s", target)
	}
	return staging, target, nil
}

// prepareTarget looks at what is mounted at the target in table. It reports true
// when the volume is already published there as asked; it removes a stale bind of
// the volume; it refuses anything else there, and a second target of a
// SINGLE_NODE_SINGLE_WRITER volume.
func (s *Service) prepareTarget(ctx context.Context, p publishRequest, target string, table []mounter.MountPoint, stagingMount mounter.MountPoint) (bool, error) {
	var err error
	if m, mounted := mounter.FindMount(table, target); mounted {
		switch {
		case m.SameTree(stagingMount) && m.ReadOnly() == p.readOnly:
			klog.V(4).InfoS("Volume already published", "volumeID", p.id, "targetPath", target)
			return true, nil
		case m.SameTree(stagingMount):
			return false, status.Errorf(codes.AlreadyExists, "volume %s is already published at %s with read-only=%v, the request asks for read-only=%v: unpublish it first",
				p.id, target, m.ReadOnly(), p.readOnly)
		case isNFS(m) && sameSource(m.Source, stagingMount.Source):
			// A mount of the same export that is not the staging mount's: left
			// from before the staging mount was replaced, so stale. Bind again.
			klog.InfoS("Target holds an old mount of the volume; binding it again", "volumeID", p.id, "targetPath", target)
			if err := s.unmountAll(ctx, target, false); err != nil {
				return false, fmt.Errorf("removing the old mount of volume %s at %s: %w", p.id, target, err)
			}
			if table, err = s.mounter.List(); err != nil {
				return false, err
			}
		default:
			return false, status.Errorf(codes.AlreadyExists, "target path %s already holds a %s mount of %s, not volume %s", target, m.FSType, m.Source, p.id)
		}
	}
	if p.singleWriter {
		if others := othersOf(table, stagingMount, p.spec.path, target); len(others) > 0 {
			return false, status.Errorf(codes.FailedPrecondition, "volume %s has access mode SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod) and is already published at %s",
				p.id, strings.Join(others, ", "))
		}
	}
	return false, nil
}

// serverAwayError is a staging mount whose NFS server does not answer.
type serverAwayError struct{ cause error }

func (e *serverAwayError) Error() string { return e.cause.Error() }

// publishWhileServerAway answers a publish while the volume's server does not
// answer, touching nothing: success when the target is already published from the
// staging mount as asked (a republish), Unavailable otherwise. A bind made now
// could hang on the server (the kernel revalidates the mount's root), and the
// pod could do nothing with the volume before the server is back anyway.
func (s *Service) publishWhileServerAway(p publishRequest, target string, table []mounter.MountPoint, staging mounter.MountPoint, away *serverAwayError) (*csi.NodePublishVolumeResponse, error) {
	if m, mounted := mounter.FindMount(table, target); mounted && m.SameTree(staging) && m.ReadOnly() == p.readOnly {
		klog.V(2).InfoS("Volume published; its NFS server does not answer, the mount stays as it is", "volumeID", p.id, "targetPath", target, "err", away.cause)
		return &csi.NodePublishVolumeResponse{}, nil
	}
	return nil, status.Errorf(codes.Unavailable, "the NFS server %s of volume %s does not answer (%v): the pod gets the volume once it does; check the volume's server pod and Service",
		serverOf(staging.Source), p.id, away.cause)
}

// healthyStaging returns the staging mount of the volume after checking it, with
// the mount table it found it in, and stages the volume again when the mount is
// stale. When the server does not answer, it returns the mount and the table with
// a *serverAwayError.
func (s *Service) healthyStaging(ctx context.Context, spec stageSpec) (mounter.MountPoint, []mounter.MountPoint, error) {
	m, table, err := s.checkStaging(ctx, spec)
	if err != nil || table != nil {
		return m, table, err
	}
	// Stale, and staged again: the mount and the table are new.
	if table, err = s.mounter.List(); err != nil {
		return m, nil, err
	}
	m, mounted := mounter.FindMount(table, spec.path)
	if !mounted {
		return m, nil, status.Errorf(codes.Aborted, "volume %s was unstaged from %s while it was being published; try again", spec.volumeID, spec.path)
	}
	return m, table, nil
}

// checkStaging checks the staging mount. It returns the mount and the table it
// read when the mount can serve (or its server does not answer: a
// *serverAwayError), and a nil table once it has staged a stale mount again.
func (s *Service) checkStaging(ctx context.Context, spec stageSpec) (mounter.MountPoint, []mounter.MountPoint, error) {
	table, err := s.mounter.List()
	if err != nil {
		return mounter.MountPoint{}, nil, err
	}
	m, mounted := mounter.FindMount(table, spec.path)
	if !mounted {
		return m, nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s: NodeStageVolume must succeed first", spec.volumeID, spec.path)
	}
	if !isNFS(m) || !sameSource(m.Source, spec.vctx.Source()) {
		return m, nil, status.Errorf(codes.FailedPrecondition, "staging path %s holds a %s mount of %s, not volume %s's export %s",
			spec.path, m.FSType, m.Source, spec.volumeID, spec.vctx.Source())
	}
	_, err = s.health.check(ctx, spec.path)
	h, known := classify(err)
	if !known {
		return m, nil, fmt.Errorf("checking the staging mount %s of volume %s: %w", spec.path, spec.volumeID, err)
	}
	switch h {
	case healthy:
		return m, table, nil
	case notResponding:
		return m, table, &serverAwayError{cause: err}
	}
	release, ok := s.inflight.TryAcquire(key(spec.volumeID, spec.path))
	if !ok {
		return m, nil, status.Errorf(codes.Aborted, "the staging mount of volume %s is %s and is being staged or unstaged right now; try again", spec.volumeID, h)
	}
	defer release()
	klog.V(2).InfoS("Staging mount is stale; staging again before publishing", "volumeID", spec.volumeID, "stagingPath", spec.path)
	table, lerr := s.mounter.List()
	if lerr != nil {
		return m, nil, lerr
	}
	switch now, mounted := mounter.FindMount(table, spec.path); {
	case !mounted:
		return m, nil, status.Errorf(codes.Aborted, "volume %s was unstaged from %s while it was being published; try again", spec.volumeID, spec.path)
	case now.ID == m.ID:
		err = s.restage(ctx, spec, table, m, err)
	default:
		// Someone staged it again since the check: check the new mount.
		err = s.ensureStaged(ctx, spec)
	}
	return m, nil, err
}

// verifyBind checks that the new mount at target shows the staging mount with the
// right access, and undoes it otherwise: a bind of a staging directory that was
// unstaged in the meantime would give the pod the node's local disk.
func (s *Service) verifyBind(ctx context.Context, id, target string, staging mounter.MountPoint, readOnly bool) error {
	table, err := s.mounter.List()
	if err != nil {
		return err
	}
	m, mounted := mounter.FindMount(table, target)
	if mounted && m.SameTree(staging) && m.ReadOnly() == readOnly {
		return nil
	}
	if mounted {
		if err := s.unmountAll(ctx, target, false); err != nil {
			klog.ErrorS(err, "Cannot undo a wrong bind mount", "volumeID", id, "targetPath", target)
		}
	}
	return status.Errorf(codes.Aborted, "the bind mount of volume %s at %s does not show its staging mount (unstaged meanwhile?); try again", id, target)
}

// NodeUnpublishVolume unmounts the target path and removes the directory. It
// succeeds when nothing is there, and completes when the server is gone. It never
// forces: umount -f would fail the requests of every other pod using the volume.
func (s *Service) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id := req.GetVolumeId()
	target, release, err := s.beginTeardown(id, "target_path", req.GetTargetPath())
	if err != nil {
		return nil, err
	}
	if release == nil {
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	defer release()
	if err := s.unmountAll(ctx, target, false); err != nil {
		return nil, fmt.Errorf("unpublishing volume %s: %w", id, err)
	}
	if err := removeDir(target); err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Unpublished volume", "volumeID", id, "targetPath", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}
