// Command bench measures pvnfs against a real local control plane
// (test/localcluster) and simulated nodes with real mounts (test/simnode), and
// writes docs/benchmarks.md: provisioning and deletion of N volumes at once through
// the csi-provisioner sidecar next to a lower bound (the same objects created
// directly), the API requests the controller sends per volume, the mount fan-out on
// one node, and the controller's footprint with 1,000 volumes. `make bench` runs it.
//
//	go run ./test/bench                      # everything, rewrites docs/benchmarks.md
//	go run ./test/bench -phases fanout -out /tmp/b.md
//
// It needs root (mount namespaces, the control plane's tools) and the tools of
// test/tools/install.sh, which it installs when missing. Every process, mount and
// /dev/shm directory it makes is removed when it ends, also on failure or Ctrl-C;
// -keep-logs keeps the logs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags, registered in addFlags and checked in validate.
type options struct {
	out              string
	phases           string
	sizes            string
	minSamples       int
	minReps          int
	nodes            int
	fanoutTargets    string
	fanoutSamples    int
	footprintVolumes int
	footprintWorkers int
	lowerWorkers     int
	// Overrides of the chart's csi-provisioner settings, for experiments; 0 keeps
	// the chart's.
	provisionerQPS     float64
	provisionerBurst   int
	provisionerWorkers int
	keepLogs           bool
	timeout            time.Duration
}

func defaultOptions() options {
	return options{
		out:              "docs/benchmarks.md",
		phases:           "fanout,provisioning,footprint,datapath",
		sizes:            "1,50,200",
		minSamples:       5,
		minReps:          3,
		nodes:            3,
		fanoutTargets:    "1,100,500",
		fanoutSamples:    500,
		footprintVolumes: 1000,
		// The cluster phases take about 15 min; the data path's guest up to 45 min
		// on a busy machine.
		timeout: 90 * time.Minute,
	}
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.out, "out", o.out, "Markdown file to write, relative to the repository root; - for standard output")
	fs.StringVar(&o.phases, "phases", o.phases, "comma-separated phases to run: fanout, provisioning, footprint, datapath (the VM lab's real kernel; the report marks the others as not run)")
	fs.StringVar(&o.sizes, "sizes", o.sizes, "comma-separated numbers of PVCs created at once in the provisioning phase")
	fs.IntVar(&o.minSamples, "min-samples", o.minSamples, "a size smaller than this is repeated until it has this many per-PVC samples (N=1 runs 5 times)")
	fs.IntVar(&o.minReps, "min-runs", o.minReps, "every size runs at least this many times (pvnfs and the lower bound alternating which goes first); totals are the median")
	fs.IntVar(&o.nodes, "nodes", o.nodes, "simulated nodes of the control plane (the server pods spread over them)")
	fs.StringVar(&o.fanoutTargets, "fanout-targets", o.fanoutTargets, "comma-separated numbers of pods one volume is published to on one node")
	fs.IntVar(&o.fanoutSamples, "fanout-samples", o.fanoutSamples, "at least this many publish and unpublish calls per target count (rounds = samples / targets)")
	fs.IntVar(&o.footprintVolumes, "footprint-volumes", o.footprintVolumes, "volumes provisioned for the controller's footprint")
	fs.IntVar(&o.footprintWorkers, "footprint-workers", o.footprintWorkers, "concurrent CreateVolume calls of the footprint phase; 0: the chart's csi-provisioner --worker-threads")
	fs.IntVar(&o.lowerWorkers, "lower-bound-workers", o.lowerWorkers, "volumes the lower bound creates (and deletes) at a time, each volume's objects one after another; 0: as many as csi-provisioner's --worker-threads gives pvnfs")
	fs.Float64Var(&o.provisionerQPS, "provisioner-kube-api-qps", 0, "csi-provisioner's --kube-api-qps instead of the chart's (an experiment; the report shows the flags used)")
	fs.IntVar(&o.provisionerBurst, "provisioner-kube-api-burst", 0, "csi-provisioner's --kube-api-burst instead of the chart's")
	fs.IntVar(&o.provisionerWorkers, "provisioner-worker-threads", 0, "csi-provisioner's --worker-threads instead of the chart's")
	fs.BoolVar(&o.keepLogs, "keep-logs", o.keepLogs, "keep the control plane's and the driver's logs (their directory is printed)")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "deadline of the whole run")
}

// phase names.
const (
	phaseFanout       = "fanout"
	phaseProvisioning = "provisioning"
	phaseFootprint    = "footprint"
	phaseDataPath     = "datapath"
)

func (o *options) validate() error {
	var errs []error
	if o.out == "" {
		errs = append(errs, errors.New("-out must name a file (or - for standard output)"))
	}
	for _, p := range splitList(o.phases) {
		switch p {
		case phaseFanout, phaseProvisioning, phaseFootprint, phaseDataPath:
		default:
			errs = append(errs, fmt.Errorf("-phases: unknown phase %q; accepted: fanout, provisioning, footprint, datapath", p))
		}
	}
	for _, f := range []struct{ name, value string }{{"-sizes", o.sizes}, {"-fanout-targets", o.fanoutTargets}} {
		if _, err := parseCounts(f.value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	if o.minSamples < 1 || o.nodes < 1 || o.fanoutSamples < 1 || o.footprintVolumes < 1 || o.minReps < 1 || o.lowerWorkers < 0 || o.footprintWorkers < 0 ||
		o.provisionerQPS < 0 || o.provisionerBurst < 0 || o.provisionerWorkers < 0 {
		errs = append(errs, errors.New("-min-samples, -min-runs, -nodes, -fanout-samples and -footprint-volumes must be at least 1; -lower-bound-workers, -footprint-workers and the -provisioner-* overrides at least 0"))
	}
	if o.timeout <= 0 {
		errs = append(errs, errors.New("-timeout must be positive"))
	}
	return errors.Join(errs...)
}

func (o *options) runs(phase string) bool {
	for _, p := range splitList(o.phases) {
		if p == phase {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseCounts parses a comma-separated list of positive integers.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func main() {
	opts := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	opts.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "bench: measures pvnfs on a local control plane and writes docs/benchmarks.md.\n\nUsage: go run ./test/bench [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if err := opts.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: invalid flags:\n%v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	if err := run(ctx, opts, os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}
