package localcluster

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	toolscache "k8s.io/client-go/tools/cache"
)

// BackendProvisioner is the provisioner name of the backend StorageClass.
const BackendProvisioner = "backend.test.pvnfs.io"

// Annotations the PV controller and the scheduler set on claims.
const (
	annStorageProvisioner = "volume.kubernetes.io/storage-provisioner"
	annSelectedNode       = "volume.kubernetes.io/selected-node"
	annProvisionedBy      = "pv.kubernetes.io/provisioned-by"
)

// BackendClass describes a backend StorageClass served by the test provisioner.
type BackendClass struct {
	// Name of the StorageClass.
	Name string
	// Default makes it the cluster's default StorageClass.
	Default bool
	// Immediate binds at once; otherwise WaitForFirstConsumer, like most block
	// storage: the claim is provisioned when the server pod is scheduled.
	Immediate bool
	// AllowExpansion sets allowVolumeExpansion.
	AllowExpansion bool
	// NeverProvision makes the class whose claims stay Pending: the provisioner
	// records a ProvisioningFailed event instead, as a broken backend would.
	NeverProvision bool
	// FailResize makes the class whose expansions never complete: the resizer
	// records a VolumeResizeFailed event on the claim instead, as a backend that
	// has run out of space would.
	FailResize bool
}

// ResizeFailedMessage is the message of the event a FailResize class records.
const ResizeFailedMessage = "backend cannot grow the volume: the storage pool is full (test class whose resizes fail)"

// AddBackendClass creates a StorageClass whose claims the cluster's test provisioner
// serves with PVs that need no node (nothing is ever attached or mounted here).
func (c *Cluster) AddBackendClass(ctx context.Context, b BackendClass) error {
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	if b.Immediate {
		mode = storagev1.VolumeBindingImmediate
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	sc := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: b.Name, Annotations: map[string]string{}},
		Provisioner:          BackendProvisioner,
		VolumeBindingMode:    &mode,
		ReclaimPolicy:        &reclaim,
		AllowVolumeExpansion: &b.AllowExpansion,
		Parameters:           map[string]string{},
	}
	if b.Default {
		sc.Annotations["storageclass.kubernetes.io/is-default-class"] = "true"
	}
	if b.NeverProvision {
		sc.Parameters["fail"] = "true"
	}
	if b.FailResize {
		sc.Parameters["failResize"] = "true"
	}
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// StartBackendProvisioner runs, until the cluster stops, the provisioner of every
// StorageClass made by AddBackendClass: it creates a PV for each claim the PV
// controller hands to it (after the scheduler picked a node, for
// WaitForFirstConsumer), deletes PVs released with reclaim policy Delete, and
// completes expansions, as an external-provisioner and external-resizer pair would.
func (c *Cluster) StartBackendProvisioner() error {
	f := informers.NewSharedInformerFactory(c.Client, 0)
	pvcs := f.Core().V1().PersistentVolumeClaims()
	pvs := f.Core().V1().PersistentVolumes()
	scs := f.Storage().V1().StorageClasses()
	// Informers must be requested before Start, or they never run.
	scInformer := scs.Informer()
	queue := make(chan func(context.Context), 1024)
	enqueue := func(fn func(context.Context)) {
		select {
		case queue <- fn:
		case <-c.ctx.Done():
		}
	}
	_, _ = pvcs.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			pvc := o.(*corev1.PersistentVolumeClaim)
			enqueue(func(ctx context.Context) { c.syncClaim(ctx, pvc, scs.Lister().Get) })
		},
		UpdateFunc: func(_, o any) {
			pvc := o.(*corev1.PersistentVolumeClaim)
			enqueue(func(ctx context.Context) { c.syncClaim(ctx, pvc, scs.Lister().Get) })
		},
	})
	_, _ = pvs.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			pv := o.(*corev1.PersistentVolume)
			enqueue(func(ctx context.Context) { c.syncVolume(ctx, pv) })
		},
		UpdateFunc: func(_, o any) {
			pv := o.(*corev1.PersistentVolume)
			enqueue(func(ctx context.Context) { c.syncVolume(ctx, pv) })
		},
	})
	f.Start(c.ctx.Done())
	if !toolscache.WaitForCacheSync(c.ctx.Done(), pvcs.Informer().HasSynced, pvs.Informer().HasSynced, scInformer.HasSynced) {
		return fmt.Errorf("backend provisioner caches did not sync")
	}
	// A few workers: the benchmarks provision hundreds of claims at once.
	for i := 0; i < 8; i++ {
		go func() {
			for {
				select {
				case fn := <-queue:
					ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
					fn(ctx)
					cancel()
				case <-c.ctx.Done():
					return
				}
			}
		}()
	}
	return nil
}

func (c *Cluster) syncClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim, class func(string) (*storagev1.StorageClass, error)) {
	if pvc.Annotations[annStorageProvisioner] != BackendProvisioner || pvc.DeletionTimestamp != nil {
		return
	}
	sc, err := class(storageClassOf(pvc))
	if err != nil {
		return
	}
	if pvc.Spec.VolumeName != "" {
		c.resizeClaim(ctx, pvc, sc.Parameters["failResize"] == "true")
		return
	}
	if sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer && pvc.Annotations[annSelectedNode] == "" {
		return
	}
	if sc.Parameters["fail"] == "true" {
		c.event(ctx, pvc, "ProvisioningFailed", "backend storage is unavailable (test class that never provisions)")
		return
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + string(pvc.UID), Annotations: map[string]string{annProvisionedBy: BackendProvisioner}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: *sc.ReclaimPolicy,
			StorageClassName:              sc.Name,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			// Never mounted here: no kubelet runs. A real backend is a block device
			// attached to the server pod's node.
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/pvnfs-test-backend/" + string(pvc.UID)}},
		},
	}
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		c.event(ctx, pvc, "ProvisioningFailed", err.Error())
	}
}

// resizeClaim completes an expansion: the PV and the claim's status take the new
// size, as a resizer does for a volume that needs no node step.
func (c *Cluster) resizeClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim, fail bool) {
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pvc.Status.Capacity[corev1.ResourceStorage]
	if pvc.Status.Phase != corev1.ClaimBound || want.Cmp(have) <= 0 {
		return
	}
	if fail {
		c.event(ctx, pvc, "VolumeResizeFailed", ResizeFailedMessage)
		return
	}
	patch := fmt.Sprintf(`{"spec":{"capacity":{"storage":%q}}}`, want.String())
	if _, err := c.Client.CoreV1().PersistentVolumes().Patch(ctx, pvc.Spec.VolumeName, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		return
	}
	status := fmt.Sprintf(`{"status":{"capacity":{"storage":%q}}}`, want.String())
	_, _ = c.Client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Patch(ctx, pvc.Name, "application/merge-patch+json", []byte(status), metav1.PatchOptions{}, "status")
}

func (c *Cluster) syncVolume(ctx context.Context, pv *corev1.PersistentVolume) {
	if pv.Annotations[annProvisionedBy] != BackendProvisioner || pv.Status.Phase != corev1.VolumeReleased ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return
	}
	_ = c.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
}

func (c *Cluster) event(ctx context.Context, pvc *corev1.PersistentVolumeClaim, reason, msg string) {
	now := metav1.Now()
	_, _ = c.Client.CoreV1().Events(pvc.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pvc.Name + ".", Namespace: pvc.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
			Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
		Reason: reason, Message: msg, Type: corev1.EventTypeWarning,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: BackendProvisioner},
	}, metav1.CreateOptions{})
}

func storageClassOf(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return ""
}
