package vmlab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/vmlab"
)

// binaries are what every boot passes in: both pvnfs binaries, as their images
// carry them, and the guest test binary.
var binaries = vmlab.Binaries{
	Packages: map[string]string{
		"pvnfs-server": "./cmd/pvnfs-server",
		"pvnfs-csi":    "./cmd/pvnfs-csi",
	},
	Tests: map[string]string{vmlab.GuestTest: "./test/vmlab/guest"},
}

// TestKernelNFS boots the lab's guest (Debian's kernel with nfsd and the NFS
// client) and runs the guest tests there: the server pod on the real nfsd and on
// NFS-Ganesha, mounted by the kernel's NFS client. Each guest test shows up as a
// subtest here, with its output.
func TestKernelNFS(t *testing.T) {
	mounttest.RequireRoot(t)
	run := os.Getenv("PVNFS_VMLAB_RUN") // a -test.run pattern for the guest, when working on one test
	if run == "" {
		run = "."
	}
	boot(t, "kernel-nfs", run, 12*time.Minute)
}

// boot builds the binaries, boots the guest running the guest tests that match
// run, and replays their results as subtests.
func boot(t *testing.T, name, run string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Minute)
	defer cancel()
	repo, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	guest, err := vmlab.Install(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	// Kept when the test fails: the console, the guest's kernel log and every
	// pod's log are what explains a failure.
	if err := os.MkdirAll(filepath.Join(os.TempDir(), "pvnfs-vmlab"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(filepath.Join(os.TempDir(), "pvnfs-vmlab"), name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
	if err := binaries.Build(ctx, repo, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest: kernel %s from %s; run files in %s", guest.KernelRelease, guest.Dir, dir)
	res, err := guest.Boot(ctx, repo, vmlab.Run{
		Dir:     dir,
		Args:    []string{"-test.v=test2json", "-test.run=" + run, "-test.timeout=" + timeout.String()},
		Timeout: timeout + 2*time.Minute,
	})
	events, perr := vmlab.Events(ctx, res.Output)
	cases, top := vmlab.Tree(events)
	for _, c := range cases {
		vmlab.Replay(t, c)
	}
	t.Logf("qemu ran %s; logs in %s (console.log, out/)", res.Wall.Round(time.Second), dir)
	if err != nil {
		t.Fatal(err)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	if len(cases) == 0 || res.RC != 0 {
		t.Fatalf("the guest test binary exited %d having run %d tests; its own output:\n%s", res.RC, len(cases), strings.Join(top, ""))
	}
}
