package mounter

import (
	"os"
	"path/filepath"
	"testing"
)

const mountinfoFixture = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
300 27 0:52 / /var/lib/kubelet/plugins/kubernetes.io/csi/nfs.pvnfs.io/abc/globalmount rw,relatime - nfs4 10.96.0.10:/data/export rw,vers=4.2,hard
301 27 0:52 / /var/lib/kubelet/pods/uid\0401/volumes/kubernetes.io~csi/pv/mount ro,relatime - nfs4 10.96.0.10:/data/export rw,vers=4.2
302 27 254:0 /tmp/standin/10.96.0.11/data/export//deleted /mnt/old rw - ext4 /dev/vda rw
303 27 254:0 /tmp/a /mnt/stack rw - ext4 /dev/vda rw
304 303 254:0 /tmp/b /mnt/stack rw - ext4 /dev/vda rw
`

func TestReadMountInfo(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(file, []byte(mountinfoFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	table, err := ReadMountInfo(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != 7 {
		t.Fatalf("got %d mounts, want 7", len(table))
	}
	staging, target := table[2], table[3]
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "NFS source", got: staging.Source, want: "10.96.0.10:/data/export"},
		{name: "NFS type", got: staging.FSType, want: "nfs4"},
		{name: "device", got: staging.Device, want: "0:52"},
		{name: "escaped space decoded", got: target.Path, want: "/var/lib/kubelet/pods/uid 1/volumes/kubernetes.io~csi/pv/mount"},
		{name: "per-mount ro", got: target.ReadOnly(), want: true},
		{name: "staging rw", got: staging.ReadOnly(), want: false},
		{name: "bind shares the tree", got: target.SameTree(staging), want: true},
		{name: "other filesystem is another tree", got: table[1].SameTree(staging), want: false},
		{name: "deleted root kept", got: table[4].Root, want: "/tmp/standin/10.96.0.11/data/export//deleted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestFindAndContainingMount(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(file, []byte(mountinfoFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	table, err := ReadMountInfo(file)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		find   func(string) (MountPoint, bool)
		path   string
		wantID int // 0: none
	}{
		{name: "find: top of a stack", find: func(p string) (MountPoint, bool) { return FindMount(table, p) }, path: "/mnt/stack", wantID: 304},
		{name: "find: not a mount point", find: func(p string) (MountPoint, bool) { return FindMount(table, p) }, path: "/mnt", wantID: 0},
		{name: "find: exact path only", find: func(p string) (MountPoint, bool) { return FindMount(table, p) }, path: "/mnt/stack/x", wantID: 0},
		{name: "containing: below a mount", find: func(p string) (MountPoint, bool) { return ContainingMount(table, p) }, path: "/mnt/stack/x/y", wantID: 304},
		{name: "containing: root", find: func(p string) (MountPoint, bool) { return ContainingMount(table, p) }, path: "/etc/passwd", wantID: 27},
		{name: "containing: no prefix confusion", find: func(p string) (MountPoint, bool) { return ContainingMount(table, p) }, path: "/proc2/x", wantID: 27},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := tc.find(tc.path)
			if ok != (tc.wantID != 0) || m.ID != tc.wantID {
				t.Errorf("got ID %d (found %v), want %d", m.ID, ok, tc.wantID)
			}
		})
	}
}

func TestCanonicalPath(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	resolvedDir, _ := filepath.EvalSymlinks(dir)
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "symlinked parent resolved", in: filepath.Join(dir, "link", "mnt"), want: filepath.Join(resolvedDir, "real", "mnt")},
		{name: "last component kept even when missing", in: filepath.Join(dir, "real", "missing"), want: filepath.Join(resolvedDir, "real", "missing")},
		{name: "dots cleaned", in: filepath.Join(dir, "real") + "/./x/../mnt/", want: filepath.Join(resolvedDir, "real", "mnt")},
		{name: "missing parent", in: filepath.Join(dir, "nope", "mnt"), wantErr: true},
		{name: "relative path", in: "some/path", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CanonicalPath(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("CanonicalPath(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
