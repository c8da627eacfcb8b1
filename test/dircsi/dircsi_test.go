package dircsi

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestVolumesSnapshotsAndClones: a volume is a directory where Place says, a snapshot
// a copy that later writes do not change, a restore and a clone copies of those, and
// names are idempotent.
func TestVolumesSnapshotsAndClones(t *testing.T) {
	root, placed := t.TempDir(), filepath.Join(t.TempDir(), "export-of-a-server")
	d, err := Start(Options{Name: "dir.test", Root: root, Place: func(_ context.Context, p map[string]string) (string, error) {
		return p["place"], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	create := func(name string, params map[string]string, src *csi.VolumeContentSource) string {
		t.Helper()
		resp, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params, VolumeContentSource: src,
			CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
		if err != nil {
			t.Fatalf("CreateVolume(%s): %v", name, err)
		}
		dir, err := d.VolumeDir(resp.Volume.VolumeId)
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	src := create("src", map[string]string{"place": placed}, nil)
	if resolved, _ := filepath.EvalSymlinks(placed); src != resolved {
		t.Fatalf("volume is at %s, want where Place said, %s", src, placed)
	}
	if again := create("src", map[string]string{"place": placed}, nil); again != src {
		t.Errorf("CreateVolume again: %s, want %s", again, src)
	}
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "src"})
	if err != nil || !snap.Snapshot.ReadyToUse {
		t.Fatalf("CreateSnapshot = %v, %v", snap, err)
	}
	if _, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap", SourceVolumeId: "other"}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("CreateSnapshot of the same name from another volume = %v, want AlreadyExists", err)
	}
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}

	restored := create("restored", nil, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snap"}}})
	clone := create("clone", nil, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "src"}}})
	if got := read(filepath.Join(restored, "a")); got != "before" {
		t.Errorf("restore reads %q, want the snapshot's %q", got, "before")
	}
	if got := read(filepath.Join(clone, "a")); got != "after" {
		t.Errorf("clone reads %q, want the source's %q", got, "after")
	}
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "x", VolumeContentSource: &csi.VolumeContentSource{
		Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "missing"}}}}); status.Code(err) != codes.NotFound {
		t.Errorf("restore from a missing snapshot = %v, want NotFound", err)
	}

	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: "snap"}); err != nil {
		t.Fatal(err)
	}
	if left := d.Snapshots(); len(left) != 0 {
		t.Errorf("snapshots after DeleteSnapshot: %v", left)
	}
	if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "src"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(placed); !os.IsNotExist(err) {
		t.Errorf("the deleted volume's directory is still there: %v", err)
	}
	for _, bad := range []string{"../escape", ".hidden", ""} {
		if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: bad}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("CreateVolume(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}
