package deploy

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/pvnfs/pvnfs/test/harness"
)

// pvcSamples is how many PVCs one benchmark iteration binds.
const pvcSamples = 10

// BenchmarkControlPlanePVCToBound measures, in the local control plane, the time from
// creating a ReadWriteMany PVC of the example StorageClass to the PVC being Bound:
// csi-provisioner → pvnfs-csi (Service, backend PVC, server Deployment) → scheduler and
// backend provisioning → server pod Ready (kwok) → EndpointSlice → PV → binding. The
// PVCs are created one after another, each deleted (and its objects gone) before the
// next, and the median of the 10 is reported.
//
//	go test -run '^$' -bench PVCToBound ./test/deploy/
func BenchmarkControlPlanePVCToBound(b *testing.B) {
	e := installed(b)
	sc := exampleClass(b, e, "pvnfs-bench", backendClass)
	ns := appNamespace(b, e)
	var all []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < pvcSamples; j++ {
			name := fmt.Sprintf("bench-%d-%d", i, j)
			d := timeToBound(b, e, ns, name, sc.Name)
			all = append(all, d)
			b.StopTimer()
			deleteAndWait(b, e, ns, name)
			b.StartTimer()
		}
	}
	b.StopTimer()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(all[len(all)/2]), "ms-median-to-bound")
	b.ReportMetric(ms(all[0]), "ms-min-to-bound")
	b.ReportMetric(ms(all[len(all)-1]), "ms-max-to-bound")
	b.ReportMetric(0, "ns/op") // one op is 10 provisionings; the figures above are per PVC
}

// timeToBound creates a PVC and returns how long it took to turn Bound, seen through
// a watch so that no poll interval is added.
func timeToBound(b *testing.B, e *env, ns, name, class string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	w, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if _, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, harness.RWXClaim(ns, name, class, "2Gi"), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("watch of PVC %s/%s ended; events: %s\n%s", ns, name, events(context.Background(), e, ns, name), e.logs())
			}
			if pvc, isPVC := ev.Object.(*corev1.PersistentVolumeClaim); isPVC && ev.Type != watch.Deleted && pvc.Status.Phase == corev1.ClaimBound {
				return time.Since(start)
			}
		case <-ctx.Done():
			b.Fatalf("PVC %s/%s not Bound after %s; events: %s\n%s", ns, name, waitLong, events(context.Background(), e, ns, name), e.logs())
		}
	}
}

// deleteAndWait deletes a PVC and waits until its PV and the volume's objects are gone.
func deleteAndWait(b *testing.B, e *env, ns, name string) {
	b.Helper()
	ctx := context.Background()
	pvc, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		b.Fatal(err)
	}
	why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		if _, err := e.cluster.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, "PV " + pvc.Spec.VolumeName + " still exists", nil
		}
		left, err := volumeObjects(ctx, e, pvc.Spec.VolumeName)
		if err != nil {
			return false, "", err
		}
		return total(left) == 0, fmt.Sprintf("objects left: %v", left), nil
	})
	if err != nil {
		b.Fatalf("deleting %s/%s: %s: %v", ns, name, why, err)
	}
}
