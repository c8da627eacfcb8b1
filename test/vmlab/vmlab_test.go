package vmlab_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/vmlab"
)

// suites are the guests TestKernelNFS boots, each running the guest tests whose
// names start with its prefix.
var suites = []struct {
	name, prefix string
	args         []string
}{
	{"server", "TestServer", []string{"-test.run=^TestServer"}},
	// The outage test waits out 150 s of outage; the other node tests run
	// beside it, one at a time.
	{"node", "TestNode", []string{"-test.run=^TestNode", "-test.parallel=2"}},
}

// benchPrefix names the guest tests that make bench runs (test/bench), not make
// test.
const benchPrefix = "TestBench"

// TestEveryGuestTestRuns fails for a guest test that no suite runs: a name
// outside the suites' prefixes would build, vet and never run.
func TestEveryGuestTestRuns(t *testing.T) {
	files, err := filepath.Glob("guest/*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no guest tests found: %v", err)
	}
	decl := regexp.MustCompile(`(?m)^func (Test\w*)\(t \*testing\.T\)`)
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllSubmatch(b, -1) {
			name := string(m[1])
			found++
			ok := strings.HasPrefix(name, benchPrefix)
			for _, s := range suites {
				ok = ok || strings.HasPrefix(name, s.prefix)
			}
			if !ok {
				t.Errorf("%s: %s runs in no guest: name it TestServer…, TestNode… or %s…", f, name, benchPrefix)
			}
		}
	}
	if found == 0 {
		t.Error("found no guest test declarations: the pattern no longer matches them")
	}
}

// TestKernelNFS boots the lab's guest (Debian's kernel with nfsd and the NFS
// client) twice at once, each with one emulated CPU: one guest runs the server
// tests (the server pod on the real nfsd and on NFS-Ganesha, mounted by the
// kernel's NFS client), the other the node tests (the node plugin on two nodes
// through restarts, moves and outages of the server). Each guest test shows up
// as a subtest here, with its output.
//
// PVNFS_VMLAB_RUN, a -test.run pattern for the guest tests, boots one guest
// with just those, for working on one test.
func TestKernelNFS(t *testing.T) {
	mounttest.RequireRoot(t)
	if run := os.Getenv("PVNFS_VMLAB_RUN"); run != "" {
		boot(t, "kernel-nfs", []string{"-test.run=" + run, "-test.parallel=2"}, 15*time.Minute)
		return
	}
	for _, suite := range suites {
		t.Run(suite.name, func(t *testing.T) {
			t.Parallel()
			// The guests normally finish in 6–10 min under make test's other
			// packages; the deadline is for a guest that hangs, not a pace.
			boot(t, "kernel-nfs-"+suite.name, suite.args, 20*time.Minute)
		})
	}
}

// boot builds the binaries, boots the guest running the guest test binary with
// args, and replays its results as subtests.
func boot(t *testing.T, name string, args []string, timeout time.Duration) {
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
	if err := vmlab.Standard.Build(ctx, repo, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest: kernel %s from %s; run files in %s", guest.KernelRelease, guest.Dir, dir)
	res, err := guest.Boot(ctx, repo, vmlab.Run{
		Dir:     dir,
		Args:    append([]string{"-test.v=test2json", "-test.timeout=" + timeout.String()}, args...),
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
