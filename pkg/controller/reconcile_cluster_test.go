package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// eventually polls cond until it holds or a minute passes. Tests use it only to
// wait for other controllers; nothing here asserts on how long that takes.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitLooked waits until the running reconciler has finished looking at the volume
// more than after times, or the volume has no object left for it to look at. A
// test asserting that the reconciler left something alone waits here first, so
// that it observes the reconciler's decision rather than a moment before it.
func (d *testDriver) waitLooked(t *testing.T, id string, after int) {
	t.Helper()
	eventually(t, fmt.Sprintf("the reconciler looks at volume %s (%d times so far)", id, after), func(context.Context) (bool, error) {
		return d.svc.metrics.looks(id) > after || !d.svc.cache.lookup(d.ns, id).exists(), nil
	})
}

// lookedAgain returns once a sync of the volume has started and finished after
// the call: the workqueue runs one sync of a volume at a time, so the second one
// to finish from now started after now.
func (d *testDriver) lookedAgain(t *testing.T, id string) {
	t.Helper()
	d.waitLooked(t, id, d.svc.metrics.looks(id)+1)
}

func (d *testDriver) hasEvent(ctx context.Context, reason, objName string) bool {
	evs, err := d.cluster.Client.CoreV1().Events(d.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, e := range evs.Items {
		if e.Reason == reason && e.InvolvedObject.Name == objName {
			return true
		}
	}
	return false
}

func (d *testDriver) create(t *testing.T, name string, params map[string]string) string {
	t.Helper()
	resp, err := d.CreateVolume(callCtx(t, time.Minute), createReq(name, params))
	if err != nil {
		t.Fatalf("CreateVolume(%s): %v", name, err)
	}
	return resp.Volume.VolumeContext[volume.ContextServer]
}

func TestControlPlaneReconcilerRepairsLostObjects(t *testing.T) {
	d := startDriverWith(t, &ReconcileOptions{Resync: time.Minute, OrphanMinAge: time.Hour})
	k := d.cluster.Client
	ctx := callCtx(t, 3*time.Minute)

	t.Run("Service deleted is recreated with the same ClusterIP", func(t *testing.T) {
		ip := d.create(t, "lost-service", nil)
		obj := volume.ObjectName("lost-service")
		if err := k.CoreV1().Services(d.ns).Delete(ctx, obj, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Service recreated", func(ctx context.Context) (bool, error) {
			svc, err := k.CoreV1().Services(d.ns).Get(ctx, obj, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			if svc.Spec.ClusterIP != ip {
				return false, fmt.Errorf("recreated with ClusterIP %s, was %s", svc.Spec.ClusterIP, ip)
			}
			return true, nil
		})
		eventually(t, "ServiceRecreated event", func(ctx context.Context) (bool, error) { return d.hasEvent(ctx, EventServiceRecreated, obj), nil })
		resp, err := d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: "lost-service"})
		if err != nil || resp.Volume.VolumeContext[volume.ContextServer] != ip {
			t.Errorf("ControllerGetVolume = %v, %v", resp, err)
		}
	})

	t.Run("Deployment deleted is recreated", func(t *testing.T) {
		d.create(t, "lost-deployment", nil)
		obj := volume.ObjectName("lost-deployment")
		old, _ := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
		if err := k.AppsV1().Deployments(d.ns).Delete(ctx, obj, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Deployment recreated and serving", func(ctx context.Context) (bool, error) {
			dep, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && dep.UID == old.UID) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			return d.svc.cache.lookup(d.ns, "lost-deployment").ready(), nil
		})
		eventually(t, "DeploymentRecreated event", func(ctx context.Context) (bool, error) {
			return d.hasEvent(ctx, EventDeploymentRecreated, obj), nil
		})
	})

	t.Run("Deployment deleted is recreated only after its old pod is gone", func(t *testing.T) {
		d.create(t, "lingering-pod", nil)
		obj := volume.ObjectName("lingering-pod")
		pods, err := k.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: volume.LabelVolumeID + "=lingering-pod"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("server pods %v, %v", pods, err)
		}
		// A finalizer keeps the old pod Terminating, as a container that is slow to
		// stop (or a node that does not answer) would.
		pod := pods.Items[0]
		hold := `{"metadata":{"finalizers":["test.pvnfs.io/hold"]}}`
		if _, err := k.CoreV1().Pods(d.ns).Patch(ctx, pod.Name, "application/merge-patch+json", []byte(hold), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		// Deleted in the background, as kubectl does: the garbage collector deletes
		// the ReplicaSet and then the pod, which lingers.
		background := metav1.DeletePropagationBackground
		if err := k.AppsV1().Deployments(d.ns).Delete(ctx, obj, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "WaitingForOldServer event", func(ctx context.Context) (bool, error) {
			return d.hasEvent(ctx, EventWaitingForOldServer, obj), nil
		})
		if _, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("Deployment recreated while the old server pod still runs: %v", err)
		}
		if _, err := k.CoreV1().Pods(d.ns).Patch(ctx, pod.Name, "application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Deployment recreated once the old pod is gone", func(ctx context.Context) (bool, error) {
			_, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
			return err == nil, nil
		})
	})

	t.Run("Deployment edited by hand is corrected", func(t *testing.T) {
		d.create(t, "edited", nil)
		obj := volume.ObjectName("edited")
		// Like kubectl edit, retried on a conflict: the Deployment controller writes
		// the status of the new Deployment meanwhile.
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			dep, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
			if err != nil {
				return err
			}
			zero := int32(0)
			dep.Spec.Replicas = &zero
			dep.Spec.Template.Spec.Containers[0].Args = append(dep.Spec.Template.Spec.Containers[0].Args, "--threads=1")
			_, err = k.AppsV1().Deployments(d.ns).Update(ctx, dep, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Deployment corrected", func(ctx context.Context) (bool, error) {
			dep, err := k.AppsV1().Deployments(d.ns).Get(ctx, obj, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return *dep.Spec.Replicas == 1 && !strings.HasSuffix(strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "), "--threads=1"), nil
		})
		eventually(t, "DeploymentCorrected event", func(ctx context.Context) (bool, error) { return d.hasEvent(ctx, EventDeploymentCorrected, obj), nil })
	})

	t.Run("Backend PVC deleted is not recreated and nothing is repaired", func(t *testing.T) {
		d.create(t, "lost-backend", nil)
		obj := volume.ObjectName("lost-backend")
		// Deleting the backend PVC marks it; it stays (pvc-protection) while the pod
		// uses it. Then the Service goes too: the volume is being torn down by hand.
		if err := k.CoreV1().PersistentVolumeClaims(d.ns).Delete(ctx, obj, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := k.CoreV1().Services(d.ns).Delete(ctx, obj, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		d.restart(t) // a fresh reconciler looks at it from scratch
		id, _ := volume.IDFromName("lost-backend")
		d.waitLooked(t, id, 0)
		if _, err := k.CoreV1().Services(d.ns).Get(ctx, obj, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Service of a volume whose backend PVC is being deleted was recreated: %v", err)
		}
	})
}

// TestControlPlaneReconcilerLeavesOutdatedServers: a controller with another server
// image (an upgrade) and MaxServerRollouts 0 does not roll existing servers.
func TestControlPlaneReconcilerLeavesOutdatedServers(t *testing.T) {
	d := startDriverWith(t, &ReconcileOptions{Resync: time.Second, OrphanMinAge: time.Hour})
	d.create(t, "outdated", nil)
	d.serverImage = "example.invalid/pvnfs-server:next"
	d.restart(t)
	eventually(t, "reconciler notices the outdated server", func(context.Context) (bool, error) {
		_, outdated := d.svc.metrics.counts()
		return outdated == 1, nil
	})
	dep, err := d.cluster.Client.AppsV1().Deployments(d.ns).Get(callCtx(t, 10*time.Second), volume.ObjectName("outdated"), metav1.GetOptions{})
	if err != nil || dep.Spec.Template.Spec.Containers[0].Image != testImage {
		t.Errorf("server was rolled to %s (%v); with MaxServerRollouts 0 servers are rolled by the operator", dep.Spec.Template.Spec.Containers[0].Image, err)
	}
}

// TestControlPlaneReconcilerOrphans: a volume no PV refers to is reported, and
// deleted only when --delete-orphans-after asks for it; a volume with a PV is not.
func TestControlPlaneReconcilerOrphans(t *testing.T) {
	for _, tc := range []struct {
		name        string
		deleteAfter time.Duration
		withPV      bool
		wantGone    bool
		wantEvent   bool
	}{
		{name: "reported and kept", wantEvent: true},
		{name: "deleted when asked", deleteAfter: 2 * time.Second, wantEvent: true, wantGone: true},
		{name: "a volume with a PV is no orphan", deleteAfter: 2 * time.Second, withPV: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDriverWith(t, &ReconcileOptions{Resync: time.Second, OrphanMinAge: time.Second, DeleteOrphansAfter: tc.deleteAfter})
			name := "orphan-" + strings.ReplaceAll(tc.name, " ", "-")
			id, _ := volume.IDFromName(name)
			k := d.cluster.Client
			ctx := callCtx(t, time.Minute)
			if tc.withPV {
				// Before the volume: otherwise the reconciler may judge it between
				// CreateVolume and the PV, when it is an orphan.
				pv := &corev1.PersistentVolume{
					ObjectMeta: metav1.ObjectMeta{Name: "pv-" + id},
					Spec: corev1.PersistentVolumeSpec{
						Capacity:    corev1.ResourceList{corev1.ResourceStorage: *resourceGiB()},
						AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
						PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
							Driver: "nfs.pvnfs.io", VolumeHandle: id}},
					},
				}
				if _, err := k.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					_ = k.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
				})
			}
			d.create(t, name, nil)
			obj := volume.ObjectName(id)
			if tc.wantEvent {
				eventually(t, "Orphaned event", func(ctx context.Context) (bool, error) { return d.hasEvent(ctx, EventOrphaned, obj), nil })
			} else {
				// Judged once it is older than OrphanMinAge (as the reconciler
				// measures it), by a sync that started after that.
				pvc, err := k.CoreV1().PersistentVolumeClaims(d.ns).Get(ctx, obj, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				eventually(t, "the volume is old enough to be judged", func(context.Context) (bool, error) {
					return time.Since(pvc.CreationTimestamp.Time) >= time.Second, nil
				})
				d.lookedAgain(t, id)
				if orphans, _ := d.svc.metrics.counts(); orphans != 0 || d.hasEvent(ctx, EventOrphaned, obj) {
					t.Errorf("a volume with a PV was reported as an orphan (%d orphans)", orphans)
				}
			}
			if tc.wantGone {
				waitGone(t, d, id)
				return
			}
			d.lookedAgain(t, id) // it looked at the orphan again, and kept it
			if counts := d.objectCounts(t, id); counts["pvc"] != 1 || counts["deployment"] != 1 {
				t.Errorf("volume objects %v, want them kept", counts)
			}
		})
	}
}

