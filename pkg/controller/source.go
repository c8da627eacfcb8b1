package controller

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// A volume restored from a snapshot or cloned from a volume gets a backend PVC whose
// dataSource is the snapshot's backend VolumeSnapshot or the source's backend PVC: the
// backend driver copies the data, as fast as it can, and the new volume gets its own
// server and Service like any other. The source keeps serving throughout.

// contentSource is what a volume is created from.
type contentSource struct {
	kind string // volume.SourceSnapshot or volume.SourceVolume
	id   string
}

func (c *contentSource) String() string {
	if c == nil {
		return ""
	}
	return volume.FormatContentSource(c.kind, c.id)
}

// parseContentSource reads a CreateVolume request's content source; nil for none.
func parseContentSource(cs *csi.VolumeContentSource) (*contentSource, error) {
	switch {
	case cs == nil:
		return nil, nil
	case cs.GetSnapshot() != nil:
		if cs.GetSnapshot().GetSnapshotId() == "" {
			return nil, status.Error(codes.InvalidArgument, "volume_content_source.snapshot.snapshot_id is required")
		}
		return &contentSource{kind: volume.SourceSnapshot, id: cs.GetSnapshot().GetSnapshotId()}, nil
	case cs.GetVolume() != nil:
		if cs.GetVolume().GetVolumeId() == "" {
			return nil, status.Error(codes.InvalidArgument, "volume_content_source.volume.volume_id is required")
		}
		return &contentSource{kind: volume.SourceVolume, id: cs.GetVolume().GetVolumeId()}, nil
	}
	return nil, status.Error(codes.InvalidArgument, "volume_content_source: pvnfs restores snapshots and clones volumes; this kind of source is not supported")
}

// prepareContentSource checks a new volume's source before anything is created, as
// CSI asks: NotFound for a source that does not exist, InvalidArgument for one this
// controller cannot restore from (another pvnfs namespace, another backend), and
// OutOfRange for a capacity smaller than the source. It raises the capacity to the
// source's size when the request leaves it open, and flushes a source volume's
// server before its backend is cloned. A volume whose backend PVC exists already is
// a retry: its source is compared in ensurePVC instead.
func (s *Service) prepareContentSource(ctx context.Context, v *volumeSpec) error {
	if v.source == nil {
		return nil
	}
	if s.snaps == nil {
		return status.Error(codes.InvalidArgument, "volume_content_source: this controller runs without snapshots and clones")
	}
	if existing, _ := s.cache.pvcs.PersistentVolumeClaims(s.cfg.Namespace).Get(volume.ObjectName(v.id)); existing != nil {
		return nil
	}
	switch v.source.kind {
	case volume.SourceSnapshot:
		return s.prepareRestore(ctx, v)
	default:
		return s.prepareClone(ctx, v)
	}
}

func (s *Service) prepareRestore(ctx context.Context, v *volumeSpec) error {
	ns, key, err := volume.ParseSnapshotID(v.source.id)
	if err != nil {
		return status.Errorf(codes.NotFound, "source snapshot %q does not exist: %v", v.source.id, err)
	}
	if ns != s.cfg.Namespace {
		return status.Errorf(codes.InvalidArgument,
			"source snapshot %s belongs to the pvnfs installation in namespace %q; this controller serves %q, and a backend volume can be restored only from a snapshot in its own namespace",
			v.source.id, ns, s.cfg.Namespace)
	}
	if err := s.snaps.ready(ctx); err != nil {
		return err
	}
	vs := s.snaps.get(key)
	switch {
	case vs == nil:
		return status.Errorf(codes.NotFound, "source snapshot %s does not exist", v.source.id)
	case vs.DeletionTimestamp != nil:
		return status.Errorf(codes.NotFound, "source snapshot %s is being deleted", v.source.id)
	case !snapshotReady(vs):
		return status.Errorf(codes.Unavailable, "source snapshot %s: %v (%s); the call will be retried", v.source.id, errSnapshotNotReady, s.snapshotProgress(vs))
	}
	if driver := vs.Annotations[volume.AnnotationBackendDriver]; driver != "" {
		if sc := s.backendClass(v.params.BackendStorageClass); sc != nil && sc.Provisioner != driver {
			return status.Errorf(codes.InvalidArgument,
				"source snapshot %s was taken by the CSI driver %s, but the new volume's backend StorageClass %q is provisioned by %s; restore it with a pvnfs StorageClass whose backendStorageClass is of driver %s",
				v.source.id, driver, sc.Name, sc.Provisioner, driver)
		}
	}
	return fitSource(v, restoreSize(vs), "source snapshot "+v.source.id)
}

