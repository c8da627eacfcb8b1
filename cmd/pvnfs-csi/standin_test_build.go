//go:build pvnfs_standin

package main

import (
	"flag"
	"fmt"
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/test/standin"
)

// standInOptions selects the NFS stand-in of a test build (go build -tags
// pvnfs_standin, as test/simnode does): machines without an NFS client run the real
// node plugin with bind mounts standing for its NFS mounts. The production build
// (standin_production.go) has neither the flag nor the package.
type standInOptions struct {
	dir string
}

func (o *standInOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.dir, "nfs-stand-in-dir", o.dir, "TEST BUILD ONLY: replaces NFS mounts with bind mounts of <dir>/<server><share>, for machines without NFS")
}

func (o *standInOptions) validate() error {
	if o.dir != "" && !filepath.IsAbs(o.dir) {
		return fmt.Errorf("--nfs-stand-in-dir %q must be an absolute path", o.dir)
	}
	return nil
}

// wrap returns the stand-in over m when --nfs-stand-in-dir is set, and whether it did.
func (o *standInOptions) wrap(m mounter.Interface, runner mounter.Runner) (mounter.Interface, bool, error) {
	if o.dir == "" {
		return m, false, nil
	}
	s, err := standin.New(o.dir, m, runner)
	if err != nil {
		return nil, false, err
	}
	klog.InfoS("TEST BUILD: NFS mounts are replaced by bind mounts of local directories (--nfs-stand-in-dir); never use this on a real node", "dir", s.Dir())
	return s, true, nil
}