// TestControlPlaneDeleteVolumeConvergesAfterCrash kills the controller after each
// step of DeleteVolume; the reconciler must not undo it and the retry completes it.
func TestControlPlaneDeleteVolumeConvergesAfterCrash(t *testing.T) {
	d := startDriverWith(t, &ReconcileOptions{Resync: time.Second, OrphanMinAge: time.Hour})
	steps := []string{"PersistentVolumeClaim", "Deployment", "Service"}
	for crashAfter := range steps {
		t.Run("after "+steps[crashAfter], func(t *testing.T) {
			name := "delete-crash-" + strings.ToLower(steps[crashAfter])
			d.create(t, name, nil)
			k := d.cluster.Client
			ctx := callCtx(t, time.Minute)
			obj := volume.ObjectName(name)
			for i := 0; i <= crashAfter; i++ {
				var err error
				switch steps[i] {
				case "PersistentVolumeClaim":
					err = k.CoreV1().PersistentVolumeClaims(d.ns).Delete(ctx, obj, metav1.DeleteOptions{})
				case "Deployment":
					err = k.AppsV1().Deployments(d.ns).Delete(ctx, obj, metav1.DeleteOptions{})
				case "Service":
					err = k.CoreV1().Services(d.ns).Delete(ctx, obj, metav1.DeleteOptions{})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			d.restart(t)
			id, _ := volume.IDFromName(name)
			d.waitLooked(t, id, 0) // the new reconciler saw the half-deleted volume
			if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: name}); err != nil {
				t.Fatalf("DeleteVolume after a crash: %v", err)
			}
			for kind, n := range d.objectCounts(t, name) {
				if n != 0 {
					t.Errorf("%d %s(s) left", n, kind)
				}
			}
		})
	}
}

