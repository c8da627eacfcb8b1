package main

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want Summary
	}{
		{"none", nil, Summary{}},
		{"one sample is every percentile", []time.Duration{7 * ms}, Summary{Count: 1, P50: 7 * ms, P95: 7 * ms, Max: 7 * ms}},
		{"nearest rank, unsorted input", []time.Duration{5 * ms, 1 * ms, 4 * ms, 2 * ms, 3 * ms}, Summary{Count: 5, P50: 3 * ms, P95: 5 * ms, Max: 5 * ms}},
		{"p95 of 100 is the 95th", ramp(100, ms), Summary{Count: 100, P50: 50 * ms, P95: 95 * ms, Max: 100 * ms}},
		{"p95 of 20 is the 19th", ramp(20, ms), Summary{Count: 20, P50: 10 * ms, P95: 19 * ms, Max: 20 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarize(tc.in); got != tc.want {
				t.Errorf("summarize = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSummarizeDoesNotReorderItsInput(t *testing.T) {
	in := []time.Duration{3, 1, 2}
	summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("input reordered: %v", in)
	}
}

func TestRatio(t *testing.T) {
	if got := ratio(3*time.Second, 2*time.Second); got != 1.5 {
		t.Errorf("ratio = %v, want 1.5", got)
	}
	if got := ratio(time.Second, 0); got != 0 {
		t.Errorf("ratio over zero = %v, want 0", got)
	}
}

// ramp returns 1×unit, 2×unit, ... n×unit.
func ramp(n int, unit time.Duration) []time.Duration {
	var out []time.Duration
	for i := 1; i <= n; i++ {
		out = append(out, time.Duration(i)*unit)
	}
	return out
}
