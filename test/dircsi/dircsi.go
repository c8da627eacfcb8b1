// Package dircsi is a CSI driver FOR TESTS ONLY whose volumes are directories and
// whose snapshots are copies of them: the backend that really snapshots, restores
// and clones on a machine without block storage. It serves the identity and
// controller services on a unix socket, behind the real csi-provisioner and
// csi-snapshotter sidecars, so the backend VolumeSnapshots pvnfs makes go through
// the same snapshot-controller and sidecars as on a cluster.
//
// A volume lives where Options.Place says (the test puts it where the NFS stand-in
// exports the volume's server, so that what a pod writes through pvnfs is the
// backend volume's data), and Root/volumes/<id> links to it. A snapshot is a copy
// in Root/snapshots/<id>, with its record in Root/snapshots/<id>.json.
package dircsi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Options configure a driver.
type Options struct {
	// Name is the CSI driver name.
	Name string
	// Root holds the links to the volumes, the snapshots and the socket.
	Root string
	// Place returns the directory of a new volume from CreateVolume's parameters
	// (with the csi-provisioner's --extra-create-metadata keys); "" places it in
	// Root/volumes. Nil: always Root/volumes.
	Place func(ctx context.Context, params map[string]string) (string, error)
}

// Driver is a running driver.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer

	// Socket is the path of its CSI endpoint.
	Socket string

	opts Options
	srv  *grpc.Server
	mu   sync.Mutex
}