// TestControlPlaneReconcilerRollsOutdatedServers: after an upgrade (a new server
// image), the reconciler rolls 20 volumes' servers at most MaxServerRollouts at a
// time, each waiting for its new server to be Ready, until every one runs the new
// template, except the volume pinned to its current server.
func TestControlPlaneReconcilerRollsOutdatedServers(t *testing.T) {
	const volumes, limit = 20, 2
	const next = "example.invalid/pvnfs-server:next"
	d := startDriverWith(t, &ReconcileOptions{Resync: time.Minute, OrphanMinAge: time.Hour, MaxServerRollouts: limit, RolloutRecheck: 500 * time.Millisecond})
	k := d.cluster.Client
	ctx := callCtx(t, 5*time.Minute)
	names := make([]string, volumes)
	for i := range names {
		names[i] = fmt.Sprintf("roll-%02d", i)
		d.create(t, names[i], nil)
	}
	pinned := volume.ObjectName(names[0])
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, AnnotationPinServer)
	if _, err := k.AppsV1().Deployments(d.ns).Patch(ctx, pinned, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// Watch every server Deployment from before the upgrade: a roll is in
	// progress from the update of its template to its new server being Ready.
	w, err := k.AppsV1().Deployments(d.ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	state := map[string]*appsv1.Deployment{}
	maxRolling := 0
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ev := range w.ResultChan() {
			dep, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				continue
			}
			mu.Lock()
			state[dep.Name] = dep
			rolling := 0
			for _, s := range state {
				if serverImage(s) == next && !rollComplete(s) {
					rolling++
				}
			}
			maxRolling = max(maxRolling, rolling)
			mu.Unlock()
		}
	}()

	d.serverImage = next
	d.restart(t)
	start := time.Now()
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		deps, err := k.AppsV1().Deployments(d.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		done := 0
		for i := range deps.Items {
			dep := &deps.Items[i]
			if dep.Name != pinned && serverImage(dep) == next && rollComplete(dep) {
				done++
			}
		}
		return done == volumes-1, nil
	})
	if err != nil {
		t.Fatalf("not every server was rolled: %v", err)
	}
	took := time.Since(start).Round(time.Millisecond)
	w.Stop()
	<-watched
	mu.Lock()
	seen := maxRolling
	mu.Unlock()
	t.Logf("%d servers rolled in %s with --max-server-rollouts %d; at most %d rolled at once", volumes-1, took, limit, seen)
	if seen > limit || seen == 0 {
		t.Errorf("at most %d servers rolled at once, want between 1 and %d", seen, limit)
	}
	dep, err := k.AppsV1().Deployments(d.ns).Get(ctx, pinned, metav1.GetOptions{})
	if err != nil || serverImage(dep) == next {
		t.Errorf("the pinned server was rolled (%v)", err)
	}
	eventually(t, "the pinned server counts as outdated, no roll left in progress", func(context.Context) (bool, error) {
		_, outdated := d.svc.metrics.counts()
		return outdated == 1 && d.svc.metrics.rolls() == 0, nil
	})
	if !d.hasEvent(ctx, EventServerRolled, volume.ObjectName(names[1])) {
		t.Errorf("no %s event on %s", EventServerRolled, volume.ObjectName(names[1]))
	}
}
