package guest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pvnfs/pvnfs/pkg/procgroup"
)

// Paths inside the guest.
const (
	// BinDir holds the binaries the host built for the run.
	BinDir = "/share/bin"
	// OutDir is where the run leaves its logs for the host.
	OutDir = "/share/out"
	// ImageDir is the root image, the lower layer of every pod's root.
	ImageDir = "/image"
	// WorkDir is the lab's scratch tmpfs: pod layers, backend files, specs.
	WorkDir = "/run/lab"
)

// EnvInGuest is set by guest-init.sh: the fixtures refuse to run without it.
const EnvInGuest = "PVNFS_VMLAB_GUEST"

// InGuest reports whether this process runs in the lab's guest.
func InGuest() bool { return os.Getenv(EnvInGuest) == "1" }

// Setup prepares the guest once: the scratch tmpfs and the cluster network.
func Setup(ctx context.Context) error {
	if !InGuest() {
		return fmt.Errorf("the VM lab's fixtures run only in its guest (%s=1): they reconfigure the machine's network and mounts", EnvInGuest)
	}
	if err := os.MkdirAll(WorkDir, 0o755); err != nil {
		return err
	}
	// tmpfs, not the root's overlay: overlayfs refuses an upper layer on overlayfs.
	if _, err := Run(ctx, "mount", "-t", "tmpfs", "-o", "size=70%", "tmpfs", WorkDir); err != nil {
		return err
	}
	return setupNetwork(ctx)
}

// Run runs a helper program with a deadline (a minute unless ctx has one) in its
// own process group, and returns its trimmed output. The error carries the
// command and its output.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	out, err := procgroup.Run(ctx, procgroup.Options{KillGrace: 2 * time.Second}, name, args...)
	return strings.TrimSpace(string(out)), err
}
