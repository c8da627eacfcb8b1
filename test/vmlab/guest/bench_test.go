//go:build vmlab

package guest_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// benchReps is how often each data-path workload runs; the report takes medians.
const benchReps = 3

// TestBenchDataPath measures the data path for `make bench` (test/bench), not as
// a test: a WordPress-like tree (about 3,000 files, 50 MB) extracted, walked with
// lstat and read back, and a 64 MiB fsync'd write, through each engine and
// directly on the backend, and each engine's restart-to-writable time. The guest's
// CPU is emulated: only ratios between the targets mean anything. Results go to
// out/bench-datapath.json. The lab's test suites never run it.
func TestBenchDataPath(t *testing.T) {
	ctx := testContext(t, 40*time.Minute)
	archive := filepath.Join(guest.WorkDir, "wp-tree.tar")
	shape, err := guest.WriteTree(archive, 3000, 50<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := guest.Run(ctx, "uname", "-r")
	result := guest.DataPath{KernelRelease: rel, Tree: shape}
	t.Logf("tree: %d files in %d directories, %d MiB", shape.Files, shape.Dirs, shape.Bytes>>20)

	backend, err := guest.NewBackend(ctx, "bench-direct", guest.BackendSpec{SizeMiB: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = backend.Remove(context.Background()) }()
	direct := guest.DataPathTarget{Name: "backend (ext4)"}
	measureFiles(t, &direct, backend.MountPath, archive)
	result.Targets = append(result.Targets, direct)

	for _, engine := range engines {
		v, n := startVolume(t, ctx, "bench-"+engine, map[string]string{"serverEngine": engine})
		target := guest.DataPathTarget{Name: engine}
		measureFiles(t, &target, n.Path("/mnt/vol"), archive)
		w := startWorkload(t, ctx, n, "/mnt/vol", 2)
		for i := 0; i < benchReps; i++ {
			stop := time.Now()
			if err := v.Pod.Terminate(30 * time.Second); err != nil {
				t.Error(err) // go on: the applications need a server again to stop
			}
			if _, err := v.Start(ctx, v.Sandbox); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			target.RestartToWritable = append(target.RestartToWritable, w.resumed(t, rctx, stop, time.Now()))
			cancel()
		}
		w.stop(t)
		result.Targets = append(result.Targets, target)
	}
	b, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(guest.OutDir, guest.DataPathFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// measureFiles runs the file workloads benchReps times in dir and records them.
func measureFiles(t *testing.T, target *guest.DataPathTarget, dir, archive string) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < benchReps; i++ {
		tree := filepath.Join(dir, "tree")
		if err := os.RemoveAll(tree); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		dropCaches(t)
		start := time.Now()
		tctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		_, err := guest.Run(tctx, "tar", "-xf", archive, "-C", tree)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		syncfs(t, tree)
		target.Extract = append(target.Extract, time.Since(start))

		dropCaches(t)
		start = time.Now()
		files := 0
		err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			files++
			return unix.Lstat(p, &st)
		})
		if err != nil {
			t.Fatal(err)
		}
		target.Walk = append(target.Walk, time.Since(start))

		dropCaches(t)
		start = time.Now()
		var read int64
		err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, f)
			read += n
			f.Close()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		target.Read = append(target.Read, time.Since(start))

		big := filepath.Join(dir, "write-64m")
		start = time.Now()
		if err := writeSynced(big, 64); err != nil {
			t.Fatal(err)
		}
		target.Write = append(target.Write, time.Since(start))
		if err := os.Remove(big); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s run %d: extract %s, walk %d entries %s, read %d MiB %s, 64 MiB write %s", target.Name, i+1,
			target.Extract[i].Round(time.Millisecond), files, target.Walk[i].Round(time.Millisecond),
			read>>20, target.Read[i].Round(time.Millisecond), target.Write[i].Round(time.Millisecond))
	}
}

// writeSynced writes mib MiB in 1 MiB blocks and fsyncs once, as dd conv=fsync.
func writeSynced(path string, mib int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	block := []byte(strings.Repeat("pvnfs-data-path\n", 1<<16))
	for i := 0; i < mib; i++ {
		if _, err := f.Write(block); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dropCaches empties the guest's page, dentry and inode caches: client and
// server share this kernel, so both start cold.
func dropCaches(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		t.Fatal(err)
	}
}

func syncfs(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
}
