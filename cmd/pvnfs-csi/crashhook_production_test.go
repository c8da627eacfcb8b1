//go:build !pvnfs_standin

package main

import "testing"

// TestProductionBuildOffersNoCrashHook: the binary that ships neither lists nor
// accepts --test-crash-file, and its controller gets no hook.
func TestProductionBuildOffersNoCrashHook(t *testing.T) {
	offersNoFlag(t, "crash", "--test-crash-file=/tmp/crash-step")
	var o crashHookOptions
	if o.afterStep() != nil {
		t.Error("the production build has a hook")
	}
}
