//go:build !pvnfs_standin

package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// TestProductionBuildOffersNoStandIn: the binary that ships neither lists nor
// accepts --nfs-stand-in-dir. (test/binaries checks the built binaries themselves.)
func TestProductionBuildOffersNoStandIn(t *testing.T) {
	offersNoFlag(t, "stand-in", "--nfs-stand-in-dir=/tmp/exports")
}

// offersNoFlag fails when --help mentions word or the flag set accepts arg.
func offersNoFlag(t *testing.T, word, arg string) {
	t.Helper()
	if help := helpText(t); strings.Contains(help, word) {
		t.Errorf("--help offers %s:\n%s", word, help)
	}
	o := defaultOptions()
	fs := flag.NewFlagSet("pvnfs-csi", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.addFlags(fs)
	if err := fs.Parse([]string{arg}); err == nil || !strings.Contains(err.Error(), "flag provided but not defined") {
		t.Errorf("parsing %s = %v, want the flag to be unknown", arg, err)
	}
}
