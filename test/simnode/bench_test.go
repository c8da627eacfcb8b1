package simnode_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/test/simnode"
)

// BenchmarkFanoutPublish measures NodePublishVolume and NodeUnpublishVolume on one
// node through the plugin's gRPC socket, as kubelet calls them, while the node
// fans one volume out to 1, 100 and 500 pods. Each iteration publishes the volume
// to every target, then unpublishes them all. It reports the p50 and p95 latency
// of each call over all iterations and the mounts on the node at the peak.
//
//	go test -run '^$' -bench Fanout ./test/simnode/...
func BenchmarkFanoutPublish(b *testing.B) {
	for _, targets := range []int{1, 100, 500} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			n := startNode(b, "bench", filepath.Join(b.TempDir(), "exports"))
			vol := wordpressVolume()
			ctx := context.Background()
			if _, err := n.Stage(ctx, vol); err != nil {
				b.Fatal(err)
			}
			var publish, unpublish []time.Duration
			var peak simnode.VolumeMounts
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for t := range targets {
					start := time.Now()
					if _, err := n.Publish(ctx, vol, fmt.Sprintf("pod-%d", t), false); err != nil {
						b.Fatal(err)
					}
					publish = append(publish, time.Since(start))
				}
				if i == 0 {
					b.StopTimer()
					var err error
					if peak, err = n.VolumeMounts(source); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				for t := range targets {
					start := time.Now()
					if err := n.Unpublish(ctx, vol, fmt.Sprintf("pod-%d", t)); err != nil {
						b.Fatal(err)
					}
					unpublish = append(unpublish, time.Since(start))
				}
			}
			b.StopTimer()
			if len(peak.NFS) != 1 || len(peak.Pods) != targets {
				b.Errorf("at the peak: %d NFS-leg mounts and %d bind mounts, want 1 and %d", len(peak.NFS), len(peak.Pods), targets)
			}
			b.ReportMetric(percentile(publish, 50), "publish-p50-ms")
			b.ReportMetric(percentile(publish, 95), "publish-p95-ms")
			b.ReportMetric(percentile(unpublish, 50), "unpublish-p50-ms")
			b.ReportMetric(percentile(unpublish, 95), "unpublish-p95-ms")
			b.ReportMetric(float64(len(peak.NFS)), "nfs-mounts/node")
			b.ReportMetric(float64(len(peak.Pods)), "bind-mounts/node")
			if err := n.Unstage(ctx, vol); err != nil {
				b.Fatal(err)
			}
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
