package standin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
)

func TestMain(m *testing.M) { mounttest.Main(m) }

func TestParseSource(t *testing.T) {
	tests := []struct {
		in, server, share string
		wantErr           bool
	}{
		{in: "10.96.0.10:/data/export", server: "10.96.0.10", share: "/data/export"},
		{in: "[fd00::10]:/data/export", server: "fd00::10", share: "/data/export"},
		{in: "10.96.0.10:/data/export/", server: "10.96.0.10", share: "/data/export"},
		{in: "10.96.0.10:data", wantErr: true},
		{in: "/data/export", wantErr: true},
		{in: "10.96.0.10:/data/../etc", wantErr: true},
		{in: "[fd00::10:/x", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			server, share, err := ParseSource(tc.in)
			if (err != nil) != tc.wantErr || server != tc.server || share != tc.share {
				t.Errorf("ParseSource(%q) = %q, %q, %v", tc.in, server, share, err)
			}
			if err == nil && tc.in[len(tc.in)-1] != '/' && Source(server, share) != tc.in {
				t.Errorf("Source(%q, %q) = %q, want %q back", server, share, Source(server, share), tc.in)
			}
		})
	}
}

func TestTranslate(t *testing.T) {
	table := []mounter.MountPoint{
		{ID: 1, Path: "/", Root: "/", Device: "254:0", FSType: "ext4", Source: "/dev/vda"},
		{ID: 2, Path: "/srv", Root: "/", Device: "254:1", FSType: "ext4", Source: "/dev/vdb"},
		{ID: 3, Path: "/k/staging", Root: "/standin/10.96.0.10/data/export", Device: "254:1", FSType: "ext4"},
		{ID: 4, Path: "/k/pod", Root: "/standin/10.96.0.10/data/export", Device: "254:1", FSType: "ext4", Options: []string{"ro"}},
		{ID: 5, Path: "/k/old", Root: "/standin/fd00::1/data/export//deleted", Device: "254:1", FSType: "ext4"},
		{ID: 6, Path: "/k/other-disk", Root: "/standin/10.96.0.10/data/export", Device: "254:0", FSType: "ext4"},
		{ID: 7, Path: "/k/server-dir", Root: "/standin/10.96.0.10", Device: "254:1", FSType: "ext4"},
		{ID: 8, Path: "/k/sibling", Root: "/standin2/10.96.0.10/data/export", Device: "254:1", FSType: "ext4"},
	}
	got := Translate("/srv/standin", table)
	want := map[int]string{3: "10.96.0.10:/data/export", 4: "10.96.0.10:/data/export", 5: "[fd00::1]:/data/export"}
	for _, m := range got {
		t.Run(m.Path, func(t *testing.T) {
			if src, ok := want[m.ID]; ok {
				if m.Source != src || m.FSType != "nfs4" {
					t.Errorf("got %s %s, want nfs4 %s", m.FSType, m.Source, src)
				}
				return
			}
			if m.FSType == "nfs4" {
				t.Errorf("mount %d wrongly shown as NFS: %+v", m.ID, m)
			}
		})
	}
	if table[2].FSType != "ext4" {
		t.Error("Translate changed its input")
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    []string
		want    nfsOptions
		wantErr bool
	}{
		{name: "defaults negotiate", opts: []string{"hard", "noresvport", "timeo=600", "retrans=2"}, want: nfsOptions{major: 4, minor: -1}},
		{name: "vers=4.2", opts: []string{"vers=4.2"}, want: nfsOptions{major: 4, minor: 2}},
		{name: "nfsvers=4 minorversion=1 in one string", opts: []string{"nfsvers=4,minorversion=1", "ro"}, want: nfsOptions{major: 4, minor: 1, readOnly: true}},
		{name: "vers=3", opts: []string{"vers=3"}, want: nfsOptions{major: 3, minor: -1}},
		{name: "unknown option", opts: []string{"hard", "bogus"}, wantErr: true},
		{name: "bad version", opts: []string{"vers=four"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOptions(tc.opts)
			if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
				t.Errorf("parseOptions(%q) = %+v, %v; want %+v (error %v)", tc.opts, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// newStandIn returns a stand-in over the real mounter in a temp dir, and a
// function that makes a mount point.
func newStandIn(t *testing.T) (*StandIn, func(string) string) {
	t.Helper()
	mounttest.RequireMounts(t)
	root := t.TempDir()
	runner := &mounter.ExecRunner{DefaultTimeout: time.Minute, KillGrace: 5 * time.Second}
	real := mounter.New(runner)
	s, err := New(filepath.Join(root, "standin"), real, runner)
	if err != nil {
		t.Fatal(err)
	}
	mkdir := func(name string) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		p, _ = mounter.CanonicalPath(p)
		t.Cleanup(func() {
			for range 4 {
				_ = real.Unmount(context.Background(), p, mounter.UnmountLazy)
			}
		})
		return p
	}
	return s, mkdir
}

func TestStandInMountIsBindOfExport(t *testing.T) {
	s, mkdir := newStandIn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	staging, pod := mkdir("staging"), mkdir("pod")
	if err := s.Mount(ctx, "10.96.0.10:/data/export", staging, "nfs4", []string{"hard", "vers=4.2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind(ctx, staging, pod, true); err != nil {
		t.Fatal(err)
	}
	export := ExportDir(s.Dir(), "10.96.0.10", "/data/export")
	if err := os.WriteFile(filepath.Join(staging, "index.php"), []byte("<?php"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(export, "index.php")); err != nil || string(b) != "<?php" {
		t.Errorf("file written through the mount is not in the export: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(pod, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through the read-only bind: %v, want EROFS", err)
	}
	table, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{staging, pod} {
		m, ok := mounter.FindMount(table, p)
		if !ok || m.FSType != "nfs4" || m.Source != "10.96.0.10:/data/export" {
			t.Errorf("%s in the table: %+v (found %v), want nfs4 10.96.0.10:/data/export", p, m, ok)
		}
	}
	if _, err := s.Statfs(pod); err != nil {
		t.Errorf("Statfs of a healthy mount: %v", err)
	}
}

func TestStandInFaultHooks(t *testing.T) {
	tests := []struct {
		name    string
		hook    func(dir string) error
		options []string
		timeout time.Duration
		check   func(t *testing.T, err error)
	}{
		{
			name:    "server speaks only 4.1: 4.2 is Protocol not supported",
			hook:    func(dir string) error { return SetVersions(dir, "10.96.0.20", "4.1") },
			options: []string{"vers=4.2"},
			check: func(t *testing.T, err error) {
				if !mounter.IsProtocolNotSupported(err) {
					t.Errorf("err = %v, want protocol not supported", err)
				}
			},
		},
		{
			name:    "server speaks only 4.1: 4.1 mounts",
			hook:    func(dir string) error { return SetVersions(dir, "10.96.0.20", "4.1") },
			options: []string{"vers=4.1"},
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Errorf("err = %v", err)
				}
			},
		},
		{
			name:    "NFSv3 refused",
			options: []string{"vers=3"},
			check: func(t *testing.T, err error) {
				if !mounter.IsProtocolNotSupported(err) {
					t.Errorf("err = %v, want protocol not supported", err)
				}
			},
		},
		{
			name:    "unknown option refused like the kernel does",
			options: []string{"hard", "nosuchoption"},
			check: func(t *testing.T, err error) {
				var he *mounter.HelperError
				if !errors.As(err, &he) || he.ExitCode != 32 {
					t.Errorf("err = %v, want mount.nfs exit 32", err)
				}
			},
		},
		{
			name:    "unreachable server: helper hangs and is killed at the deadline",
			hook:    func(dir string) error { return SetUnreachable(dir, "10.96.0.20", true) },
			timeout: 500 * time.Millisecond,
			check: func(t *testing.T, err error) {
				var he *mounter.HelperError
				if !errors.As(err, &he) || !he.Killed || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err = %v, want a killed helper", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, mkdir := newStandIn(t)
			if tc.hook != nil {
				if err := tc.hook(s.Dir()); err != nil {
					t.Fatal(err)
				}
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 30 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			target := mkdir("staging")
			err := s.Mount(ctx, "10.96.0.20:/data/export", target, "nfs4", tc.options)
			tc.check(t, err)
			table, lerr := s.List()
			if lerr != nil {
				t.Fatal(lerr)
			}
			if _, mounted := mounter.FindMount(table, target); mounted != (err == nil) {
				t.Errorf("mounted = %v after err = %v", mounted, err)
			}
		})
	}
}

func TestStandInStatfsBlocksWhileUnreachable(t *testing.T) {
	s, mkdir := newStandIn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	staging := mkdir("staging")
	if err := s.Mount(ctx, "10.96.0.30:/data/export", staging, "nfs4", nil); err != nil {
		t.Fatal(err)
	}
	if err := SetUnreachable(s.Dir(), "10.96.0.30", true); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Statfs(staging); done <- err }()
	for s.BlockedStatfs() != 1 {
		select {
		case err := <-done:
			t.Fatalf("Statfs of an unreachable server returned (%v) instead of blocking", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := SetUnreachable(s.Dir(), "10.96.0.30", false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Statfs after the server came back: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Statfs still blocked after the server came back")
	}
	// A plain umount of a mount of an unreachable server hangs like umount(8).
	if err := SetUnreachable(s.Dir(), "10.96.0.30", true); err != nil {
		t.Fatal(err)
	}
	uctx, ucancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ucancel()
	if err := s.Unmount(uctx, staging, mounter.UnmountNormal); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("plain umount with the server unreachable: %v, want killed at the deadline", err)
	}
	if err := s.Unmount(ctx, staging, mounter.UnmountLazy); err != nil {
		t.Errorf("lazy umount with the server unreachable: %v", err)
	}
}

func TestStandInMakeStale(t *testing.T) {
	s, mkdir := newStandIn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, fresh := mkdir("old"), mkdir("fresh")
	if err := s.Mount(ctx, "10.96.0.40:/data/export", old, "nfs4", nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "wp-config.php"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MakeStale(s.Dir(), "10.96.0.40", "/data/export"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Statfs(old); !errors.Is(err, unix.ESTALE) {
		t.Errorf("Statfs of the old mount = %v, want ESTALE", err)
	}
	if err := s.Mount(ctx, "10.96.0.40:/data/export", fresh, "nfs4", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Statfs(fresh); err != nil {
		t.Errorf("Statfs of a new mount: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(fresh, "wp-config.php")); err != nil || string(b) != "secret" {
		t.Errorf("a new mount does not see the files: %q, %v", b, err)
	}
	table, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	o, _ := mounter.FindMount(table, old)
	f, _ := mounter.FindMount(table, fresh)
	if o.SameTree(f) || o.Source != f.Source {
		t.Errorf("old %+v and new %+v mounts: want the same source, different trees", o, f)
	}
}
