// Package mounttest helps tests that make real mounts: it runs a test binary in a
// private mount namespace, so that every mount a test makes (or leaks, when it
// crashes) vanishes with the test process, and it skips such tests, loudly, where
// they cannot run.
//
// It is for _test.go files only.
package mounttest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// RequireAllEnv, set to 1 (make test sets it), turns every skip for a missing
// privilege into a failure: CI must run every test.
const RequireAllEnv = "PVNFS_REQUIRE_ALL"

// inNamespaceEnv is set in the re-executed test binary.
const inNamespaceEnv = "PVNFS_MOUNTTEST_PRIVATE_NS"

// Main runs the tests of a package, as root in a new private mount namespace (the
// test binary runs itself again as a child with CLONE_NEWNS; Go makes "/"
// rprivate in it). Call it from TestMain. Not root, it just runs the tests; those
// that need mounts skip (see RequireMounts).
func Main(m *testing.M) { Run(m, m.Run) }

// Run is Main for packages whose TestMain does more than m.Run (such as stopping a
// shared control plane): run is called where Main would call m.Run, and its result
// is the exit code.
func Run(m *testing.M, run func() int) {
	if os.Getenv(inNamespaceEnv) != "" || os.Geteuid() != 0 {
		os.Exit(run())
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mounttest: cannot find the test binary: %v\n", err)
		os.Exit(2)
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inNamespaceEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		os.Exit(exitErr.ExitCode())
	case errors.As(err, &exitErr):
		fmt.Fprintf(os.Stderr, "mounttest: test binary in its mount namespace died: %v\n", err)
		os.Exit(1)
	}
	// The namespace could not be made (no CAP_SYS_ADMIN): run here; tests that
	// need mounts skip or fail in RequireMounts.
	fmt.Fprintf(os.Stderr, "mounttest: cannot run the tests in a private mount namespace (%v); tests that mount will not run\n", err)
	os.Exit(run())
}

// RequireRoot skips t unless the test runs as root, or fails it when
// PVNFS_REQUIRE_ALL=1. In -short mode (make test-unit) it always skips.
func RequireRoot(t testing.TB) {
	t.Helper()
	switch {
	case testing.Short():
		missing(t, "it needs root (mount namespaces and bind mounts)")
	case os.Geteuid() != 0:
		missing(t, "it needs root (mount namespaces and bind mounts); run it as root, as make test does")
	}
}

// RequireMounts is RequireRoot for tests that mount in their own process: it also
// requires the private mount namespace Main sets up, so that nothing they mount
// can leak into the host's table.
func RequireMounts(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if os.Getenv(inNamespaceEnv) == "" {
		missing(t, "it mounts and must run in a private mount namespace: call mounttest.Main from TestMain, as root with CAP_SYS_ADMIN")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped in -short mode: %s", why)
	}
	if os.Getenv(RequireAllEnv) == "1" {
		t.Fatalf("cannot run %s: %s (%s=1 makes this a failure)", t.Name(), why, RequireAllEnv)
	}
	t.Skipf("skipped: %s (set %s=1 to make this a failure)", why, RequireAllEnv)
}
