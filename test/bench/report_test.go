package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// fixture is a report of a full run with the given scale of every figure.
func fixture(scale time.Duration) *Report {
	s := func(p50, p95, max int) Summary {
		return Summary{Count: 10, P50: time.Duration(p50) * scale, P95: time.Duration(p95) * scale, Max: time.Duration(max) * scale}
	}
	burst := func(k int) Burst {
		return Burst{Create: s(10*k, 12*k, 13*k), Delete: s(5*k, 6*k, 7*k), Serving: s(9*k, 10*k, 11*k),
			CreateTotal: time.Duration(13*k) * scale, DeleteTotal: time.Duration(7*k) * scale}
	}
	req := Requests{PerVolume: []RequestCount{{"POST deployments", 1}, {"POST persistentvolumeclaims", 1}, {"POST services", 1}}, Total: 3}
	r := &Report{
		Date: "2026-11-22", Command: "go run ./test/bench", Wall: 600 * scale,
		Machine:  Machine{CPUs: 2, CPUModel: "AMD EPYC", MemoryGiB: 23.5, Kernel: "6.18.44", OS: "Debian GNU/Linux 12 (bookworm)"},
		Versions: Versions{Go: "go1.26.8", Kubernetes: "v1.36.3", Kwok: "v0.8.0", Provisioner: "v6.3.0", Etcd: "3.4.23"},
		Limits:   []RateLimit{{"pvnfs-csi controller", "50", "100", "chart"}},
		Nodes:    3, MinSamples: 5, MinReps: 3, FanoutSamples: 500, LowerWorkers: 100,
		ProvisionerFlags: "--timeout=60s", ControllerFlags: "--kube-api-qps=50",
		Provisioning: []SizeResult{
			{N: 1, Reps: 5, Pvnfs: burst(11), Lower: burst(10), CreateRequests: req, DeleteRequests: req},
			{N: 200, Reps: 1, Pvnfs: burst(110), Lower: burst(100), CreateRequests: req, DeleteRequests: req},
		},
		Fanout: []FanoutRow{
			{Targets: 1, Rounds: 500, Publish: s(4, 5, 9), Unpublish: s(3, 4, 8), NFS: 1, Bind: 1},
			{Targets: 500, Rounds: 1, Publish: s(12, 20, 30), Unpublish: s(11, 22, 40), NFS: 1, Bind: 500},
		},
		Footprint: &FootprintResult{
			Volumes: 1000, Workers: 100, Idle: procStats{RSS: 40 << 20, HWM: 41 << 20}, Loaded: procStats{RSS: 90 << 20, HWM: 100 << 20},
			HeapInUse: 30 << 20, Total: 90 * scale, BurstCPU: 20 * scale, QuietCPU: scale, QuietWindow: 15 * scale,
			Calls: s(3, 5, 6), Requests: req,
			ReadyToReturn: SignedSummary{Count: 1000, P50: 60 * scale, P95: 150 * scale, Max: 180 * scale},
		},
		DataPath: summarizeDataPath(guest.DataPath{KernelRelease: "6.1.0-57-amd64", Tree: guest.TreeShape{Files: 3000, Dirs: 120, Bytes: 50 << 20},
			Targets: []guest.DataPathTarget{
				{Name: "backend (ext4)", Extract: []time.Duration{2 * scale, 3 * scale, 4 * scale}, Walk: []time.Duration{scale}, Read: []time.Duration{scale}, Write: []time.Duration{scale}},
				{Name: "kernel", Extract: []time.Duration{6 * scale}, Walk: []time.Duration{2 * scale}, Read: []time.Duration{3 * scale}, Write: []time.Duration{2 * scale},
					RestartToWritable: []time.Duration{5 * scale}},
			}}),
	}
	r.Targets = evaluateTargets(r)
	return r
}

