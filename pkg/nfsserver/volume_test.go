package nfsserver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

func stat(t *testing.T, path string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPrepareVolume(t *testing.T) {
	type layout struct {
		uid, gid uint32
		mode     uint32
	}
	tests := []struct {
		name       string
		setup      func(t *testing.T, root string)
		owner      *serverconfig.Owner
		mode       *serverconfig.Mode
		wantExport layout
		wantErr    string
		// check runs after a successful prepare.
		check func(t *testing.T, root string)
	}{
		{name: "fresh volume with lost+found", setup: func(t *testing.T, root string) {
			mkdirs(t, filepath.Join(root, "lost+found"))
		}, wantExport: layout{0, 0, 0o755}, check: func(t *testing.T, root string) {
			if st := stat(t, filepath.Join(root, ".pvnfs")); st.Mode&0o777 != 0o700 {
				t.Errorf("state dir mode %04o, want 0700", st.Mode&0o777)
			}
			if _, err := os.Stat(filepath.Join(root, "lost+found")); err != nil {
				t.Error(err)
			}
			if _, err := os.Stat(filepath.Join(root, ".pvnfs", probeFile)); err != nil {
				t.Errorf("write probe: %v", err)
			}
		}},
		{name: "owner and mode with setgid", owner: &serverconfig.Owner{UID: 33, GID: 33}, mode: mode(0o2775), wantExport: layout{33, 33, 0o2775}},
		{name: "only the export root changes, never the tree below it", owner: &serverconfig.Owner{UID: 1000, GID: 1000}, mode: mode(0o770),
			setup: func(t *testing.T, root string) {
				mkdirs(t, filepath.Join(root, "export", "app"))
				if err := os.WriteFile(filepath.Join(root, "export", "app", "data"), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}, wantExport: layout{1000, 1000, 0o770}, check: func(t *testing.T, root string) {
				for _, p := range []string{"export/app", "export/app/data"} {
					if st := stat(t, filepath.Join(root, p)); st.Uid != 0 || st.Gid != 0 {
						t.Errorf("%s owner %d:%d, want it untouched (0:0)", p, st.Uid, st.Gid)
					}
				}
				if st := stat(t, filepath.Join(root, "export", "app", "data")); st.Mode&0o7777 != 0o600 {
					t.Errorf("file mode %04o, want it untouched", st.Mode&0o7777)
				}
			}},
		{name: "nothing asked, nothing changed", setup: func(t *testing.T, root string) {
			mkdirs(t, filepath.Join(root, "export"))
			if err := os.Chmod(filepath.Join(root, "export"), 0o711); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(root, "export"), 7, 8); err != nil {
				t.Fatal(err)
			}
		}, wantExport: layout{7, 8, 0o711}},
		{name: "export is a file", setup: func(t *testing.T, root string) {
			if err := os.WriteFile(filepath.Join(root, "export"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "exists and is not a directory"},
		{name: "volume root missing", setup: func(t *testing.T, root string) {
			if err := os.Remove(root); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "vol")
			mkdirs(t, root)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			c := serverconfig.Default()
			c.VolumeID, c.VolumeRoot, c.ExportOwner, c.ExportMode = "pvc-1", root, tc.owner, tc.mode
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := prepareVolume(ctx, c)
			if tc.wantErr != "" {
				var se *engine.StepError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !asStep(err, &se) || se.Remedy == "" {
					t.Fatalf("prepareVolume() = %v, want a step error with a remedy containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := stat(t, filepath.Join(root, "export"))
			if got := (layout{st.Uid, st.Gid, st.Mode & 0o7777}); got != tc.wantExport {
				t.Errorf("export root %+v, want %+v", got, tc.wantExport)
			}
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

// TestPrepareVolumeLeavesCorrectRootAlone: a second start with the same owner and
// mode changes nothing, not even the inode's change time.
func TestPrepareVolumeLeavesCorrectRootAlone(t *testing.T) {
	c := serverconfig.Default()
	c.VolumeID, c.VolumeRoot, c.ExportOwner, c.ExportMode = "pvc-1", t.TempDir(), &serverconfig.Owner{UID: 33, GID: 33}, mode(0o2775)
	if err := prepareVolume(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	before := stat(t, c.ExportDir()).Ctim
	time.Sleep(20 * time.Millisecond)
	if err := prepareVolume(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if after := stat(t, c.ExportDir()).Ctim; after != before {
		t.Errorf("export root changed on a second start (ctime %v -> %v)", before, after)
	}
}

// TestWriteProber: a write that is slow but has been in flight for less than the
// hung threshold passes the check; one blocked for longer fails it; no second
// write starts beside one in flight.
func TestWriteProber(t *testing.T) {
	dir := t.TempDir()
	p := newWriteProber(dir, time.Hour)
	if err := p.probe(context.Background()); err != nil {
		t.Fatalf("probe on a writable dir: %v", err)
	}

	release := make(chan struct{})
	writes := 0
	p.write = func(string) error {
		writes++
		<-release
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.probe(ctx); err != nil {
		t.Fatalf("probe on a slow write = %v, want healthy (in flight for less than the hung threshold)", err)
	}
	p.mu.Lock()
	p.hungAfter = 10 * time.Millisecond // the same write, now blocked for longer than the threshold
	p.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	if err := p.probe(context.Background()); err == nil || !strings.Contains(err.Error(), "has been blocked since") {
		t.Fatalf("probe with a write blocked beyond the threshold = %v, want it reported as hung", err)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		busy := p.inFlight
		p.mu.Unlock()
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the blocked write never finished")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if writes != 1 {
		t.Errorf("%d writes started, want 1: no second write beside one in flight", writes)
	}

	missing := newWriteProber(filepath.Join(dir, "missing"), time.Hour)
	if err := missing.probe(context.Background()); err == nil {
		t.Error("probe in a missing directory succeeded")
	}
}

func TestHealthAnswers(t *testing.T) {
	ok := engine.Check{Name: checkRPC}
	rpcDown := engine.Check{Name: checkRPC, Err: errTest("connection refused")}
	backendDown := engine.Check{Name: checkBackend, Err: errTest("read-only file system")}
	tests := []struct {
		name        string
		phase       string
		checks      []engine.Check
		wantHealthy bool
		wantReady   bool
	}{
		{name: "starting", phase: phaseStarting},
		{name: "serving, all good", phase: phaseServing, checks: []engine.Check{ok, {Name: checkBackend}}, wantHealthy: true, wantReady: true},
		{name: "serving, no checks yet", phase: phaseServing},
		{name: "NFS does not answer", phase: phaseServing, checks: []engine.Check{rpcDown, {Name: checkBackend}}},
		{name: "backend broken: unhealthy but still ready for clients' reclaims", phase: phaseServing,
			checks: []engine.Check{ok, backendDown}, wantReady: true},
		{name: "stopping", phase: phaseStopping, checks: []engine.Check{ok}},
		{name: "failed", phase: phaseFailed, checks: []engine.Check{ok}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealth()
			h.setPhase(tc.phase, nil)
			h.setChecks(tc.checks, time.Now())
			if h.healthy() != tc.wantHealthy || h.ready() != tc.wantReady {
				t.Errorf("healthy %v ready %v, want %v %v", h.healthy(), h.ready(), tc.wantHealthy, tc.wantReady)
			}
		})
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

func mkdirs(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mode(m serverconfig.Mode) *serverconfig.Mode { return &m }

func asStep(err error, target **engine.StepError) bool {
	se, ok := err.(*engine.StepError)
	if ok {
		*target = se
	}
	return ok
}
