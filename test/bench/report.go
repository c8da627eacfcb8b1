package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"
	"time"
)

// Report is everything docs/benchmarks.md shows.
type Report struct {
	// Date is the day of the run (UTC); Command the exact command line; Wall how
	// long the whole run took.
	Date    string
	Command string
	Wall    time.Duration
	Machine Machine
	Versions
	Limits []RateLimit
	// ProvisionerFlags and ControllerFlags are the tuning flags the driver ran with.
	ProvisionerFlags, ControllerFlags string
	// Chart are the chart's settings the driver ran with.
	Chart chartSettings
	Nodes int
	// MinSamples, MinReps and FanoutSamples are the -min-samples, -min-runs and
	// -fanout-samples flags; LowerWorkers the lower bound's volumes in flight.
	MinSamples, MinReps, FanoutSamples, LowerWorkers int

	// Each phase is nil when it did not run.
	Provisioning []SizeResult
	Fanout       []FanoutRow
	Footprint    *FootprintResult
	DataPath     *DataPathResult
	Targets      []Target
}

// RateLimit is one client's client-side rate limit.
type RateLimit struct {
	Client, QPS, Burst, Source string
}

// Target is one goal with its verdict.
type Target struct {
	Goal     string
	Measured string
	// Verdict is pass, FAIL or "not run".
	Verdict string
	// Cause says, for a missed target, why and what would fix it.
	Cause string
}

// Verdicts.
const (
	verdictPass   = "pass"
	verdictFail   = "**FAIL**"
	verdictNotRun = "not run"
)

func verdict(pass bool) string {
	if pass {
		return verdictPass
	}
	return verdictFail
}

// Target goals.
const (
	maxCreateRatio        = 1.25
	ratioAtN              = 200
	maxRequestsPerVolume  = 10.0
	maxPublishP95         = 50 * time.Millisecond
	publishTargets        = 500
	maxRSS                = 150 << 20
	footprintTargetVolume = 1000
	maxReadyToReturn      = 200 * time.Millisecond
)

