//go:build !pvnfs_standin

package main

import "flag"

// crashHookOptions is empty in the production build: a flag that makes the
// controller kill itself has no place in the binary that ships. Fault tests build
// pvnfs-csi with -tags pvnfs_standin (crashhook_test_build.go) to get it.
type crashHookOptions struct{}

func (crashHookOptions) addFlags(*flag.FlagSet) {}

func (crashHookOptions) validate() error { return nil }

// afterStep returns no hook.
func (crashHookOptions) afterStep() func(step, volumeID string) { return nil }
