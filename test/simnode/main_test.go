package simnode_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/mounter/mounttest"
	"github.com/pvnfs/pvnfs/test/simnode"
)

// binary is the pvnfs-csi built by TestMain ("" when not root or in -short mode:
// every test skips then).
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if os.Geteuid() == 0 && !testing.Short() {
		dir, err := os.MkdirTemp("", "simnode-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if binary, err = simnode.Build(ctx, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// startNode starts a simulated node that the test cleans up, even when it fails.
func startNode(tb testing.TB, name, standInDir string, args ...string) *simnode.Node {
	tb.Helper()
	mounttest.RequireRoot(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := simnode.Start(ctx, simnode.Options{Binary: binary, Name: name, StandInDir: standInDir, Args: args})
	if err != nil {
		tb.Fatalf("starting node %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			if b, err := os.ReadFile(n.LogPath()); err == nil {
				tb.Logf("plugin log of node %s:\n%s", name, b)
			}
		}
		if err := n.Close(); err != nil {
			tb.Errorf("closing node %s: %v", name, err)
		}
	})
	return n
}
