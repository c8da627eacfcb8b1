package deploy

// Day-2 changes of live volumes through the real sidecars: csi-provisioner passes
// a VolumeAttributesClass's parameters at creation, csi-resizer passes a new class
// to ControllerModifyVolume and a larger request to ControllerExpandVolume, each
// with the chart's flags and RBAC.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/harness"
	"github.com/pvnfs/pvnfs/test/localcluster"
)

// attributesClass creates a VolumeAttributesClass of pvnfs.
func attributesClass(t testing.TB, e *env, name string, params map[string]string) {
	t.Helper()
	vac := &storagev1.VolumeAttributesClass{ObjectMeta: metav1.ObjectMeta{Name: name}, DriverName: volume.DefaultDriverName, Parameters: params}
	_, err := e.cluster.Client.StorageV1().VolumeAttributesClasses().Create(context.Background(), vac, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// serverOf returns the server Deployment of a user's bound PVC.
func serverOf(ctx context.Context, e *env, pvc *corev1.PersistentVolumeClaim) (*appsv1.Deployment, error) {
	return e.cluster.Client.AppsV1().Deployments(driverNamespace).Get(ctx, volume.ObjectName(pvc.Spec.VolumeName), metav1.GetOptions{})
}

func threadsArg(n string) string { return "--" + serverconfig.FlagThreads + "=" + n }

// TestControlPlaneModifyVolumeThroughAttributesClass: a PVC created with a
// VolumeAttributesClass gets its settings; switching the PVC to another class
// rolls its server once with the new settings and csi-resizer records the class
// as current; a class that names a setting fixed for the volume's life is
// refused with an event naming it, and the server stays as it was.
func TestControlPlaneModifyVolumeThroughAttributesClass(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	k := e.cluster.Client
	sc := exampleClass(t, e, "pvnfs-modify", backendClass)
	attributesClass(t, e, "pvnfs-threads-16", map[string]string{parameters.NFSThreads: "16"})
	attributesClass(t, e, "pvnfs-threads-32", map[string]string{parameters.NFSThreads: "32", parameters.ServerMemoryLimit: "2Gi"})
	attributesClass(t, e, "pvnfs-ganesha", map[string]string{parameters.ServerEngine: parameters.EngineGanesha})
	ns := appNamespace(t, e)
	claim := harness.RWXClaim(ns, "web", sc.Name, "2Gi")
	first := "pvnfs-threads-16"
	claim.Spec.VolumeAttributesClassName = &first
	if _, err := k.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc := waitBound(t, e, ns, "web")
	dep, err := serverOf(ctx, e, pvc)
	if err != nil {
		t.Fatal(err)
	}
	if args := dep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, threadsArg("16")) {
		t.Errorf("server created with class %s runs %v, want %s", first, args, threadsArg("16"))
	}

	switchClass := func(name string) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"volumeAttributesClassName":%q}}`, name)
		if _, err := k.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	switchClass("pvnfs-threads-32")
	why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		pvc, err := k.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		cur := pvc.Status.CurrentVolumeAttributesClassName
		return cur != nil && *cur == "pvnfs-threads-32", fmt.Sprintf("current class %v, modify status %+v; events: %s",
			deref(cur), pvc.Status.ModifyVolumeStatus, events(ctx, e, ns, "web")), nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", why, err, e.logs())
	}
	after, err := serverOf(ctx, e, pvc)
	if err != nil {
		t.Fatal(err)
	}
	c := after.Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, threadsArg("32")) || c.Resources.Limits.Memory().String() != "2Gi" {
		t.Errorf("server after the switch runs %v with memory limit %s, want %s and 2Gi", c.Args, c.Resources.Limits.Memory(), threadsArg("32"))
	}
	if after.Generation != dep.Generation+1 {
		t.Errorf("server Deployment generation %d -> %d, want one roll", dep.Generation, after.Generation)
	}

	switchClass("pvnfs-ganesha")
	why, err = poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		evs := events(ctx, e, ns, "web")
		return strings.Contains(evs, `"serverEngine": cannot change on an existing volume`), "events: " + evs, nil
	})
	if err != nil {
		t.Fatalf("no event names the fixed parameter: %s: %v\n%s", why, err, e.logs())
	}
	t.Logf("the user's PVC after switching to a class that changes the engine: %s", why)
	last, err := serverOf(ctx, e, pvc)
	if err != nil || last.Generation != after.Generation {
		t.Errorf("the refused class changed the server: generation %d -> %d (%v)", after.Generation, last.Generation, err)
	}
	e.checkNoForbidden(t)
}

// TestControlPlaneExpandThroughResizer: csi-resizer's ControllerExpandVolume grows
// a volume once the backend has grown; on a backend that never grows, the user's
// PVC gets an event with the backend's own cause, and its capacity stays.
func TestControlPlaneExpandThroughResizer(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	k := e.cluster.Client
	for _, tc := range []struct {
		backend string
		grows   bool
	}{{backendClass, true}, {fullClass, false}} {
		t.Run(tc.backend, func(t *testing.T) {
			sc := exampleClass(t, e, "pvnfs-expand-"+tc.backend, tc.backend)
			ns := appNamespace(t, e)
			if _, err := k.CoreV1().PersistentVolumeClaims(ns).Create(ctx, harness.RWXClaim(ns, "grow", sc.Name, "2Gi"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitBound(t, e, ns, "grow")
			if _, err := k.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "grow", types.MergePatchType,
				[]byte(`{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}`), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			want := resource.MustParse("3Gi")
			why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
				pvc, err := k.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "grow", metav1.GetOptions{})
				if err != nil {
					return false, err.Error(), nil
				}
				got := pvc.Status.Capacity[corev1.ResourceStorage]
				evs := events(ctx, e, ns, "grow")
				if tc.grows {
					return got.Cmp(want) == 0, fmt.Sprintf("capacity %s; events: %s", got.String(), evs), nil
				}
				if got.Cmp(want) >= 0 {
					return false, "", fmt.Errorf("the PVC shows %s although the backend never grew", got.String())
				}
				return strings.Contains(evs, localcluster.ResizeFailedMessage), "events: " + evs, nil
			})
			if err != nil {
				t.Fatalf("%s: %v\n%s", why, err, e.logs())
			}
			t.Logf("the user's PVC: %s", why)
		})
	}
	e.checkNoForbidden(t)
}
