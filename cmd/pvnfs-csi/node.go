package main

import (
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/mounter/standin"
	"github.com/pvnfs/pvnfs/pkg/node"
)

// nodeOptions are the flags of the node service.
type nodeOptions struct {
	nfsStandInDir  string
	mountTimeout   time.Duration
	unmountTimeout time.Duration
	statTimeout    time.Duration
}

func defaultNodeOptions() nodeOptions {
	return nodeOptions{
		// kubelet gives NodeStage/NodePublish 2 minutes; one mount attempt gets
		// half, so a retry still fits in the same call's budget.
		mountTimeout:   60 * time.Second,
		unmountTimeout: 10 * time.Second,
		statTimeout:    5 * time.Second,
	}
}

func (o *nodeOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.nfsStandInDir, "nfs-stand-in-dir", o.nfsStandInDir, "TESTING ONLY: replaces NFS mounts with bind mounts of <dir>/<server><share>, for machines without NFS")
	fs.DurationVar(&o.mountTimeout, "mount-timeout", o.mountTimeout, "node mode: deadline of each mount helper (one NFS mount attempt, one bind mount); at the deadline the helper's whole process group is killed")
	fs.DurationVar(&o.unmountTimeout, "unmount-timeout", o.unmountTimeout, "node mode: deadline of each unmount step (umount, umount -f, umount -l); a step past it is killed and the next, harder one runs")
	fs.DurationVar(&o.statTimeout, "stat-timeout", o.statTimeout, "node mode: how long a mount's health check (statfs) may take before the NFS server counts as not responding")
}

func (o *nodeOptions) validate() error {
	var errs []error
	if o.nfsStandInDir != "" && !filepath.IsAbs(o.nfsStandInDir) {
		errs = append(errs, fmt.Errorf("--nfs-stand-in-dir %q must be an absolute path", o.nfsStandInDir))
	}
	for name, d := range map[string]time.Duration{"--mount-timeout": o.mountTimeout, "--unmount-timeout": o.unmountTimeout, "--stat-timeout": o.statTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	return errors.Join(errs...)
}

// newNodeService builds the node service: real mount helpers, or the NFS stand-in
// for tests when --nfs-stand-in-dir is set.
func newNodeService(o *options) (csi.NodeServer, error) {
	runner := mounter.NewExecRunner()
	runner.DefaultTimeout = max(o.node.mountTimeout, o.node.unmountTimeout)
	var m mounter.Interface = mounter.New(runner)
	if dir := o.node.nfsStandInDir; dir != "" {
		s, err := standin.New(dir, m, runner)
		if err != nil {
			return nil, err
		}
		klog.InfoS("TESTING ONLY: NFS mounts are replaced by bind mounts of local directories (--nfs-stand-in-dir); never use this on a real node", "dir", s.Dir())
		m = s
	} else if err := checkHelpers(exec.LookPath); err != nil {
		return nil, err
	}
	return node.New(node.Config{
		NodeID:         o.nodeID,
		DriverName:     o.driverName,
		Mounter:        m,
		MountTimeout:   o.node.mountTimeout,
		UnmountTimeout: o.node.unmountTimeout,
		StatTimeout:    o.node.statTimeout,
	})
}

// checkHelpers fails at start, with the fix, when the image lacks a helper the
// node needs, instead of failing every mount later.
func checkHelpers(lookPath func(string) (string, error)) error {
	var errs []error
	for _, h := range []struct{ name, pkg string }{
		{"mount", "util-linux (mount)"},
		{"umount", "util-linux (mount)"},
		{"mount.nfs", "nfs-common (Debian) or nfs-utils"},
	} {
		if _, err := lookPath(h.name); err != nil {
			if _, err2 := lookPath("/sbin/" + h.name); err2 != nil {
				errs = append(errs, fmt.Errorf("%s not found in $PATH or /sbin: the node image needs %s", h.name, h.pkg))
			}
		}
	}
	return errors.Join(errs...)
}
