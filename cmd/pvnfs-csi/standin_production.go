//go:build !pvnfs_standin

package main

import (
	"flag"

	"github.com/pvnfs/pvnfs/pkg/mounter"
)

// standInOptions is empty in the production build: the NFS stand-in (test/standin),
// which turns every NFS mount into a bind mount of a node-local directory, is one
// flag away from every node writing to its own disk, so the binaries that ship do not
// contain it at all. Tests build pvnfs-csi with -tags pvnfs_standin
// (standin_test_build.go) to get it.
type standInOptions struct{}

func (standInOptions) addFlags(*flag.FlagSet) {}

func (standInOptions) validate() error { return nil }

// wrap returns the real mounter unchanged.
func (standInOptions) wrap(m mounter.Interface, _ mounter.Runner) (mounter.Interface, bool, error) {
	return m, false, nil
}
