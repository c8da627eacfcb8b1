//go:build !pvnfs_standin

package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// TestProductionBuildOffersNoCrashHook: the binary that ships neither lists nor
// accepts --test-crash-file. (test/binaries checks the built binaries themselves.)
func TestProductionBuildOffersNoCrashHook(t *testing.T) {
	if help := helpText(t); strings.Contains(help, "crash") {
		t.Errorf("--help offers the crash hook:\n%s", help)
	}
	o := defaultOptions()
	fs := flag.NewFlagSet("pvnfs-csi", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.addFlags(fs)
	if err := fs.Parse([]string{"--test-crash-file=/tmp/crash-step"}); err == nil || !strings.Contains(err.Error(), "flag provided but not defined") {
		t.Errorf("parsing --test-crash-file = %v, want the flag to be unknown", err)
	}
	if o.controller.crashHook.afterStep() != nil {
		t.Error("the production build has a hook")
	}
}
