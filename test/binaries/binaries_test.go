package binaries

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// module is the pvnfs module path; every package of it starts with it.
const module = "github.com/pvnfs/pvnfs/"

// forbidden are strings whose presence in a shipped binary means test code was
// linked into it. Function names survive `-s -w` (the runtime keeps them in
// pclntab for tracebacks), so package paths show in a stripped binary too.
var forbidden = []string{
	module + "test/",                 // the stand-in (test/standin) and every test helper
	"nfs-stand-in-dir",               // the stand-in's flag, in --help and the flag set
	"test-crash-file",                // the fault tests' crash hook (cmd/pvnfs-csi/crashhook_test_build.go)
	"server-network-stand-in-dir",    // the pod network stand-in's flag (cmd/pvnfs-csi/servernet_test_build.go)
	module + "pkg/mounter.(*Fake)",   // the node's in-memory mounter for unit tests
	module + "pkg/mounter/mounttest", // root and mount-namespace helpers of tests
	"/commandtest",                   // the fake command runner of pkg/nfsserver
	"/kerneltest",                    // the fake nfsd filesystem
}

// TestProductionBinariesHoldNoTestCode builds the binaries with `make build` and
// reads them; a pvnfs-csi built with the stand-in's tag is the control that shows the
// check finds what it looks for.
func TestProductionBinariesHoldNoTestCode(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds both binaries (about a minute)")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := t.TempDir()
	run(ctx, t, repo, "make", "--no-print-directory", "build", "BIN="+bin)
	for _, name := range []string{"pvnfs-csi", "pvnfs-server"} {
		t.Run(name, func(t *testing.T) {
			found := scan(t, filepath.Join(bin, name))
			if len(found) > 0 {
				t.Errorf("the production %s contains test code: %s", name, strings.Join(found, ", "))
			}
			// The same through the build graph: no package of the binary is a test
			// package (wherever its strings end up).
			for _, p := range strings.Fields(run(ctx, t, repo, "go", "list", "-deps", "./cmd/"+name)) {
				if strings.HasPrefix(p, module) && (strings.HasPrefix(p, module+"test/") || strings.HasSuffix(p, "test")) {
					t.Errorf("./cmd/%s depends on the test package %s", name, p)
				}
			}
		})
	}

	t.Run("control: the stand-in build is caught", func(t *testing.T) {
		tagged := filepath.Join(bin, "pvnfs-csi-standin")
		run(ctx, t, repo, "go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", "pvnfs_standin", "-o", tagged, "./cmd/pvnfs-csi")
		found := strings.Join(scan(t, tagged), ", ")
		for _, want := range []string{module + "test/", "nfs-stand-in-dir", "test-crash-file"} {
			if !strings.Contains(found, want) {
				t.Errorf("a pvnfs-csi built with -tags pvnfs_standin: the check did not find %q (found: %s)", want, found)
			}
		}
	})
}

// scan returns the forbidden strings that occur in the file.
func scan(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range forbidden {
		if bytes.Contains(b, []byte(f)) {
			found = append(found, f)
		}
	}
	return found
}

func run(ctx context.Context, t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}
