package main

import (
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/pvnfs/pvnfs/pkg/mounter"
	"github.com/pvnfs/pvnfs/pkg/node"
)

// nodeOptions are the flags of the node service.
type nodeOptions struct {
	// standIn is empty in the production build; tests build pvnfs-csi with the tag
	// pvnfs_standin to get the NFS stand-in (standin_test_build.go).
	standIn        standInOptions
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
	o.standIn.addFlags(fs)
	fs.DurationVar(&o.mountTimeout, "mount-timeout", o.mountTimeout, "node mode: deadline of each mount helper (one NFS mount attempt, one bind mount); at the deadline the helper's whole process group is killed")
	fs.DurationVar(&o.unmountTimeout, "unmount-timeout", o.unmountTimeout, "node mode: deadline of each unmount step (umount, umount -f, umount -l); a step past it is killed and the next, harder one runs")
	fs.DurationVar(&o.statTimeout, "stat-timeout", o.statTimeout, "node mode: how long a mount's health check (statfs) may take before the NFS server counts as not responding")
}

func (o *nodeOptions) validate() error {
	errs := []error{o.standIn.validate()}
	for name, d := range map[string]time.Duration{"--mount-timeout": o.mountTimeout, "--unmount-timeout": o.unmountTimeout, "--stat-timeout": o.statTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	return errors.Join(errs...)
}

// newNodeService builds the node service with the real mount helpers (or, only in
// a test build, the NFS stand-in when its flag is set).
func newNodeService(o *options) (csi.NodeServer, error) {
	runner := mounter.NewExecRunner()
	runner.DefaultTimeout = max(o.node.mountTimeout, o.node.unmountTimeout)
	m, stoodIn, err := o.node.standIn.wrap(mounter.New(runner), runner)
	if err != nil {
		return nil, err
	}
	if !stoodIn {
		if err := checkHelpers(exec.LookPath); err != nil {
			return nil, err
		}
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
