package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/test/localcluster"
	"github.com/pvnfs/pvnfs/test/simnode"
)

// run measures what the options ask for and writes the report.
func run(ctx context.Context, o options, argv []string) (err error) {
	started := time.Now()
	if os.Geteuid() != 0 {
		return errors.New("needs root: the simulated nodes mount in namespaces of their own and the control plane's tools are installed with apt")
	}
	root, err := localcluster.RepoRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	// csi-provisioner prefers $KUBECONFIG to --kubeconfig: it must never reach a
	// real cluster from here.
	os.Unsetenv("KUBECONFIG")
	e := &env{opts: o, logf: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}}
	if e.chart, err = loadChartSettings(root); err != nil {
		return err
	}
	e.chart.override(o)
	if e.work, err = os.MkdirTemp("", "pvnfs-bench-"); err != nil {
		return err
	}
	defer func() { e.cleanUp(o.keepLogs || err != nil) }()
	if err := logClientTo(filepath.Join(e.work, "bench-client.log")); err != nil {
		return err
	}

	rep := &Report{
		Date:             started.UTC().Format("2006-01-02"),
		Command:          command(argv),
		Machine:          machineFacts(),
		Nodes:            o.nodes,
		MinSamples:       o.minSamples,
		MinReps:          o.minReps,
		LowerWorkers:     e.lowerWorkers(),
		FanoutSamples:    o.fanoutSamples,
		ProvisionerFlags: strings.Join(e.chart.provisionerArgs(), " "),
		ControllerFlags:  strings.Join(e.chart.controllerArgs(), " "),
		Chart:            e.chart,
	}
	rep.Limits = e.rateLimits()

	e.logf("building pvnfs-csi")
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	e.binary, err = simnode.Build(bctx, e.work)
	cancel()
	if err != nil {
		return err
	}

	if o.runs(phaseFanout) {
		targets, _ := parseCounts(o.fanoutTargets)
		if rep.Fanout, err = e.runFanout(ctx, targets); err != nil {
			return fmt.Errorf("fan-out: %w", err)
		}
	}
	if o.runs(phaseProvisioning) || o.runs(phaseFootprint) {
		e.logf("starting the control plane")
		defer e.stopCluster()
		if err := e.startCluster(ctx); err != nil {
			return err
		}
		rep.Versions = e.versions(ctx)
		if o.runs(phaseProvisioning) {
			sizes, _ := parseCounts(o.sizes)
			if rep.Provisioning, err = e.runProvisioning(ctx, sizes); err != nil {
				return fmt.Errorf("provisioning: %w", err)
			}
		}
		if o.runs(phaseFootprint) {
			f, err := e.runFootprint(ctx)
			if err != nil {
				return fmt.Errorf("footprint: %w", err)
			}
			rep.Footprint = &f
		}
	} else {
		rep.Versions = e.versions(ctx)
	}

	if o.runs(phaseDataPath) {
		if rep.DataPath, err = e.runDataPath(ctx, root); err != nil {
			return fmt.Errorf("data path: %w", err)
		}
	}

	rep.Targets = evaluateTargets(rep)
	rep.Wall = time.Since(started)
	out, err := render(rep)
	if err != nil {
		return err
	}
	if o.out == "-" {
		_, err = os.Stdout.Write(out)
		return err
	}
	path := o.out
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	e.logf("wrote %s in %s", o.out, rep.Wall.Round(time.Second))
	for _, t := range rep.Targets {
		e.logf("target %q: %s (%s)", t.Goal, strings.Trim(t.Verdict, "*"), t.Measured)
	}
	return nil
}

// logClientTo sends the log of the benchmark's own Kubernetes client (client-go
// logs its client-side throttling through klog) to a file instead of the terminal.
func logClientTo(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL"} {
		if err := fs.Set(k, v); err != nil {
			return err
		}
	}
	klog.SetOutput(f)
	return nil
}

// command is the command line as `make bench` runs it, for the report.
func command(argv []string) string {
	return strings.TrimSpace("go run ./test/bench " + strings.Join(argv[1:], " "))
}

// versions asks every binary for its version.
func (e *env) versions(ctx context.Context) Versions {
	v := Versions{Go: goVersion(), Kubernetes: "not run", Kwok: "not run", Provisioner: "not run", Etcd: "not run"}
	tools := e.tools
	if e.cluster != nil {
		tools = e.cluster.Tools
		tools.Provisioner = e.tools.Provisioner
		if info, err := e.cluster.Client.Discovery().ServerVersion(); err == nil {
			v.Kubernetes = info.GitVersion
		}
	} else {
		return v
	}
	v.Kwok = versionOf(ctx, tools.Kwok, "--version")
	v.Provisioner = versionOf(ctx, tools.Provisioner, "--version")
	v.Etcd = versionOf(ctx, tools.Etcd, "--version")
	return v
}

// rateLimits lists the client-side rate limits of every client that writes.
func (e *env) rateLimits() []RateLimit {
	c := e.chart.Controller
	q := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	provisionerSource := "chart `controller.provisioner.kubeAPIQPS`, `kubeAPIBurst`"
	if e.opts.provisionerQPS > 0 || e.opts.provisionerBurst > 0 {
		provisionerSource = "**overridden** by `-provisioner-kube-api-qps`/`-burst`; the chart's where not"
	}
	return []RateLimit{
		{"pvnfs-csi controller (`--kube-api-qps`, `--kube-api-burst`)", q(c.KubeAPIQPS), strconv.Itoa(c.KubeAPIBurst), "chart `controller.kubeAPIQPS`, `controller.kubeAPIBurst`"},
		{"csi-provisioner (`--kube-api-qps`, `--kube-api-burst`)", q(c.Provisioner.KubeAPIQPS), strconv.Itoa(c.Provisioner.KubeAPIBurst), provisionerSource},
		{"the benchmark's writes: users' PVCs (pvnfs), the volumes' objects (lower bound)", q(c.KubeAPIQPS), strconv.Itoa(c.KubeAPIBurst), "the controller's, so the lower bound creates at the rate pvnfs may"},
		{"the benchmark's watches", "unlimited", "—", "only watches; costs the others nothing"},
		{"kube-controller-manager", "200", "400", "test/localcluster"},
		{"kube-scheduler", "50", "100", "its defaults"},
		{"kwok", "unlimited", "—", "kwok's own client"},
		{"backend provisioner (stands in for the block storage's)", "200", "400", "test/localcluster"},
	}
}
