//go:build pvnfs_standin

package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/controller"
)

// Run with: go test -tags pvnfs_standin ./cmd/pvnfs-csi/ (make test does).

func TestCrashFileFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unset"},
		{name: "absolute", args: []string{"--test-crash-file=/tmp/crash-step"}},
		{name: "relative", args: []string{"--test-crash-file=crash-step"}, wantErr: "--test-crash-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultOptions()
			o.mode, o.controller.serverImage = modeController, "example.invalid/pvnfs-server:test"
			fs := flag.NewFlagSet("pvnfs-csi", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.addFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("validate() = %v, want %q", err, tc.wantErr)
			}
			if got := o.controller.crashHook.afterStep() != nil; got != (len(tc.args) > 0) {
				t.Errorf("hook set = %v with %v", got, tc.args)
			}
		})
	}
}

// TestCrashFileArming: the hook fires once, at the step the file names, and the
// file is gone afterwards so the restarted controller runs normally.
func TestCrashFileArming(t *testing.T) {
	o := crashHookOptions{file: filepath.Join(t.TempDir(), "crash-step")}
	if o.armedFor(controller.StepServiceEnsured) {
		t.Fatal("armed without a file")
	}
	if err := os.WriteFile(o.file, []byte(controller.StepBackendPVCEnsured+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.armedFor(controller.StepServiceEnsured) {
		t.Error("armed at another step than the file names")
	}
	if !o.armedFor(controller.StepBackendPVCEnsured) {
		t.Fatal("not armed at the step the file names")
	}
	if _, err := os.Stat(o.file); !os.IsNotExist(err) {
		t.Errorf("the file is still there after firing: %v", err)
	}
	if o.armedFor(controller.StepBackendPVCEnsured) {
		t.Error("armed twice")
	}
}

func TestCrashFileFlagIsMarkedTestBuildOnlyInHelp(t *testing.T) {
	if help := helpText(t); !strings.Contains(help, "-test-crash-file") || !strings.Contains(help, "TEST BUILD ONLY: when this file names a step of CreateVolume") {
		t.Errorf("--help does not document --test-crash-file as test-only:\n%s", help)
	}
}
