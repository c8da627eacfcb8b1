package guest

import (
	"archive/tar"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// DataPathFile is where the data-path benchmark leaves its results in the
// share's out/ directory.
const DataPathFile = "bench-datapath.json"

// DataPath is what the data-path benchmark measured in the guest: the same
// workloads through each engine's NFS server and directly on the backend.
type DataPath struct {
	// KernelRelease is the guest's kernel.
	KernelRelease string
	// Tree describes the WordPress-like tree the file workloads use.
	Tree TreeShape
	// Targets are the backend itself and each engine, in that order.
	Targets []DataPathTarget
}

// DataPathTarget is one target's samples.
type DataPathTarget struct {
	// Name is "backend (ext4)", "kernel" or "ganesha".
	Name string
	// Extract is tar -x of the tree plus a syncfs; Walk an lstat of every file
	// with cold caches; Read reading every file back with cold caches; Write a
	// 64 MiB write in 1 MiB blocks and one fsync.
	Extract, Walk, Read, Write []time.Duration
	// RestartToWritable is, for an engine, how long applications writing through
	// the server paused across a graceful restart (SIGTERM, a new container).
	RestartToWritable []time.Duration
}

// TreeShape is the size of a generated tree.
type TreeShape struct {
	Files, Dirs int
	Bytes       int64
}

// WriteTree writes a tar archive of a tree shaped like a WordPress installation
// with plugins, themes and uploads: many small PHP, CSS and JS files and fewer,
// larger images, about files files and bytes bytes in all. The same seed gives
// the same tree.
func WriteTree(path string, files int, bytes int64, seed uint64) (TreeShape, error) {
	f, err := os.Create(path)
	if err != nil {
		return TreeShape{}, err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, seed))
	tw := tar.NewWriter(f)
	shape := TreeShape{}
	dirs := map[string]bool{}
	mkdir := func(d string) error {
		for p := d; p != "." && !dirs[p]; p = filepath.Dir(p) {
			dirs[p] = true
			shape.Dirs++
			if err := tw.WriteHeader(&tar.Header{Name: p + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	}
	// One in 20 files is an image carrying about half the bytes; the rest share
	// the other half (a few KiB each, as PHP sources are).
	images := files / 20
	imageSize := bytes / 2 / int64(images)
	smallSize := bytes / 2 / int64(files-images)
	buf := make([]byte, 4*imageSize)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for i := 0; i < files; i++ {
		var name string
		var size int64
		switch {
		case i < images:
			name = filepath.Join("wp-content/uploads", time.Month(1+i%12).String(), "image-"+strconv.Itoa(i)+".jpg")
			size = imageSize/2 + r.Int64N(imageSize)
		case i%3 == 0:
			name = filepath.Join("wp-content/plugins", "plugin-"+strconv.Itoa(i%40), "includes", "class-"+strconv.Itoa(i)+".php")
			size = smallSize/2 + r.Int64N(smallSize)
		case i%3 == 1:
			name = filepath.Join("wp-content/themes", "theme-"+strconv.Itoa(i%8), "assets", "style-"+strconv.Itoa(i)+".css")
			size = smallSize/2 + r.Int64N(smallSize)
		default:
			name = filepath.Join("wp-includes", "js", "dist", "module-"+strconv.Itoa(i%25), "script-"+strconv.Itoa(i)+".js")
			size = smallSize/2 + r.Int64N(smallSize)
		}
		if err := mkdir(filepath.Dir(name)); err != nil {
			return shape, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
			return shape, err
		}
		off := r.Int64N(int64(len(buf)) - size)
		if _, err := tw.Write(buf[off : off+size]); err != nil {
			return shape, err
		}
		shape.Files++
		shape.Bytes += size
	}
	if err := tw.Close(); err != nil {
		return shape, err
	}
	return shape, f.Close()
}