func (s *Service) prepareClone(ctx context.Context, v *volumeSpec) error {
	id := v.source.id
	if _, err := volume.ParseID(id); err != nil {
		return status.Errorf(codes.NotFound, "source volume %q does not exist: %v", id, err)
	}
	src, _ := s.cache.pvcs.PersistentVolumeClaims(s.cfg.Namespace).Get(volume.ObjectName(id))
	switch {
	case src == nil || src.Labels[volume.LabelVolumeID] != id:
		return status.Errorf(codes.NotFound, "source volume %s does not exist", id)
	case src.DeletionTimestamp != nil:
		return status.Errorf(codes.NotFound, "source volume %s is being deleted", id)
	}
	// Kubernetes clones only within one StorageClass.
	srcClass := ""
	if src.Spec.StorageClassName != nil {
		srcClass = *src.Spec.StorageClassName
	}
	if sc := s.backendClass(v.params.BackendStorageClass); sc != nil && srcClass != "" && sc.Name != srcClass {
		return status.Errorf(codes.InvalidArgument,
			"source volume %s keeps its data in backend StorageClass %q, the new volume's backendStorageClass is %q: a backend can clone only within one StorageClass; clone with a pvnfs StorageClass whose backendStorageClass is %q",
			id, srcClass, sc.Name, srcClass)
	}
	size := src.Spec.Resources.Requests[corev1.ResourceStorage]
	if err := fitSource(v, size.Value(), "source volume "+id); err != nil {
		return err
	}
	return s.flushServers(ctx, id)
}

// restoreSize is the smallest volume a snapshot restores to; 0 when the backend does
// not say.
func restoreSize(vs *crdv1.VolumeSnapshot) int64 {
	if vs.Status == nil || vs.Status.RestoreSize == nil {
		return 0
	}
	return vs.Status.RestoreSize.Value()
}

// fitSource makes the new volume at least as large as its source, or says that the
// requested range excludes it (OutOfRange, as CSI asks for an unsupported capacity).
func fitSource(v *volumeSpec, need int64, what string) error {
	req, lim := v.capRange.GetRequiredBytes(), v.capRange.GetLimitBytes()
	if req > 0 && req < need || lim > 0 && lim < need {
		return status.Errorf(codes.OutOfRange, "capacity_range (required %d, limit %d bytes): %s holds %s (%d bytes); a volume made from it must be at least as large",
			req, lim, what, resource.NewQuantity(need, resource.BinarySI).String(), need)
	}
	if v.capacity < need {
		klog.V(2).InfoS("Volume made as large as its source", "volumeID", v.id, "source", v.source.String(), "bytes", need)
		v.capacity = need
	}
	return nil
}

// applyContentSource sets a new backend PVC's data source and records the volume's
// source on it.
func applyContentSource(pvc *corev1.PersistentVolumeClaim, v volumeSpec) {
	if v.source == nil {
		return
	}
	pvc.Annotations[volume.AnnotationContentSource] = v.source.String()
	switch v.source.kind {
	case volume.SourceSnapshot:
		_, key, _ := volume.ParseSnapshotID(v.source.id)
		group := crdv1.GroupName
		pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: volume.SnapshotObjectName(key)}
	case volume.SourceVolume:
		pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: volume.ObjectName(v.source.id)}
	}
}

// checkSameSource refuses a backend PVC made from another source than the request's
// (or from one when the request has none, or the other way round): AlreadyExists.
func checkSameSource(pvc *corev1.PersistentVolumeClaim, v volumeSpec) error {
	if got, want := pvc.Annotations[volume.AnnotationContentSource], v.source.String(); got != want {
		return status.Errorf(codes.AlreadyExists, "volume %q exists with content source %q, requested %q", v.name, orNone(got), orNone(want))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// contentSourceOf reports what a volume was made from, as CreateVolume must.
func contentSourceOf(pvc *corev1.PersistentVolumeClaim) *csi.VolumeContentSource {
	if pvc == nil {
		return nil
	}
	kind, id, err := volume.ParseContentSource(pvc.Annotations[volume.AnnotationContentSource])
	if err != nil {
		if a := pvc.Annotations[volume.AnnotationContentSource]; a != "" {
			klog.ErrorS(err, "Unreadable content source on a backend PVC", "pvc", pvc.Name, "value", a)
		}
		return nil
	}
	if kind == volume.SourceSnapshot {
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}
	}
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
}

// describeSource is a log and message form of a volume's source.
func describeSource(v volumeSpec) string {
	if v.source == nil {
		return "empty"
	}
	return fmt.Sprintf("%s %s", v.source.kind, v.source.id)
}
