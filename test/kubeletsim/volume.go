package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pvnfs/pvnfs/test/simnode"
)

// pvcProtectionFinalizer keeps a claim while pods use it.
const pvcProtectionFinalizer = "kubernetes.io/pvc-protection"

// podVolume is a pod's claim volume once resolved: one of the driver's volumes, or
// a volume this kubelet leaves alone (ignore: another driver's, or one it cannot
// mount).
type podVolume struct {
	// name is the pod's volume name (spec.volumes[].name), for messages.
	name string
	// volume is what the CSI calls need: handle, PV name, context, capability.
	volume   simnode.Volume
	readOnly bool
	ignore   bool
}

// errNotOurs marks a claim bound to another driver's volume: not an error, nothing to do.
var errNotOurs = errors.New("not a volume of the driver")

// errWaiting marks a volume that cannot be mounted yet (claim unbound, PV missing);
// an event on the claim or the PV retries it.
var errWaiting = errors.New("waiting")

// errUnsupported marks a volume of the driver this kubelet cannot mount; it says so
// in an event on the pod, once.
var errUnsupported = errors.New("unsupported")

// claimName is the claim a pod volume uses, "" for volumes that are not claims.
// A generic ephemeral volume's claim is named <pod>-<volume> (and must be owned by
// the pod, which resolve checks).
func claimName(pod *corev1.Pod, v *corev1.Volume) (name string, readOnly, ephemeral bool) {
	switch {
	case v.PersistentVolumeClaim != nil:
		return v.PersistentVolumeClaim.ClaimName, v.PersistentVolumeClaim.ReadOnly, false
	case v.Ephemeral != nil:
		return pod.Name + "-" + v.Name, false, true
	}
	return "", false, false
}

// resolve finds the PV behind a pod's claim the way kubelet's desired-state populator
// does, reading both from the API server (not from a cache that may lag): the claim
// must be Bound (and not being deleted, unless pods still hold it), and the PV's
// claimRef must point back at it.
func (k *Kubelet) resolve(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (podVolume, error) {
	name, readOnly, ephemeral := claimName(pod, v)
	pvc, err := k.client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return podVolume{}, fmt.Errorf("%w: claim %s/%s not found", errWaiting, pod.Namespace, name)
	} else if err != nil {
		return podVolume{}, err
	}
	if ephemeral && !metav1.IsControlledBy(pvc, pod) {
		return podVolume{}, fmt.Errorf("%w: claim %s/%s of ephemeral volume %q is not owned by the pod", errWaiting, pod.Namespace, name, v.Name)
	}
	if pvc.DeletionTimestamp != nil && !slices.Contains(pvc.Finalizers, pvcProtectionFinalizer) {
		return podVolume{}, fmt.Errorf("%w: claim %s/%s is being deleted", errWaiting, pod.Namespace, name)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return podVolume{}, fmt.Errorf("%w: claim %s/%s is %s", errWaiting, pod.Namespace, name, pvc.Status.Phase)
	}
	pv, err := k.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return podVolume{}, fmt.Errorf("%w: volume %s of claim %s/%s not found", errWaiting, pvc.Spec.VolumeName, pod.Namespace, name)
	} else if err != nil {
		return podVolume{}, err
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != k.driver {
		return podVolume{}, errNotOurs
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != pvc.UID {
		return podVolume{}, fmt.Errorf("%w: volume %s is not bound to claim %s/%s", errWaiting, pv.Name, pod.Namespace, name)
	}
	if pv.Spec.CSI.NodeStageSecretRef != nil || pv.Spec.CSI.NodePublishSecretRef != nil {
		return podVolume{}, fmt.Errorf("%w: volume %s names node stage or publish secrets, which this simulated kubelet does not fetch (pvnfs volumes have none)", errUnsupported, pv.Name)
	}
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return podVolume{}, fmt.Errorf("%w: volume %s is a block volume; this simulated kubelet mounts filesystems only", errUnsupported, pv.Name)
	}
	return podVolume{
		name:     v.Name,
		readOnly: readOnly,
		volume: simnode.Volume{
			Handle:     pv.Spec.CSI.VolumeHandle,
			PVName:     pv.Name,
			Context:    pv.Spec.CSI.VolumeAttributes,
			Capability: capability(pv, k.singleNodeMultiWriter[pod.Spec.NodeName]),
		},
	}, nil
}

// capability is the capability kubelet sends for a PV: a mount with the PV's fsType
// and mountOptions, and the access mode of its first access mode (kubelet's csi
// plugin ignores the others), mapped by what the node's plugin supports.
func capability(pv *corev1.PersistentVolume, singleNodeMultiWriter bool) *csi.VolumeCapability {
	mode := corev1.ReadWriteOnce
	if len(pv.Spec.AccessModes) > 0 {
		mode = pv.Spec.AccessModes[0]
	}
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{
			FsType: pv.Spec.CSI.FSType, MountFlags: pv.Spec.MountOptions,
		}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: accessMode(mode, singleNodeMultiWriter)},
	}
}

// accessMode maps a Kubernetes access mode to CSI as kubelet does: drivers with the
// SINGLE_NODE_MULTI_WRITER node capability get the finer single-node modes.
func accessMode(m corev1.PersistentVolumeAccessMode, singleNodeMultiWriter bool) csi.VolumeCapability_AccessMode_Mode {
	switch m {
	case corev1.ReadWriteOnce:
		if singleNodeMultiWriter {
			return csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER
		}
		return csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	case corev1.ReadOnlyMany:
		return csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
	case corev1.ReadWriteMany:
		return csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	case corev1.ReadWriteOncePod:
		if singleNodeMultiWriter {
			return csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
		}
		return csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	}
	return csi.VolumeCapability_AccessMode_UNKNOWN
}
