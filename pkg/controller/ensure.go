package controller

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// ensureObjects gets or creates the volume's Service, backend PVC and Deployment, in
// that order: the Service first, so its ClusterIP is allocated before anything costly
// and is recorded on the PVC and Deployment, from which a lost Service is rebuilt
// with the same address. Each step is safe to repeat after a crash at any point.
func (s *Service) ensureObjects(ctx context.Context, v *volumeSpec) error {
	if err := s.ensureService(ctx, v); err != nil {
		return err
	}
	s.cfg.afterStep(StepServiceEnsured, v.id)
	if err := s.ensurePVC(ctx, *v); err != nil {
		return err
	}
	s.cfg.afterStep(StepBackendPVCEnsured, v.id)
	if err := s.ensureDeployment(ctx, *v); err != nil {
		return err
	}
	s.cfg.afterStep(StepDeploymentEnsured, v.id)
	return nil
}

func (s *Service) ensureService(ctx context.Context, v *volumeSpec) error {
	ns, name := s.cfg.Namespace, volume.ObjectName(v.id)
	svc, err := getOrCreate(ctx,
		func() (*corev1.Service, error) { return s.cache.services.Services(ns).Get(name) },
		func(ctx context.Context) (*corev1.Service, error) {
			want := *v
			want.clusterIP = s.recordedClusterIP(v.id)
			return s.client.CoreV1().Services(ns).Create(ctx, s.cfg.buildService(want), metav1.CreateOptions{})
		},
		func(ctx context.Context) (*corev1.Service, error) {
			return s.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		})
	if err != nil {
		return fmt.Errorf("ensuring Service %s/%s: %w", ns, name, err)
	}
	if err := checkSameVolume(svc, *v); err != nil {
		return err
	}
	v.clusterIP = svc.Spec.ClusterIP
	return nil
}

// recordedClusterIP returns the ClusterIP a volume's other objects remember, so a
// Service deleted behind pvnfs's back comes back at the address nodes have mounted.
func (s *Service) recordedClusterIP(id string) string {
	name := volume.ObjectName(id)
	if pvc, _ := s.cache.pvcs.PersistentVolumeClaims(s.cfg.Namespace).Get(name); pvc != nil && pvc.Annotations[volume.AnnotationClusterIP] != "" {
		return pvc.Annotations[volume.AnnotationClusterIP]
	}
	if dep, _ := s.cache.deployments.Deployments(s.cfg.Namespace).Get(name); dep != nil {
		return dep.Annotations[volume.AnnotationClusterIP]
	}
	return ""
}

