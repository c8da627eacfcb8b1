//go:build !pvnfs_standin

package main

import (
	"flag"

	"github.com/pvnfs/pvnfs/pkg/controller"
)

// serverNetworkOptions is empty in the production build: the controller reaches
// server pods over the pod network. Tests build pvnfs-csi with -tags pvnfs_standin
// (servernet_test_build.go) to reach simulated ones through unix sockets.
type serverNetworkOptions struct{}

func (serverNetworkOptions) addFlags(*flag.FlagSet) {}

func (serverNetworkOptions) validate() error { return nil }

// dial returns nil: TCP to the pod's IP.
func (serverNetworkOptions) dial() controller.DialFunc { return nil }
