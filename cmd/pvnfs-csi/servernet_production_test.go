//go:build !pvnfs_standin

package main

import "testing"

// TestProductionBuildOffersNoServerNetworkStandIn: the binary that ships neither
// lists nor accepts --server-network-stand-in-dir: it reaches server pods over the pod
// network only.
func TestProductionBuildOffersNoServerNetworkStandIn(t *testing.T) {
	offersNoFlag(t, "stand-in", "--server-network-stand-in-dir=/tmp/pods")
}
