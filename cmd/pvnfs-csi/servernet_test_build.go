//go:build pvnfs_standin

package main

import (
	"flag"
	"fmt"
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/test/standin"
)

// serverNetworkOptions selects, in a test build only, the pod network stand-in:
// simulated server pods have IPs nothing routes to, so the controller reaches a
// server's health port (the flush before a snapshot) through a unix socket that the
// test's simulated server listens on. The production build
// (servernet_production.go) has neither the flag nor the package.
type serverNetworkOptions struct {
	dir string
}

func (o *serverNetworkOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.dir, "server-network-stand-in-dir", o.dir, "TEST BUILD ONLY: reach a server pod's health port <ip>:<port> through the unix socket <dir>/<ip>_<port>.sock, for simulated pods")
}

func (o *serverNetworkOptions) validate() error {
	if o.dir != "" && !filepath.IsAbs(o.dir) {
		return fmt.Errorf("--server-network-stand-in-dir %q must be an absolute path", o.dir)
	}
	return nil
}

// dial returns the stand-in's dialer when the flag is set, else nil (TCP).
func (o *serverNetworkOptions) dial() controller.DialFunc {
	if o.dir == "" {
		return nil
	}
	klog.InfoS("TEST BUILD: server pods are reached through unix sockets instead of the pod network (--server-network-stand-in-dir); never use this in a cluster", "dir", o.dir)
	return standin.HealthDialer(o.dir)
}
