//go:build pvnfs_standin

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Run with: go test -tags pvnfs_standin ./cmd/pvnfs-csi/ (make test does).

func TestStandInFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantDir string
		wantErr string
	}{
		{name: "unset", wantDir: ""},
		{name: "absolute", args: []string{"--nfs-stand-in-dir=/tmp/exports"}, wantDir: "/tmp/exports"},
		{name: "relative", args: []string{"--nfs-stand-in-dir=exports"}, wantDir: "exports", wantErr: "--nfs-stand-in-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := checkNodeFlags(t, tc.args, tc.wantErr)
			if o.standIn.dir != tc.wantDir {
				t.Errorf("stand-in dir = %q, want %q", o.standIn.dir, tc.wantDir)
			}
		})
	}
}

func TestStandInFlagIsMarkedTestBuildOnlyInHelp(t *testing.T) {
	want := "TEST BUILD ONLY: replaces NFS mounts with bind mounts of <dir>/<server><share>, for machines without NFS"
	if help := helpText(t); !strings.Contains(help, "-nfs-stand-in-dir") || !strings.Contains(help, want) {
		t.Errorf("--help does not document --nfs-stand-in-dir as %q:\n%s", want, help)
	}
}

func TestNewNodeServiceWithStandIn(t *testing.T) {
	o := defaultOptions()
	o.nodeID = "node-a"
	o.node.standIn.dir = filepath.Join(t.TempDir(), "exports")
	svc, err := newNodeService(&o)
	if err != nil || svc == nil {
		t.Fatalf("newNodeService() = %v, %v", svc, err)
	}
	if _, err := os.Stat(o.node.standIn.dir); err != nil {
		t.Errorf("stand-in directory not created: %v", err)
	}
	o.nodeID = ""
	if _, err := newNodeService(&o); err == nil {
		t.Error("newNodeService without a node ID succeeded")
	}
}
