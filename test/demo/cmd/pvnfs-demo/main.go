// Command pvnfs-demo is `make demo`: pvnfs's WordPress story on one machine, with
// a local control plane, the real driver and simulated nodes (package demo). With
// --down it is `make demo-down`: it ends a running demo from another shell, or
// cleans up after one that was killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pvnfs/pvnfs/test/demo"
	"github.com/pvnfs/pvnfs/test/localcluster"
)

func main() {
	var o struct {
		stateDir    string
		down        bool
		replicas    int
		keepRunning bool
	}
	flag.StringVar(&o.stateDir, "state-dir", "", "the demo's state directory: cluster, logs, nodes, pid files (default: demo-state in the repository)")
	flag.BoolVar(&o.down, "down", false, "end the demo running in --state-dir (or clean up after one that was killed), then exit")
	flag.IntVar(&o.replicas, "replicas", 6, "WordPress replicas to scale to (at least 2)")
	flag.BoolVar(&o.keepRunning, "keep-running", true, "after the table, keep everything running until Ctrl-C or --down; false: remove everything at once")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s [flags]\n\n"+
			"Runs pvnfs's WordPress demo on this machine (make demo), or ends it (--down, make demo-down).\n"+
			"Needs root: each simulated node's plugin runs in a mount namespace of its own.\n\nFlags:\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := validate(&o.stateDir, o.replicas); err != nil {
		fmt.Fprintf(os.Stderr, "pvnfs-demo: %v\n", err)
		os.Exit(2)
	}
	if o.down {
		if err := demo.Stop(o.stateDir, os.Stdout, 2*time.Minute); err != nil {
			fmt.Fprintf(os.Stderr, "pvnfs-demo --down: %v\n", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(o.stateDir, o.replicas, o.keepRunning))
}

func validate(stateDir *string, replicas int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: each simulated node's plugin runs in a mount namespace of its own and mounts (run it as root, as make test does)")
	}
	if replicas < 2 {
		return fmt.Errorf("--replicas=%d: at least 2, or nothing is shared", replicas)
	}
	if *stateDir == "" {
		root, err := localcluster.RepoRoot()
		if err != nil {
			return err
		}
		*stateDir = filepath.Join(root, "demo-state")
	}
	abs, err := filepath.Abs(*stateDir)
	*stateDir = abs
	return err
}

func run(stateDir string, replicas int, keepRunning bool) int {
	st, err := demo.Claim(stateDir, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pvnfs-demo: %v\n", err)
		return 1
	}
	// The first signal ends the demo: the context is cancelled and everything is
	// removed. Later ones only say that this is under way: leaving half way would
	// leave processes and mounts behind (make demo-down cleans those up).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		fmt.Printf("\n%v: stopping the demo and removing everything it started...\n", sig)
		cancel()
		for range sigs {
			fmt.Println("Still removing everything; this takes a few seconds.")
		}
	}()

	p := demo.NewProgress(os.Stdout, st.Record)
	demo.Banner(p)
	s, err := demo.Up(ctx, demo.Options{Dir: stateDir, Progress: p})
	var res *demo.Result
	if err == nil {
		res, err = demo.WordPress(ctx, s, replicas)
	}
	if err == nil {
		demo.Conclusion(p, s, res, keepRunning)
		if keepRunning {
			<-ctx.Done()
		}
	}
	failed := err != nil && ctx.Err() == nil
	if failed {
		fmt.Fprintf(os.Stderr, "\npvnfs-demo failed: %v\n\n", err)
	}

	p.Step("Removing everything: the kubelet, the node plugins with their mount namespaces (and so every mount), csi-provisioner, the controller, the control plane")
	if s != nil {
		if err := s.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "pvnfs-demo: stopping: %v\n", err)
			failed = true
		}
	}
	if left := st.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "pvnfs-demo: still there after stopping: %s (make demo-down removes them)\n", strings.Join(left, ", "))
		return 1
	}
	if err := st.Release(failed); err != nil {
		fmt.Fprintf(os.Stderr, "pvnfs-demo: removing %s: %v\n", stateDir, err)
		return 1
	}
	if failed {
		fmt.Fprintf(os.Stderr, "Nothing is running any more. Logs are kept in %s (cluster/logs, controller, nodes/*/plugin.log); make demo-down removes them.\n", stateDir)
		return 1
	}
	p.Text("Everything the demo started is stopped; no process, mount or etcd directory is left, and %s is removed.\n", stateDir)
	return 0
}
