package deploy

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// backendClass is the ReadWriteOnce StorageClass the test volumes' backend PVCs use.
// It is not the cluster's default, so a backend PVC in it proves that the example
// StorageClass's backendStorageClass reached pvnfs.
const backendClass = "test-rwo"

// defaultClass is the cluster's default StorageClass, as most clusters have one: the
// chart's StorageClass (no backendStorageClass) and the WordPress example's MariaDB
// use it.
const defaultClass = "test-default"

// fullClass is a backend StorageClass whose volumes never grow: its resizer records
// a VolumeResizeFailed event instead, as a backend out of space would.
const fullClass = "test-full"

// shared is the package's local control plane, started by the first test that needs
// it. Its backend provisioner plays the role of the cluster's block storage.
var shared = localcluster.Shared{
	Setup: func(ctx context.Context, c *localcluster.Cluster) error {
		for _, b := range []localcluster.BackendClass{
			{Name: backendClass, AllowExpansion: true},
			{Name: defaultClass, Default: true, AllowExpansion: true},
			{Name: fullClass, AllowExpansion: true, FailResize: true},
		} {
			if err := c.AddBackendClass(ctx, b); err != nil {
				return err
			}
		}
		return c.StartBackendProvisioner()
	},
}

// pvnfsCSI is the pvnfs-csi binary TestMain builds from this checkout ("" in -short
// mode).
var pvnfsCSI string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	if !testing.Short() {
		dir, err := os.MkdirTemp("", "pvnfs-deploy-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out := filepath.Join(dir, "pvnfs-csi")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/pvnfs/pvnfs/cmd/pvnfs-csi")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build ./cmd/pvnfs-csi: %v\n%s", err, b)
			return 1
		}
		pvnfsCSI = out
	}
	defer stopEnv()
	return shared.Main(m)
}