func (s *Service) ensurePVC(ctx context.Context, v volumeSpec) error {
	ns, name := s.cfg.Namespace, volume.ObjectName(v.id)
	pvc, err := getOrCreate(ctx,
		func() (*corev1.PersistentVolumeClaim, error) {
			return s.cache.pvcs.PersistentVolumeClaims(ns).Get(name)
		},
		func(ctx context.Context) (*corev1.PersistentVolumeClaim, error) { return s.createBackendPVC(ctx, v) },
		func(ctx context.Context) (*corev1.PersistentVolumeClaim, error) {
			return s.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		})
	if err != nil {
		return fmt.Errorf("ensuring backend PVC %s/%s: %w", ns, name, err)
	}
	if err := checkSameVolume(pvc, v); err != nil {
		return err
	}
	if err := checkSameSource(pvc, v); err != nil {
		return err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !capacityFits(size.Value(), v.capRange) {
		return status.Errorf(codes.AlreadyExists, "volume %q exists with %s, outside the requested range (required %d, limit %d bytes)",
			v.name, size.String(), v.capRange.GetRequiredBytes(), v.capRange.GetLimitBytes())
	}
	return nil
}

// createBackendPVC creates the backend PVC with the access mode the volume's
// backendAccessMode asks for. Unset ("auto") it is ReadWriteOncePod where that is
// enforced (autoBackendAccessMode), so that no second pod, not even one on the
// server's node, can mount the data; and ReadWriteOnce when the API server does not
// accept ReadWriteOncePod (before Kubernetes 1.27 it is off by default). The mode
// is fixed for the volume's life: a claim's access modes cannot change.
func (s *Service) createBackendPVC(ctx context.Context, v volumeSpec) (*corev1.PersistentVolumeClaim, error) {
	pvcs := s.client.CoreV1().PersistentVolumeClaims(s.cfg.Namespace)
	mode, why := v.params.BackendAccessMode, "the StorageClass parameter "+parameters.BackendAccessMode
	if mode == "" {
		var err error
		if mode, why, err = s.autoBackendAccessMode(ctx, v); err != nil {
			return nil, err
		}
	}
	build := func(mode corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
		pvc := s.cfg.buildBackendPVC(v, mode)
		applyContentSource(pvc, v)
		return pvc
	}
	pvc, err := pvcs.Create(ctx, build(mode), metav1.CreateOptions{})
	if err != nil && v.params.BackendAccessMode == "" && mode == corev1.ReadWriteOncePod &&
		apierrors.IsInvalid(err) && strings.Contains(err.Error(), string(corev1.ReadWriteOncePod)) {
		mode, why = corev1.ReadWriteOnce, "the API server refused ReadWriteOncePod: "+err.Error()
		pvc, err = pvcs.Create(ctx, build(mode), metav1.CreateOptions{})
	}
	if err == nil {
		klog.V(2).InfoS("Created backend PVC", "volumeID", v.id, "accessMode", mode, "reason", why)
	}
	return pvc, err
}

// autoBackendAccessMode chooses the backend PVC's access mode when the StorageClass
// does not: ReadWriteOncePod when the backend class is provisioned by a CSI driver
// registered in the cluster (a CSIDriver object of the provisioner's name), else
// ReadWriteOnce. Kubernetes enforces ReadWriteOncePod for CSI volumes only, and the
// csi-provisioner sidecar passes it to a driver as SINGLE_NODE_WRITER (the mode of
// ReadWriteOnce) unless the driver offers SINGLE_NODE_MULTI_WRITER, so every CSI
// block driver provisions it. Other provisioners may refuse it or create volumes
// that cannot bind to it. It also returns why, for the log.
func (s *Service) autoBackendAccessMode(ctx context.Context, v volumeSpec) (corev1.PersistentVolumeAccessMode, string, error) {
	sc := s.backendClass(v.params.BackendStorageClass)
	if sc == nil {
		return corev1.ReadWriteOnce, "the backend StorageClass is unknown (no backendStorageClass and no default class)", nil
	}
	_, err := s.client.StorageV1().CSIDrivers().Get(ctx, sc.Provisioner, metav1.GetOptions{})
	switch {
	case err == nil:
		return corev1.ReadWriteOncePod, fmt.Sprintf("backend StorageClass %q is provisioned by the CSI driver %s", sc.Name, sc.Provisioner), nil
	case apierrors.IsNotFound(err):
		return corev1.ReadWriteOnce, fmt.Sprintf("backend StorageClass %q is provisioned by %s, which is not a registered CSI driver (no CSIDriver object); ReadWriteOncePod is enforced for CSI volumes only", sc.Name, sc.Provisioner), nil
	case apierrors.IsForbidden(err):
		// An RBAC from before pvnfs read CSIDrivers: the mode of older volumes.
		return corev1.ReadWriteOnce, "cannot read CSIDrivers (RBAC): " + err.Error(), nil
	}
	return "", "", fmt.Errorf("reading CSIDriver %s of backend StorageClass %q: %w", sc.Provisioner, sc.Name, err)
}

// The annotations that mark the cluster's default StorageClass (k8s.io/api keeps
// their names in an internal package only).
const (
	isDefaultClass     = "storageclass.kubernetes.io/is-default-class"
	betaIsDefaultClass = "storageclass.beta.kubernetes.io/is-default-class"
)

// backendClass returns the named StorageClass, or with "" the cluster's default one
// (the newest, as the PV controller picks it when several are marked), from the
// cache; nil when there is none.
func (s *Service) backendClass(name string) *storagev1.StorageClass {
	if name != "" {
		sc, _ := s.cache.storageClasses.Get(name)
		return sc
	}
	all, _ := s.cache.storageClasses.List(labels.Everything())
	var found *storagev1.StorageClass
	for _, sc := range all {
		a := sc.Annotations
		if a[isDefaultClass] != "true" && a[betaIsDefaultClass] != "true" {
			continue
		}
		if found == nil || sc.CreationTimestamp.After(found.CreationTimestamp.Time) {
			found = sc
		}
	}
	return found
}

func (s *Service) ensureDeployment(ctx context.Context, v volumeSpec) error {
	ns, name := s.cfg.Namespace, volume.ObjectName(v.id)
	dep, err := getOrCreate(ctx,
		func() (*appsv1.Deployment, error) { return s.cache.deployments.Deployments(ns).Get(name) },
		func(ctx context.Context) (*appsv1.Deployment, error) {
			return s.client.AppsV1().Deployments(ns).Create(ctx, s.cfg.buildDeployment(v), metav1.CreateOptions{})
		},
		func(ctx context.Context) (*appsv1.Deployment, error) {
			return s.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		})
	if err != nil {
		return fmt.Errorf("ensuring server Deployment %s/%s: %w", ns, name, err)
	}
	return checkSameVolume(dep, v)
}

// getOrCreate returns the object from the cache, or creates it. When the create
// fails, the object may exist all the same and the cache not show it yet (a racing
// retry or second controller; informers catching up after an API server outage): a
// Service asked for with its recorded ClusterIP then fails as "IP already
// allocated", not AlreadyExists. So any failed create reads the object from the API
// before giving up; the happy path costs one request.
func getOrCreate[T any](ctx context.Context, cached func() (T, error), create, get func(context.Context) (T, error)) (T, error) {
	if obj, err := cached(); err == nil {
		return obj, nil
	}
	obj, err := create(ctx)
	if err == nil {
		return obj, nil
	}
	if existing, getErr := get(ctx); getErr == nil {
		return existing, nil
	}
	return obj, err
}

// checkSameVolume refuses an object that serves another volume name (an ID
// collision) or the same name with other parameters: CSI asks for AlreadyExists.
func checkSameVolume(obj metav1.Object, v volumeSpec) error {
	a := obj.GetAnnotations()
	if got := a[volume.AnnotationVolumeName]; got != v.name {
		return status.Errorf(codes.AlreadyExists, "%s %s/%s belongs to volume %q, not %q", kindOf(obj), obj.GetNamespace(), obj.GetName(), got, v.name)
	}
	if got := a[volume.AnnotationParameters]; got != v.storedParams {
		return status.Errorf(codes.AlreadyExists, "volume %q exists with other parameters: %s, requested %s", v.name, got, v.storedParams)
	}
	return nil
}

// deleteObjects deletes the backend PVC first, then the Deployment and the Service.
// The PVC goes first because its deletion mark is durable and visible to every
// controller replica: the pvc-protection finalizer keeps it (and the data) until the
// server pod is gone, and the reconciler never repairs a volume whose backend PVC is
// being deleted, so a DeleteVolume cut short by a crash is finished by its retry,
// not undone. Only objects labelled for this volume are deleted, each by UID, so a
// same-named object created meanwhile is left alone.
func (s *Service) deleteObjects(ctx context.Context, id string) error {
	ns, name := s.cfg.Namespace, volume.ObjectName(id)
	bg := metav1.DeletePropagationBackground
	steps := []struct {
		kind   string
		cached func() (metav1.Object, error)
		del    func(context.Context, metav1.DeleteOptions) error
	}{
		{"PersistentVolumeClaim", func() (metav1.Object, error) { return s.cache.pvcs.PersistentVolumeClaims(ns).Get(name) },
			func(ctx context.Context, o metav1.DeleteOptions) error {
				return s.client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, o)
			}},
		{"Deployment", func() (metav1.Object, error) { return s.cache.deployments.Deployments(ns).Get(name) },
			func(ctx context.Context, o metav1.DeleteOptions) error {
				return s.client.AppsV1().Deployments(ns).Delete(ctx, name, o)
			}},
		{"Service", func() (metav1.Object, error) { return s.cache.services.Services(ns).Get(name) },
			func(ctx context.Context, o metav1.DeleteOptions) error {
				return s.client.CoreV1().Services(ns).Delete(ctx, name, o)
			}},
	}
	for _, step := range steps {
		opts := metav1.DeleteOptions{PropagationPolicy: &bg}
		obj, err := step.cached()
		if err == nil {
			if obj.GetLabels()[volume.LabelVolumeID] != id {
				klog.InfoS("Not deleting an object pvnfs did not create", "kind", step.kind, "namespace", ns, "name", name)
				continue
			}
			if obj.GetDeletionTimestamp() != nil {
				continue
			}
			uid := types.UID(obj.GetUID())
			opts.Preconditions = &metav1.Preconditions{UID: &uid}
		}
		// Not in the cache: it may be too new to be there; delete by name.
		if err := step.del(ctx, opts); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s %s/%s: %w", step.kind, ns, name, err)
		}
	}
	return nil
}

