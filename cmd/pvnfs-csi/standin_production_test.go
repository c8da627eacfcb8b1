//go:build !pvnfs_standin

package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// TestProductionBuildOffersNoStandIn: the binary that ships neither lists nor
// accepts --nfs-stand-in-dir or --server-network-stand-in-dir. (test/binaries checks the built binaries themselves.)
func TestProductionBuildOffersNoStandIn(t *testing.T) {
	if help := helpText(t); strings.Contains(help, "stand-in") {
		t.Errorf("--help offers the NFS stand-in:\n%s", help)
	}
	o := defaultOptions()
	fs := flag.NewFlagSet("pvnfs-csi", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.addFlags(fs)
	for _, flag := range []string{"--nfs-stand-in-dir=/tmp/exports", "--server-network-stand-in-dir=/tmp/pods"} {
		if err := fs.Parse([]string{flag}); err == nil || !strings.Contains(err.Error(), "flag provided but not defined") {
			t.Errorf("parsing %s = %v, want the flag to be unknown", flag, err)
		}
	}
}
