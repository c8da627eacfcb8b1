package simnode_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkFanoutPublish measures NodePublishVolume and NodeUnpublishVolume on one
// node through the plugin's gRPC socket, as kubelet calls them, while the node
// fans one volume out to 1, 100 and 500 pods (simnode's Node.MeasureFanout, which
// `go run ./test/bench` uses for docs/benchmarks.md too). Each iteration publishes
// the volume to every target, then unpublishes them all. It reports the p50 and p95
// latency of each call over all iterations and the mounts on the node at the peak.
//
//	go test -run '^$' -bench Fanout ./test/simnode/...
func BenchmarkFanoutPublish(b *testing.B) {
	for _, targets := range []int{1, 100, 500} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			n := startNode(b, "bench", filepath.Join(b.TempDir(), "exports"))
			b.ResetTimer()
			res, err := n.MeasureFanout(context.Background(), wordpressVolume(), targets, b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			peak := res.Peak
			if len(peak.NFS) != 1 || len(peak.Pods) != targets || len(peak.Other) != 0 {
				b.Errorf("at the peak: %d NFS-leg mounts, %d bind mounts and %d others, want 1, %d and 0", len(peak.NFS), len(peak.Pods), len(peak.Other), targets)
			}
			b.ReportMetric(percentile(res.Publish, 50), "publish-p50-ms")
			b.ReportMetric(percentile(res.Publish, 95), "publish-p95-ms")
			b.ReportMetric(percentile(res.Unpublish, 50), "unpublish-p50-ms")
			b.ReportMetric(percentile(res.Unpublish, 95), "unpublish-p95-ms")
			b.ReportMetric(float64(len(peak.NFS)), "nfs-mounts/node")
			b.ReportMetric(float64(len(peak.Pods)), "bind-mounts/node")
		})
	}
}

// percentile returns the p-th percentile of ds in milliseconds (nearest rank).
func percentile(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}