// expandBackend raises the backend PVC's storage request to size and returns the new
// request. It never shrinks: CSI expansion only grows.
func (s *Service) expandBackend(ctx context.Context, id string, size int64) (int64, error) {
	ns, name := s.cfg.Namespace, volume.ObjectName(id)
	pvc, err := s.cache.pvcs.PersistentVolumeClaims(ns).Get(name)
	if err != nil {
		if pvc, err = s.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return 0, status.Errorf(codes.NotFound, "volume %s does not exist", id)
			}
			return 0, err
		}
	}
	cur := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if cur.Value() >= size {
		return cur.Value(), nil
	}
	if err := s.checkExpandable(pvc); err != nil {
		return 0, err
	}
	q := resource.NewQuantity(size, resource.BinarySI)
	patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, q.String())
	if _, err := s.client.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return 0, status.Errorf(codes.FailedPrecondition, "the backend PVC %s/%s cannot grow to %s: %v", ns, name, q.String(), err)
		}
		return 0, fmt.Errorf("growing backend PVC %s/%s to %s: %w", ns, name, q.String(), err)
	}
	klog.V(2).InfoS("Backend PVC expansion requested", "volumeID", id, "from", cur.String(), "to", q.String())
	return size, nil
}

// waitExpanded waits until the backend PVC's status reports at least size bytes
// and returns its capacity.
func (s *Service) waitExpanded(ctx context.Context, id string, size int64) (int64, error) {
	want := resource.NewQuantity(size, resource.BinarySI)
	st, err := s.waitUntil(ctx, id, "expanded to "+want.String(),
		func(st volumeState) bool { return st.pvc != nil && claimCapacity(st.pvc) >= size },
		func(st volumeState) string { return s.cache.expansionReason(st.pvc, want) })
	if err != nil {
		return 0, err
	}
	got := claimCapacity(st.pvc)
	klog.V(2).InfoS("Backend PVC expanded", "volumeID", id, "capacity", resource.NewQuantity(got, resource.BinarySI).String())
	return got, nil
}

// claimCapacity is what the backend reports a claim to hold, 0 before it is bound.
func claimCapacity(pvc *corev1.PersistentVolumeClaim) int64 {
	q := pvc.Status.Capacity[corev1.ResourceStorage]
	return q.Value()
}

// checkExpandable explains, before trying, that a backend StorageClass without
// allowVolumeExpansion cannot grow: the API server would refuse the patch with a
// message about the PVC, not about the class the user has to change.
func (s *Service) checkExpandable(pvc *corev1.PersistentVolumeClaim) error {
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	if class == "" {
		return nil // let the API server decide; nothing better to say
	}
	sc, err := s.cache.storageClasses.Get(class)
	if err != nil {
		return nil
	}
	if sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion {
		return status.Errorf(codes.FailedPrecondition,
			"the backend StorageClass %q does not allow volume expansion: set allowVolumeExpansion: true on it to grow pvnfs volumes", class)
	}
	return nil
}

func kindOf(obj metav1.Object) string {
	switch obj.(type) {
	case *corev1.Service:
		return "Service"
	case *corev1.PersistentVolumeClaim:
		return "PersistentVolumeClaim"
	case *appsv1.Deployment:
		return "Deployment"
	}
	return "object"
}