// evaluateTargets judges the measurements against the goals of issue 8.
func evaluateTargets(r *Report) []Target {
	notRun := func(goal string) Target {
		return Target{Goal: goal, Measured: "—", Verdict: verdictNotRun, Cause: "—"}
	}
	var out []Target

	goal := fmt.Sprintf("provisioning %d PVCs at once: pvnfs ≤ %.2f× the lower bound (time until all are Bound)", ratioAtN, maxCreateRatio)
	if s := r.size(ratioAtN); s != nil {
		out = append(out, withCause(Target{Goal: goal,
			Measured: fmt.Sprintf("%.2f× (%s vs %s; p50 %.2f×)", s.CreateRatio(), secs(s.Pvnfs.CreateTotal), secs(s.Lower.CreateTotal), s.P50Ratio()),
			Verdict:  verdict(s.CreateRatio() <= maxCreateRatio)}, causeRatio(r, s)))
	} else {
		out = append(out, notRun(goal))
	}

	goal = fmt.Sprintf("≤ %.0f API requests from the controller per provisioned volume", maxRequestsPerVolume)
	if len(r.Provisioning) > 0 {
		worst := &r.Provisioning[0]
		for i, s := range r.Provisioning {
			if s.CreateRequests.Total >= worst.CreateRequests.Total {
				worst = &r.Provisioning[i]
			}
		}
		out = append(out, withCause(Target{Goal: goal, Measured: fmt.Sprintf("%.2f (worst, at N=%d)", worst.CreateRequests.Total, worst.N),
			Verdict: verdict(worst.CreateRequests.Total <= maxRequestsPerVolume)}, causeRequests(worst)))
	} else {
		out = append(out, notRun(goal))
	}

	goal = fmt.Sprintf("p95 NodePublish ≤ %d ms at %d targets", maxPublishP95/time.Millisecond, publishTargets)
	if f := r.fanout(publishTargets); f != nil {
		out = append(out, withCause(Target{Goal: goal, Measured: ms(f.Publish.P95), Verdict: verdict(f.Publish.P95 <= maxPublishP95)}, causePublish(f)))
	} else {
		out = append(out, notRun(goal))
	}

	goal = "exactly one NFS-leg mount per node per volume"
	if len(r.Fanout) > 0 {
		ok, seen := true, []string{}
		for _, f := range r.Fanout {
			ok = ok && f.NFS == 1 && f.Bind == f.Targets && f.Other == 0
			seen = append(seen, fmt.Sprint(f.NFS))
		}
		out = append(out, withCause(Target{Goal: goal, Measured: fmt.Sprintf("%s (at %s targets)", strings.Join(seen, ", "), r.fanoutTargets()),
			Verdict: verdict(ok)}, causeMounts(r)))
	} else {
		out = append(out, notRun(goal))
	}

	goal = fmt.Sprintf("controller RSS ≤ %d MiB with %d volumes", maxRSS>>20, footprintTargetVolume)
	switch f := r.Footprint; {
	case f != nil && f.Volumes >= footprintTargetVolume:
		out = append(out, withCause(Target{Goal: goal, Measured: fmt.Sprintf("%s with %d volumes (peak %s)", mib(f.Loaded.RSS), f.Volumes, mib(f.Loaded.HWM)),
			Verdict: verdict(f.Loaded.RSS <= maxRSS)}, causeRSS(f)))
	case f != nil:
		out = append(out, Target{Goal: goal, Measured: fmt.Sprintf("%s with only %d volumes (-footprint-volumes)", mib(f.Loaded.RSS), f.Volumes), Verdict: verdictNotRun, Cause: "—"})
	default:
		out = append(out, notRun(goal))
	}

	goal = fmt.Sprintf("CreateVolume returns ≤ %d ms after the server pod is Ready (p95)", maxReadyToReturn/time.Millisecond)
	if f := r.Footprint; f != nil && f.ReadyToReturn.Count > 0 {
		out = append(out, withCause(Target{Goal: goal, Measured: fmt.Sprintf("p95 %s (p50 %s)", ms(f.ReadyToReturn.P95), ms(f.ReadyToReturn.P50)),
			Verdict: verdict(f.ReadyToReturn.P95 <= maxReadyToReturn)}, causeReadyToReturn(f, r.Machine.CPUs)))
	} else {
		out = append(out, notRun(goal))
	}
	return out
}

// withCause adds the explanation of a missed target.
func withCause(t Target, cause string) Target {
	t.Cause = "—"
	if t.Verdict == verdictFail {
		t.Cause = cause
	}
	return t
}

func (r *Report) size(n int) *SizeResult {
	for i := range r.Provisioning {
		if r.Provisioning[i].N == n {
			return &r.Provisioning[i]
		}
	}
	return nil
}

func (r *Report) fanout(targets int) *FanoutRow {
	for i := range r.Fanout {
		if r.Fanout[i].Targets == targets {
			return &r.Fanout[i]
		}
	}
	return nil
}

func (r *Report) fanoutTargets() string {
	var s []string
	for _, f := range r.Fanout {
		s = append(s, fmt.Sprint(f.Targets))
	}
	return strings.Join(s, ", ")
}

// FanoutList names the fan-out's pod counts for the text: "1, 100 and 500".
func (r *Report) FanoutList() string {
	var s []string
	for _, f := range r.Fanout {
		s = append(s, fmt.Sprint(f.Targets))
	}
	switch len(s) {
	case 0:
		return "several" // the fan-out did not run
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

//go:embed report.md.tmpl
var reportTemplate string

// render writes the report as Markdown. The layout depends only on which phases
// ran, never on the figures.
func render(r *Report) ([]byte, error) {
	t, err := template.New("report").Funcs(template.FuncMap{
		"secs": secs, "ms": ms, "minutes": minutes, "mib": mib, "cpu": cpuSecs, "f1": f1, "f2": f2, "signed": signedMs,
	}).Parse(reportTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Formats of the figures: fixed units and precision per kind, so the report's
// columns always read the same way.
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func minutes(d time.Duration) string {
	return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
}
func cpuSecs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
func ms(d time.Duration) string      { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func signedMs(d time.Duration) string {
	return fmt.Sprintf("%+.1f ms", float64(d)/float64(time.Millisecond))
}
func mib(b int64) string  { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
