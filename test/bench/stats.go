package main

import (
	"slices"
	"time"
)

// Summary describes a set of samples by nearest-rank percentiles.
type Summary struct {
	Count         int
	P50, P95, Max time.Duration
}

// summarize returns the percentiles of ds; the zero Summary for none.
func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Summary{Count: len(s), P50: percentile(s, 50), P95: percentile(s, 95), Max: s[len(s)-1]}
}

// percentile returns the p-th percentile of sorted samples by nearest rank: the
// smallest sample with at least p% of the samples at or below it.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// median returns the median (nearest rank) of ds, 0 for none.
func median(ds []time.Duration) time.Duration { return summarize(ds).P50 }

// ratio returns a/b, 0 when b is 0.
func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