func TestRenderIsDeterministic(t *testing.T) {
	a, err := render(fixture(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	b, err := render(fixture(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same report rendered twice differs")
	}
}

// TestLayoutDoesNotDependOnFigures: two runs with other figures (and the same
// verdicts) give the same document once the numbers are blanked out.
func TestLayoutDoesNotDependOnFigures(t *testing.T) {
	a, err := render(fixture(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	b, err := render(fixture(1100 * time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	number := regexp.MustCompile(`[+-]?[0-9]+(\.[0-9]+)?`)
	la, lb := number.ReplaceAll(a, []byte("#")), number.ReplaceAll(b, []byte("#"))
	if !bytes.Equal(la, lb) {
		t.Errorf("layouts differ:\n%s\n---\n%s", la, lb)
	}
	if bytes.Equal(a, b) {
		t.Error("the figures did not change the document: the fixture is wrong")
	}
}

func TestRenderShowsEverySection(t *testing.T) {
	out, err := render(fixture(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(out)
	for _, want := range []string{
		"# Benchmarks", "## Targets", "## Client rate limits", "## Provisioning", "### Requests of the controller per volume",
		"## Deletion", "## Mount fan-out", "## Controller footprint", "## Data path: run on a real cluster", "**Not run here**",
		"`go run ./test/bench`", "| 200 | 1 |", "small-files.fio", "streaming.fio", "nconnect", "exportSync",
		"## Data path on a real kernel (VM lab)", "| kernel | ", "(2.00×)",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(doc, "Not run in this invocation") {
		t.Error("a full run says a phase did not run")
	}
	if strings.Contains(doc, "<no value>") {
		t.Error("the template printed <no value>: a field name is wrong")
	}
}

func TestRenderSaysWhichPhasesDidNotRun(t *testing.T) {
	r := fixture(time.Millisecond)
	r.Provisioning, r.Footprint, r.DataPath = nil, nil, nil
	r.Targets = evaluateTargets(r)
	out, err := render(r)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "Not run in this invocation"); n != 4 {
		t.Errorf("%d sections say they did not run, want 4 (provisioning, deletion, footprint, data path)", n)
	}
	notRun := 0
	for _, tg := range r.Targets {
		if tg.Verdict == verdictNotRun {
			notRun++
		}
	}
	if notRun != 4 {
		t.Errorf("%d targets not run, want 4: %+v", notRun, r.Targets)
	}
}

func TestEvaluateTargets(t *testing.T) {
	pass := fixture(time.Millisecond)
	for _, tg := range pass.Targets {
		if tg.Verdict != verdictPass || tg.Cause != "—" {
			t.Errorf("target %q: %s, cause %q; want pass without a cause", tg.Goal, tg.Verdict, tg.Cause)
		}
	}
	for _, tc := range []struct {
		name   string
		break_ func(r *Report)
		goal   string
	}{
		{"ratio", func(r *Report) { r.Provisioning[1].Pvnfs.CreateTotal = 2 * r.Provisioning[1].Lower.CreateTotal }, "provisioning 200 PVCs"},
		{"requests", func(r *Report) { r.Provisioning[0].CreateRequests.Total = 10.5 }, "API requests"},
		{"publish", func(r *Report) { r.Fanout[1].Publish.P95 = 51 * time.Millisecond }, "p95 NodePublish"},
		{"mounts", func(r *Report) { r.Fanout[0].NFS = 2 }, "NFS-leg mount"},
		{"rss", func(r *Report) { r.Footprint.Loaded.RSS = 151 << 20 }, "RSS"},
		{"ready to return", func(r *Report) { r.Footprint.ReadyToReturn.P95 = 201 * time.Millisecond }, "after the server pod is Ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fixture(time.Millisecond)
			tc.break_(r)
			failed := 0
			for _, tg := range evaluateTargets(r) {
				if tg.Verdict != verdictFail {
					continue
				}
				failed++
				if !strings.Contains(tg.Goal, tc.goal) {
					t.Errorf("target %q failed, want the one about %q", tg.Goal, tc.goal)
				}
				if tg.Cause == "" || tg.Cause == "—" {
					t.Errorf("missed target %q names no cause", tg.Goal)
				}
			}
			if failed != 1 {
				t.Errorf("%d targets failed, want 1", failed)
			}
		})
	}
}
