package snapshots

import (
	"fmt"
	"sort"
	"testing"
	"time"

	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// BenchmarkControlPlaneSnapshotRestore measures, over rounds of one snapshot and one
// restore of a volume, the time from a user's VolumeSnapshot to readyToUse and from
// a PVC restored from it to Bound, through the real snapshot-controller, sidecars
// and pvnfs controller (the backend copies a small directory, so this is pvnfs's and
// Kubernetes' share of the time, not a real backend's). It reports medians and
// maxima:
//
//	go test -run '^$' -bench ControlPlaneSnapshotRestore -benchtime 1x ./test/snapshots/
func BenchmarkControlPlaneSnapshotRestore(b *testing.B) {
	const rounds = 10
	e := setup(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		src := e.createPVC(b, fmt.Sprintf("bench-%d", i), pvnfsClass, nil)
		e.waitBound(b, src)
		var ready, bound []time.Duration
		b.StartTimer()
		for r := 0; r < rounds; r++ {
			start := time.Now()
			snap := e.createSnapshot(b, fmt.Sprintf("bench-%d-%d", i, r), pvnfsSnapClass, src)
			e.waitSnapshot(b, ctxFor(b, operationTimeout), snap, func(vs *crdv1.VolumeSnapshot) bool {
				return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse
			})
			ready = append(ready, time.Since(start))
			start = time.Now()
			restored := e.createPVC(b, fmt.Sprintf("bench-%d-%d-restored", i, r), pvnfsClass, &corev1.TypedLocalObjectReference{
				APIGroup: ptr.To(crdv1.GroupName), Kind: "VolumeSnapshot", Name: snap.Name})
			e.waitBound(b, restored)
			bound = append(bound, time.Since(start))
		}
		b.StopTimer()
		for _, m := range []struct {
			name string
			d    []time.Duration
		}{{"snapshot-ready", ready}, {"restore-bound", bound}} {
			sort.Slice(m.d, func(a, c int) bool { return m.d[a] < m.d[c] })
			b.ReportMetric(float64(m.d[rounds/2].Milliseconds()), m.name+"-median-ms")
			b.ReportMetric(float64(m.d[rounds-1].Milliseconds()), m.name+"-max-ms")
			b.Logf("%s: %v", m.name, m.d)
		}
		ctx := ctxFor(b, operationTimeout)
		for r := 0; r < rounds; r++ {
			_ = e.cluster.Client.CoreV1().PersistentVolumeClaims(appNS).Delete(ctx, fmt.Sprintf("bench-%d-%d-restored", i, r), metav1.DeleteOptions{})
			_ = e.backend.Snapshots.SnapshotV1().VolumeSnapshots(appNS).Delete(ctx, fmt.Sprintf("bench-%d-%d", i, r), metav1.DeleteOptions{})
		}
		_ = e.cluster.Client.CoreV1().PersistentVolumeClaims(appNS).Delete(ctx, src.Name, metav1.DeleteOptions{})
	}
}
