//go:build vmlab

package guest_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/node"
	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// engines are the server engines every server test runs against.
var engines = []string{"kernel", "ganesha"}

// testContext returns a context that ends with the test or after d.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newVolume creates a volume on a 512 MiB backend and removes it, with its pods,
// when the test ends.
func newVolume(t *testing.T, ctx context.Context, name string, params map[string]string) *guest.Volume {
	t.Helper()
	return newVolumeOn(t, ctx, name, params, guest.BackendSpec{SizeMiB: 512})
}

// newVolumeOn is newVolume on a backend of its own description.
func newVolumeOn(t *testing.T, ctx context.Context, name string, params map[string]string, backend guest.BackendSpec) *guest.Volume {
	t.Helper()
	v, err := guest.NewVolume(ctx, name, params, backend)
	if err != nil {
		t.Fatalf("creating volume %s: %v", name, err)
	}
	t.Cleanup(func() {
		if v.Pod != nil && t.Failed() {
			t.Logf("server log (%s), last lines:\n%s", v.Pod.Log, v.Pod.LogTail(30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := v.Close(ctx); err != nil {
			t.Errorf("removing volume %s: %v", name, err)
		}
	})
	return v
}

var nodeSeq atomic.Int32

// newNode creates a node and removes it when the test ends; its NFS mounts are
// unmounted first.
func newNode(t *testing.T, ctx context.Context, name string) *guest.Node {
	t.Helper()
	n, err := guest.NewNode(ctx, name, fmt.Sprintf("10.244.0.%d", 10+nodeSeq.Add(1)))
	if err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if mounts, err := n.NFSMounts(); err == nil {
			for i := len(mounts) - 1; i >= 0; i-- {
				if _, err := n.Exec(ctx, "umount", "-l", mounts[i].Path); err != nil {
					t.Logf("unmounting %s on %s: %v", mounts[i].Path, name, err)
				}
			}
		}
		if err := n.Remove(ctx); err != nil {
			t.Errorf("removing node %s: %v", name, err)
		}
	})
	return n
}

// mountOptions are the node plugin's options for a volume whose StorageClass sets
// none, with the NFS version.
func mountOptions(version string) []string {
	return append(node.DefaultMountOptions(), "vers="+version)
}

// mountVolume mounts the volume's export in the node at target with the node
// plugin's default options.
func mountVolume(t *testing.T, ctx context.Context, n *guest.Node, v *guest.Volume, target, version string) {
	t.Helper()
	start := time.Now()
	if err := n.Mount(ctx, v.Context().Source(), target, mountOptions(version)); err != nil {
		t.Fatalf("mounting %s at %s on %s (NFS %s): %v", v.Context().Source(), target, n.Name, version, err)
	}
	t.Logf("mounted %s at %s on %s with NFS %s in %s", v.Context().Source(), target, n.Name, version, time.Since(start).Round(time.Millisecond))
}

// dmesgSince returns the kernel log lines that contain any of words.
func dmesgGrep(t *testing.T, words ...string) []string {
	t.Helper()
	out, err := guest.Run(context.Background(), "dmesg")
	if err != nil {
		t.Fatalf("dmesg: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				lines = append(lines, l)
				break
			}
		}
	}
	return lines
}

// listDir returns the names in a directory.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
