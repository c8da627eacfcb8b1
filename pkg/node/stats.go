package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pvnfs/pvnfs/pkg/mounter"
)

// NodeGetVolumeStats reports the usage of a staged or published volume and its
// condition. A stale mount or a server that does not answer within the stat
// timeout is an abnormal condition with a message (and no usage), not an error and
// never a hang.
func (s *Service) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id, volumePath := req.GetVolumeId(), req.GetVolumePath()
	if err := requireVolumeID(id); err != nil {
		return nil, err
	}
	if volumePath == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	m, err := s.mountOfVolume(id, volumePath, req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	st, err := s.health.check(ctx, m.Path)
	h, known := classify(err)
	if !known {
		return nil, fmt.Errorf("statfs %s of volume %s: %w", m.Path, id, err)
	}
	switch h {
	case notResponding:
		var nr *NotRespondingError
		errors.As(err, &nr)
		return abnormal(fmt.Sprintf("NFS server %s not responding after %s (statfs %s)", serverOf(m.Source), roundDuration(nr.After), m.Path)), nil
	case stale:
		what := "stale file handle"
		if !errors.Is(err, unix.ESTALE) {
			what = err.Error()
		}
		return abnormal(fmt.Sprintf("%s: NFS server %s no longer serves %s as mounted at %s; restart the pods using the volume on this node so that it is mounted again",
			what, serverOf(m.Source), m.Source, m.Path)), nil
	}
	return &csi.NodeGetVolumeStatsResponse{
		Usage:           usage(st),
		VolumeCondition: &csi.VolumeCondition{Abnormal: false, Message: "NFS server " + serverOf(m.Source) + " answers"},
	}, nil
}

// mountOfVolume returns the mount at volumePath, or NotFound when it is not a
// mount of volume id: no mount at all, not NFS, not the export mounted at the
// staging path (when given), or, where kubelet's staging layout
// (<driver>/<sha256 of the volume ID>/globalmount) names the volume of the export,
// another volume.
func (s *Service) mountOfVolume(id, volumePath, stagingPath string) (mounter.MountPoint, error) {
	notFound := func(why string, args ...any) error {
		return status.Errorf(codes.NotFound, "volume %s is not mounted at %s: %s", id, volumePath, fmt.Sprintf(why, args...))
	}
	if !filepath.IsAbs(volumePath) {
		return mounter.MountPoint{}, notFound("not an absolute path")
	}
	path, parentExists, err := canonical(volumePath)
	if err != nil {
		return mounter.MountPoint{}, err
	}
	if !parentExists {
		return mounter.MountPoint{}, notFound("the path does not exist")
	}
	table, err := s.mounter.List()
	if err != nil {
		return mounter.MountPoint{}, err
	}
	m, mounted := mounter.FindMount(table, path)
	switch {
	case !mounted:
		return m, notFound("not a mount point")
	case !isNFS(m):
		return m, notFound("it is a %s mount of %s, not an NFS mount", m.FSType, m.Source)
	}
	if stagingPath != "" {
		staging, _, err := canonical(stagingPath)
		if err != nil {
			return m, err
		}
		sm, ok := mounter.FindMount(table, staging)
		if !ok || !sm.SameTree(m) {
			return m, notFound("it is not a mount of what is staged at %s", staging)
		}
	}
	want := sha256.Sum256([]byte(id))
	for _, t := range table {
		if !t.SameTree(m) {
			continue
		}
		if hash, ok := kubeletStagingHash(t.Path, s.cfg.DriverName); ok && hash != hex.EncodeToString(want[:]) {
			return m, notFound("it is a mount of the volume staged at %s", t.Path)
		}
	}
	return m, nil
}

// kubeletStagingHash returns the hex SHA-256 of the volume ID in a staging path
// of kubelet's layout, <...>/<driver>/<sha256>/globalmount.
func kubeletStagingHash(path, driver string) (string, bool) {
	if filepath.Base(path) != "globalmount" {
		return "", false
	}
	dir := filepath.Dir(path)
	hash := filepath.Base(dir)
	if filepath.Base(filepath.Dir(dir)) != driver || len(hash) != 2*sha256.Size {
		return "", false
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return "", false
	}
	return hash, true
}

func abnormal(msg string) *csi.NodeGetVolumeStatsResponse {
	return &csi.NodeGetVolumeStatsResponse{VolumeCondition: &csi.VolumeCondition{Abnormal: true, Message: msg}}
}

// usage converts statfs to CSI usage: bytes in fragment-size units (f_frsize,
// what df uses), inodes as counted by the server.
func usage(st unix.Statfs_t) []*csi.VolumeUsage {
	unit := st.Frsize
	if unit <= 0 {
		unit = st.Bsize
	}
	sub := func(a, b uint64) int64 {
		if b > a {
			return 0
		}
		return int64(a - b)
	}
	return []*csi.VolumeUsage{
		{
			Unit:      csi.VolumeUsage_BYTES,
			Total:     int64(st.Blocks) * unit,
			Available: int64(st.Bavail) * unit,
			Used:      sub(st.Blocks, st.Bfree) * unit,
		},
		{
			Unit:      csi.VolumeUsage_INODES,
			Total:     int64(st.Files),
			Available: int64(st.Ffree),
			Used:      sub(st.Files, st.Ffree),
		},
	}
}

// roundDuration keeps messages readable: whole seconds from a second up.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
