package mounter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
)

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name                       string
		err                        error
		notMounted, protoNotSupped bool
	}{
		{name: "umount: not mounted", err: &HelperError{ExitCode: 32, Output: "umount: /x: not mounted."}, notMounted: true},
		{name: "mount.nfs: Protocol not supported", err: &HelperError{ExitCode: 32, Output: "mount.nfs: Protocol not supported"}, protoNotSupped: true},
		{name: "old mount.nfs wording", err: &HelperError{ExitCode: 32, Output: "mount.nfs: requested NFS version or transport protocol is not supported"}, protoNotSupped: true},
		{name: "killed helper is neither", err: &HelperError{Killed: true, Output: "Protocol not supported not mounted", Err: context.DeadlineExceeded}},
		{name: "access denied", err: &HelperError{ExitCode: 32, Output: "mount.nfs: access denied by server while mounting 10.0.0.1:/x"}},
		{name: "plain error", err: errors.New("not mounted")},
		{name: "nil", err: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsNotMounted(tc.err); got != tc.notMounted {
				t.Errorf("IsNotMounted = %v, want %v", got, tc.notMounted)
			}
			if got := IsProtocolNotSupported(tc.err); got != tc.protoNotSupped {
				t.Errorf("IsProtocolNotSupported = %v, want %v", got, tc.protoNotSupped)
			}
		})
	}
}

// TestMounterRealBindMounts runs the real Mounter (mount(8), umount(8),
// mountinfo) in the test's private mount namespace.
func TestMounterRealBindMounts(t *testing.T) {
	mounttest.RequireMounts(t)
	dir := t.TempDir()
	src, rw, ro := filepath.Join(dir, "src"), filepath.Join(dir, "rw"), filepath.Join(dir, "ro")
	for _, d := range []string{src, rw, ro} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := New(NewExecRunner())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Cleanup(func() {
		for _, p := range []string{ro, rw} {
			_ = m.Unmount(context.Background(), p, UnmountLazy)
		}
	})
	if err := m.Bind(ctx, src, rw, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Bind(ctx, src, ro, true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rw, "f"), []byte("x"), 0o644); err != nil {
		t.Errorf("writing through the rw bind: %v", err)
	}
	if err := os.WriteFile(filepath.Join(ro, "g"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing through the ro bind: err = %v, want EROFS", err)
	}
	if b, err := os.ReadFile(filepath.Join(ro, "f")); err != nil || string(b) != "x" {
		t.Errorf("reading through the ro bind = %q, %v", b, err)
	}
	table, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	rwm, ok1 := FindMount(table, rw)
	rom, ok2 := FindMount(table, ro)
	if !ok1 || !ok2 || rwm.ReadOnly() || !rom.ReadOnly() || !rwm.SameTree(rom) {
		t.Errorf("table: rw %+v (%v), ro %+v (%v): want both, same tree, only ro read-only", rwm, ok1, rom, ok2)
	}

	for _, mode := range []UnmountMode{UnmountNormal, UnmountLazy} {
		t.Run("unmount not mounted is no error: "+mode.String(), func(t *testing.T) {
			if err := m.Unmount(ctx, src, mode); err != nil {
				t.Errorf("Unmount(%s) of a plain directory: %v", mode, err)
			}
		})
	}
	tests := []struct {
		path string
		mode UnmountMode
	}{{rw, UnmountForce}, {ro, UnmountLazy}}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			if err := m.Unmount(ctx, tc.path, tc.mode); err != nil {
				t.Fatal(err)
			}
			table, err := m.List()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := FindMount(table, tc.path); ok {
				t.Errorf("%s still mounted after %s", tc.path, tc.mode)
			}
		})
	}
}

// recordingRunner records command lines and fails those listed in fail.
type recordingRunner struct {
	calls []string
	fail  map[string]error
}

func (r *recordingRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	r.calls = append(r.calls, line)
	for prefix, err := range r.fail {
		if strings.HasPrefix(line, prefix) {
			return nil, err
		}
	}
	return nil, nil
}

// TestMounterCommandLines pins the helper command lines production runs; the NFS
// leg cannot be mounted on this machine, so this is where its arguments are
// checked.
func TestMounterCommandLines(t *testing.T) {
	busy := &HelperError{Command: "mount", ExitCode: 32, Output: "mount: /t: cannot remount read-only"}
	tests := []struct {
		name      string
		fail      map[string]error
		do        func(m *Mounter) error
		wantCalls []string
		wantErr   bool
	}{
		{
			name: "NFS mount",
			do: func(m *Mounter) error {
				return m.Mount(context.Background(), "10.96.0.10:/data/export", "/k/globalmount", "nfs4", []string{"hard", "noresvport", "timeo=600", "retrans=2", "vers=4.2"})
			},
			wantCalls: []string{"mount -t nfs4 -o hard,noresvport,timeo=600,retrans=2,vers=4.2 10.96.0.10:/data/export /k/globalmount"},
		},
		{
			name:      "read-write bind",
			do:        func(m *Mounter) error { return m.Bind(context.Background(), "/k/globalmount", "/k/pod/mount", false) },
			wantCalls: []string{"mount -c --bind /k/globalmount /k/pod/mount"},
		},
		{
			name: "read-only bind is remounted",
			do:   func(m *Mounter) error { return m.Bind(context.Background(), "/k/globalmount", "/k/pod/mount", true) },
			wantCalls: []string{
				"mount -c --bind /k/globalmount /k/pod/mount",
				"mount -c -o remount,bind,ro /k/pod/mount",
			},
		},
		{
			name: "a bind that cannot be made read-only is undone",
			fail: map[string]error{"mount -c -o remount": busy},
			do:   func(m *Mounter) error { return m.Bind(context.Background(), "/k/globalmount", "/k/pod/mount", true) },
			wantCalls: []string{
				"mount -c --bind /k/globalmount /k/pod/mount",
				"mount -c -o remount,bind,ro /k/pod/mount",
				"umount -c -i -l /k/pod/mount",
			},
			wantErr: true,
		},
		{
			name:      "plain unmount",
			do:        func(m *Mounter) error { return m.Unmount(context.Background(), "/k/pod/mount", UnmountNormal) },
			wantCalls: []string{"umount -c -i /k/pod/mount"},
		},
		{
			name:      "force unmount",
			do:        func(m *Mounter) error { return m.Unmount(context.Background(), "/k/globalmount", UnmountForce) },
			wantCalls: []string{"umount -c -i -f /k/globalmount"},
		},
		{
			name:      "lazy unmount",
			do:        func(m *Mounter) error { return m.Unmount(context.Background(), "/k/globalmount", UnmountLazy) },
			wantCalls: []string{"umount -c -i -l /k/globalmount"},
		},
		{
			name:      "unmounting what is not mounted succeeds",
			fail:      map[string]error{"umount": &HelperError{Command: "umount", ExitCode: 32, Output: "umount: /k/x: not mounted."}},
			do:        func(m *Mounter) error { return m.Unmount(context.Background(), "/k/x", UnmountNormal) },
			wantCalls: []string{"umount -c -i /k/x"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recordingRunner{fail: tc.fail}
			err := tc.do(New(r))
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, want error %v", err, tc.wantErr)
			}
			if strings.Join(r.calls, "\n") != strings.Join(tc.wantCalls, "\n") {
				t.Errorf("ran\n  %s\nwant\n  %s", strings.Join(r.calls, "\n  "), strings.Join(tc.wantCalls, "\n  "))
			}
		})
	}
}
