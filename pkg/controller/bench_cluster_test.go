package controller

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// BenchmarkControlPlaneCreateVolume provisions 20 volumes one after another against
// the local control plane (kwok makes each server pod Ready at once; the backend
// class binds at first consumer) and reports the median and slowest CreateVolume
// time, and the API requests the controller sent per volume.
//
//	go test -run '^$' -bench ControlPlaneCreateVolume -benchtime 1x ./pkg/controller/
func BenchmarkControlPlaneCreateVolume(b *testing.B) {
	const volumes = 20
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d := startDriver(b)
		before := d.writes()
		var took []time.Duration
		b.StartTimer()
		for v := 0; v < volumes; v++ {
			start := time.Now()
			req := createReq(fmt.Sprintf("bench-%d-%d", i, v), nil)
			_, err := d.CreateVolume(callCtx(b, time.Minute), req)
			if err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		b.StopTimer()
		sort.Slice(took, func(a, c int) bool { return took[a] < took[c] })
		b.ReportMetric(float64(took[volumes/2].Milliseconds()), "median-ms")
		b.ReportMetric(float64(took[volumes-1].Milliseconds()), "max-ms")
		var requests float64
		for _, n := range diff(d.writes(), before) {
			requests += n
		}
		b.ReportMetric(requests/volumes, "api-requests/volume")
		for v := 0; v < volumes; v++ {
			_, _ = d.DeleteVolume(callCtx(b, time.Minute), &csi.DeleteVolumeRequest{VolumeId: fmt.Sprintf("bench-%d-%d", i, v)})
		}
	}
}
