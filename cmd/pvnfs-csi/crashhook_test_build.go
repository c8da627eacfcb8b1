//go:build pvnfs_standin

package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/controller"
)

// crashHookOptions let a fault test crash the controller at a named step of
// CreateVolume (controller.Config.AfterStep): the test writes the step's name into
// --test-crash-file, and the first CreateVolume to finish that step removes the
// file and kills the process with SIGKILL, as a crash there would. Only test builds
// (go build -tags pvnfs_standin) have it; crashhook_production.go is empty.
type crashHookOptions struct {
	file string
}

func (o *crashHookOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.file, "test-crash-file", o.file, fmt.Sprintf("TEST BUILD ONLY: when this file names a step of CreateVolume (%s), the controller removes it and kills itself right after that step", strings.Join(controller.Steps(), ", ")))
}

func (o *crashHookOptions) validate() error {
	if o.file != "" && !filepath.IsAbs(o.file) {
		return fmt.Errorf("--test-crash-file %q must be an absolute path", o.file)
	}
	return nil
}

// afterStep returns the hook for controller.Config.AfterStep, nil when unset.
func (o *crashHookOptions) afterStep() func(step, volumeID string) {
	if o.file == "" {
		return nil
	}
	klog.InfoS("TEST BUILD: the controller kills itself after the CreateVolume step named in --test-crash-file; never use this on a real cluster", "file", o.file)
	return func(step, volumeID string) {
		if !o.armedFor(step) {
			return
		}
		klog.InfoS("TEST BUILD: crashing after a step of CreateVolume (--test-crash-file)", "step", step, "volumeID", volumeID)
		klog.Flush()
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process; this call never returns
	}
}

// armedFor reports whether the file names step, and takes it away: of concurrent
// calls finishing the step, the one that removes the file crashes the process.
func (o *crashHookOptions) armedFor(step string) bool {
	b, err := os.ReadFile(o.file)
	if err != nil {
		return false
	}
	named := strings.TrimSpace(string(b))
	if named != step {
		if !slices.Contains(controller.Steps(), named) {
			klog.ErrorS(nil, "TEST BUILD: --test-crash-file names no step of CreateVolume", "file", o.file, "names", named, "steps", controller.Steps())
		}
		return false
	}
	return os.Remove(o.file) == nil
}