// snapshotRecord is what a snapshot's JSON file says.
type snapshotRecord struct {
	Source  string    `json:"source"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// Start serves the driver until Stop.
func Start(o Options) (*Driver, error) {
	for _, d := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(o.Root, d), 0o755); err != nil {
			return nil, err
		}
	}
	d := &Driver{Socket: filepath.Join(o.Root, "csi.sock"), opts: o}
	_ = os.Remove(d.Socket)
	ln, err := net.Listen("unix", d.Socket)
	if err != nil {
		return nil, err
	}
	d.srv = grpc.NewServer()
	csi.RegisterIdentityServer(d.srv, d)
	csi.RegisterControllerServer(d.srv, d)
	go func() { _ = d.srv.Serve(ln) }()
	return d, nil
}

// Stop stops serving.
func (d *Driver) Stop() { d.srv.Stop() }

// Snapshots lists the IDs of the snapshots the driver holds, sorted.
func (d *Driver) Snapshots() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(d.opts.Root, "snapshots", "*.json"))
	var ids []string
	for _, f := range files {
		ids = append(ids, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	sort.Strings(ids)
	return ids
}

// VolumeDir is the directory of a volume (its link resolved).
func (d *Driver) VolumeDir(id string) (string, error) {
	return filepath.EvalSymlinks(d.volumeLink(id))
}

func (d *Driver) volumeLink(id string) string { return filepath.Join(d.opts.Root, "volumes", id) }
func (d *Driver) snapshotDir(id string) string {
	return filepath.Join(d.opts.Root, "snapshots", id)
}

// GetPluginInfo implements csi.IdentityServer.
func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.opts.Name, VendorVersion: "test"}, nil
}

// GetPluginCapabilities implements csi.IdentityServer.
func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}},
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}}, nil
}

// Probe implements csi.IdentityServer.
func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

// ControllerGetCapabilities implements csi.ControllerServer.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	} {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}}})
	}
	return resp, nil
}

// checkName refuses names that are not a single path element.
func checkName(field, name string) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return status.Errorf(codes.InvalidArgument, "%s %q must be a single path element", field, name)
	}
	return nil
}

// CreateVolume implements csi.ControllerServer: a directory, filled from the
// snapshot or volume it is made from. The same name is the same volume.
func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if err := checkName("name", req.GetName()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id := req.GetName()
	size := req.GetCapacityRange().GetRequiredBytes()
	resp := &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: id, CapacityBytes: size, ContentSource: req.GetVolumeContentSource()}}
	if _, err := os.Lstat(d.volumeLink(id)); err == nil {
		return resp, nil
	}
	var from string
	switch src := req.GetVolumeContentSource(); {
	case src.GetSnapshot() != nil:
		sid := src.GetSnapshot().GetSnapshotId()
		if err := checkName("snapshot_id", sid); err != nil {
			return nil, status.Errorf(codes.NotFound, "snapshot %q does not exist", sid)
		}
		if _, err := os.Stat(d.snapshotDir(sid) + ".json"); err != nil {
			return nil, status.Errorf(codes.NotFound, "snapshot %q does not exist", sid)
		}
		from = d.snapshotDir(sid)
	case src.GetVolume() != nil:
		vid := src.GetVolume().GetVolumeId()
		if err := checkName("volume_id", vid); err != nil {
			return nil, status.Errorf(codes.NotFound, "volume %q does not exist", vid)
		}
		dir, err := d.VolumeDir(vid)
		if err != nil {
			return nil, status.Errorf(codes.NotFound, "volume %q does not exist", vid)
		}
		from = dir
	}
	dir := ""
	if d.opts.Place != nil {
		var err error
		if dir, err = d.opts.Place(ctx, req.GetParameters()); err != nil {
			return nil, status.Errorf(codes.Unavailable, "placing volume %s: %v", id, err)
		}
	}
	if dir == "" {
		dir = d.volumeLink(id)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if from != "" {
		if err := copyTree(ctx, from, dir); err != nil {
			_ = os.RemoveAll(dir)
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if dir != d.volumeLink(id) {
		if err := os.Symlink(dir, d.volumeLink(id)); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return resp, nil
}

// DeleteVolume implements csi.ControllerServer.
func (d *Driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if checkName("volume_id", req.GetVolumeId()) != nil {
		return &csi.DeleteVolumeResponse{}, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	link := d.volumeLink(req.GetVolumeId())
	if dir, err := filepath.EvalSymlinks(link); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if err := os.RemoveAll(link); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerExpandVolume implements csi.ControllerServer: a directory has no size, so
// every volume grows at once and needs nothing on the node.
func (d *Driver) ControllerExpandVolume(_ context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if _, err := os.Lstat(d.volumeLink(req.GetVolumeId())); checkName("volume_id", req.GetVolumeId()) != nil || err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", req.GetVolumeId())
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: req.GetCapacityRange().GetRequiredBytes()}, nil
}

// ValidateVolumeCapabilities implements csi.ControllerServer: every mount capability.
func (d *Driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if _, err := os.Lstat(d.volumeLink(req.GetVolumeId())); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", req.GetVolumeId())
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{VolumeCapabilities: req.GetVolumeCapabilities()}}, nil
}

// CreateSnapshot implements csi.ControllerServer: a copy of the volume's directory,
// ready at once. The same name is the same snapshot.
func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if err := checkName("name", req.GetName()); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id, source := req.GetName(), req.GetSourceVolumeId()
	if rec, err := d.readSnapshot(id); err == nil {
		if rec.Source != source {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q exists of volume %q", id, rec.Source)
		}
		return &csi.CreateSnapshotResponse{Snapshot: rec.csi(id)}, nil
	}
	dir, err := d.VolumeDir(source)
	if checkName("source_volume_id", source) != nil || err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist", source)
	}
	tmp := d.snapshotDir(id) + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := copyTree(ctx, dir, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, status.Error(codes.Internal, err.Error())
	}
	_ = os.RemoveAll(d.snapshotDir(id))
	if err := os.Rename(tmp, d.snapshotDir(id)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	rec := snapshotRecord{Source: source, Size: 1 << 30, Created: time.Now()}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(d.snapshotDir(id)+".json", b, 0o644); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateSnapshotResponse{Snapshot: rec.csi(id)}, nil
}

func (d *Driver) readSnapshot(id string) (snapshotRecord, error) {
	var rec snapshotRecord
	b, err := os.ReadFile(d.snapshotDir(id) + ".json")
	if err != nil {
		return rec, err
	}
	return rec, json.Unmarshal(b, &rec)
}

func (r snapshotRecord) csi(id string) *csi.Snapshot {
	return &csi.Snapshot{SnapshotId: id, SourceVolumeId: r.Source, SizeBytes: r.Size, CreationTime: timestamppb.New(r.Created), ReadyToUse: true}
}

// DeleteSnapshot implements csi.ControllerServer.
func (d *Driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if checkName("snapshot_id", req.GetSnapshotId()) != nil {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.Remove(d.snapshotDir(req.GetSnapshotId()) + ".json"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.RemoveAll(d.snapshotDir(req.GetSnapshotId())); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// copyTree copies the contents of from into the existing directory to, keeping
// modes, owners and times, within ctx (and a minute at most).
func copyTree(ctx context.Context, from, to string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "cp", "-a", from+"/.", to+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("copying %s to %s: %v: %s", from, to, err, out)
	}
	return nil
}
