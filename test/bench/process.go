package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on
// every Linux architecture Go supports (the kernel fixes it for user space).
const clockTicks = 100

// procStats is a process's memory and CPU use, from /proc.
type procStats struct {
	// RSS is the resident set now (VmRSS), HWM its peak so far (VmHWM).
	RSS, HWM int64
	// CPU is the user plus system time consumed so far.
	CPU time.Duration
}

// readProcStats reads /proc/<pid>/status and /proc/<pid>/stat.
func readProcStats(pid int) (procStats, error) {
	var s procStats
	if pid <= 0 {
		return s, fmt.Errorf("process is not running")
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSS = kb << 10
		case "VmHWM":
			s.HWM = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces and parentheses; fields after the
	// last ")" start at field 3 (state).
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	// utime and stime are fields 14 and 15 of the line: 12th and 13th after ")".
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	s.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	return s, nil
}

// metricsScrape is one scrape of a Prometheus /metrics endpoint.
type metricsScrape map[string]*familyValues

// familyValues are the values of one metric family by their labels, rendered
// "k=v,k=v" in label name order.
type familyValues map[string]float64

// scrapeMetrics fetches and parses a /metrics endpoint.
func scrapeMetrics(ctx context.Context, url string) (metricsScrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("scraping %s: %s: %s", url, resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	out := metricsScrape{}
	for name, fam := range families {
		vals := familyValues{}
		for _, m := range fam.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			vals[strings.Join(labels, ",")] += v
		}
		out[name] = &vals
	}
	return out, nil
}

// value returns the sum of a family's values.
func (s metricsScrape) value(name string) float64 {
	total := 0.0
	if f := s[name]; f != nil {
		for _, v := range *f {
			total += v
		}
	}
	return total
}

// apiRequestsMetric counts the controller's requests by verb and resource.
const apiRequestsMetric = "pvnfs_kube_api_requests_total"

// apiRequests returns the controller's request counts by "VERB resource".
func (s metricsScrape) apiRequests() map[string]float64 {
	out := map[string]float64{}
	f := s[apiRequestsMetric]
	if f == nil {
		return out
	}
	for labels, v := range *f {
		var verb, res string
		for _, kv := range strings.Split(labels, ",") {
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "verb":
				verb = val
			case "resource":
				res = val
			}
		}
		out[verb+" "+res] += v
	}
	return out
}

// requestDelta returns after − before per key, dropping keys that did not grow.
func requestDelta(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}
