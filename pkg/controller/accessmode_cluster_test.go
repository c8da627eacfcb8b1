package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/localcluster"
)

// TestControlPlaneBackendAccessMode creates volumes whose backend class is and is
// not provisioned by a registered CSI driver, and shows with the real scheduler what
// ReadWriteOncePod adds: a second server pod on the node of the first, which
// ReadWriteOnce lets mount the backend volume, is not scheduled at all.
func TestControlPlaneBackendAccessMode(t *testing.T) {
	d := startDriver(t)
	k := d.cluster.Client
	ctx := callCtx(t, 3*time.Minute)
	backendMode := func(t *testing.T, id string) corev1.PersistentVolumeAccessMode {
		t.Helper()
		pvc, err := k.CoreV1().PersistentVolumeClaims(d.ns).Get(ctx, volume.ObjectName(id), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pvc.Spec.AccessModes) != 1 {
			t.Fatalf("backend PVC access modes %v, want one", pvc.Spec.AccessModes)
		}
		return pvc.Spec.AccessModes[0]
	}

	// The test backend's provisioner is not a CSI driver until a CSIDriver object of
	// its name exists.
	d.create(t, "mode-plain", nil)
	if got := backendMode(t, "mode-plain"); got != corev1.ReadWriteOnce {
		t.Errorf("auto with a provisioner that is no CSI driver: %s, want ReadWriteOnce", got)
	}
	d.create(t, "mode-forced-rwop", map[string]string{parameters.BackendAccessMode: "ReadWriteOncePod"})
	if got := backendMode(t, "mode-forced-rwop"); got != corev1.ReadWriteOncePod {
		t.Errorf("backendAccessMode ReadWriteOncePod: %s", got)
	}

	drv := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: localcluster.BackendProvisioner}}
	if _, err := k.StorageV1().CSIDrivers().Create(ctx, drv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.StorageV1().CSIDrivers().Delete(context.Background(), drv.Name, metav1.DeleteOptions{}) })
	d.create(t, "mode-csi", nil)
	if got := backendMode(t, "mode-csi"); got != corev1.ReadWriteOncePod {
		t.Errorf("auto with a CSI backend: %s, want ReadWriteOncePod", got)
	}
	d.create(t, "mode-forced-rwo", map[string]string{parameters.BackendAccessMode: "ReadWriteOnce"})
	if got := backendMode(t, "mode-forced-rwo"); got != corev1.ReadWriteOnce {
		t.Errorf("backendAccessMode ReadWriteOnce with a CSI backend: %s", got)
	}

	// A second server of the volume on the first one's node (the reconciler's
	// "two servers on one node" case: an old pod still stopping while a new one
	// starts). The ReadWriteOnce volume lets it be scheduled there, which is why
	// the reconciler waits for the old pod; ReadWriteOncePod keeps it Pending.
	for _, tc := range []struct {
		id            string
		wantScheduled bool
	}{{"mode-plain", true}, {"mode-csi", false}} {
		t.Run("second server pod of "+tc.id, func(t *testing.T) {
			pods, err := k.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(volume.Selector(tc.id)).String()})
			if err != nil || len(pods.Items) != 1 || pods.Items[0].Spec.NodeName == "" {
				t.Fatalf("server pods of %s: %v, %v", tc.id, pods, err)
			}
			first := pods.Items[0]
			second := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "second-server-" + tc.id, Namespace: d.ns},
				Spec: corev1.PodSpec{
					// Not the Deployment's labels: its ReplicaSet would adopt and delete it.
					NodeSelector: map[string]string{"kubernetes.io/hostname": first.Spec.NodeName},
					Tolerations:  first.Spec.Tolerations,
					Containers:   []corev1.Container{{Name: "server", Image: testImage}},
					Volumes:      first.Spec.Volumes,
				},
			}
			if _, err := k.CoreV1().Pods(d.ns).Create(ctx, second, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				zero := int64(0)
				_ = k.CoreV1().Pods(d.ns).Delete(context.Background(), second.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			})
			// The scheduler decides either way: it binds the pod or marks it
			// unschedulable with its reason.
			var why string
			eventually(t, "the scheduler decides on the second pod", func(ctx context.Context) (bool, error) {
				p, err := k.CoreV1().Pods(d.ns).Get(ctx, second.Name, metav1.GetOptions{})
				if err != nil {
					return false, err
				}
				if p.Spec.NodeName != "" {
					why = "scheduled on " + p.Spec.NodeName
					return true, nil
				}
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
						why = c.Message
						return true, nil
					}
				}
				return false, nil
			})
			scheduled := strings.HasPrefix(why, "scheduled on ")
			if scheduled != tc.wantScheduled {
				t.Errorf("second server pod of %s (%s backend): %s", tc.id, backendMode(t, tc.id), why)
			}
			if !tc.wantScheduled && !strings.Contains(why, "ReadWriteOncePod") {
				t.Errorf("the second pod is unschedulable for another reason than ReadWriteOncePod: %s", why)
			}
		})
	}
}
