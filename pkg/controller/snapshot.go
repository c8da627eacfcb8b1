package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// A snapshot of a pvnfs volume is the backend driver's own snapshot of the volume's
// backend PVC: a VolumeSnapshot "pvnfs-<key>" in the controller's namespace, taken
// with the backend's VolumeSnapshotClass after the volume's server has flushed. The
// snapshot-controller and the backend's csi-snapshotter do the rest; pvnfs only asks
// and waits, so a snapshot is as fast and as consistent as the backend's.

// isDefaultSnapshotClass marks a backend driver's default VolumeSnapshotClass.
const isDefaultSnapshotClass = "snapshot.storage.kubernetes.io/is-default-class"

// Reasons of the events pvnfs records on a user's VolumeSnapshot when its snapshot
// cannot be taken.
const (
	EventBackendCannotSnapshot = "BackendCannotSnapshot"
	EventSnapshotRefused       = "SnapshotRefused"
	EventBackendSnapshotFailed = "BackendSnapshotFailed"
	EventFlushFailed           = "FlushFailed"
)

// EnableSnapshots turns on CreateSnapshot, DeleteSnapshot, ListSnapshots and volumes
// created from a snapshot or a volume: snapshots are VolumeSnapshots made with client,
// and flusher asks a volume's server to flush before its backend is snapshotted or
// cloned. Call it before Start.
func (s *Service) EnableSnapshots(client snapclient.Interface, flusher Flusher) {
	s.snaps = newSnapshotCache(client, s.cfg.Namespace)
	s.flusher = flusher
}

// snapshotCapabilities are offered with EnableSnapshots.
var snapshotCapabilities = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
}

// capabilities are the controller's capabilities as configured.
func (s *Service) capabilities() []csi.ControllerServiceCapability_RPC_Type {
	if s.snaps == nil {
		return controllerCapabilities
	}
	return append(append([]csi.ControllerServiceCapability_RPC_Type(nil), controllerCapabilities...), snapshotCapabilities...)
}

// snapshotSpec is what a CreateSnapshot request asks for.
type snapshotSpec struct {
	key, id      string
	name         string // the CSI snapshot name
	source       string // the source volume ID
	params       parameters.SnapshotParameters
	storedParams string
	// userNamespace, userName and contentName name the user's VolumeSnapshot and
	// VolumeSnapshotContent, when the csi-snapshotter passes them.
	userNamespace, userName, contentName string
}

func validateCreateSnapshot(req *csi.CreateSnapshotRequest, namespace string) (snapshotSpec, error) {
	if err := requireField("name", req.GetName()); err != nil {
		return snapshotSpec{}, err
	}
	if err := requireField("source_volume_id", req.GetSourceVolumeId()); err != nil {
		return snapshotSpec{}, err
	}
	key, err := volume.SnapshotKeyFromName(req.GetName())
	if err != nil {
		return snapshotSpec{}, status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	p := req.GetParameters()
	params, err := parameters.ParseSnapshot(p)
	if err != nil {
		return snapshotSpec{}, status.Errorf(codes.InvalidArgument, "VolumeSnapshotClass parameters: %v", err)
	}
	return snapshotSpec{
		key: key, id: volume.FormatSnapshotID(namespace, key), name: req.GetName(), source: req.GetSourceVolumeId(),
		params: params, storedParams: parameters.Stored(p),
		userNamespace: p[parameters.VolumeSnapshotNamespaceKey], userName: p[parameters.VolumeSnapshotNameKey],
		contentName: p[parameters.VolumeSnapshotContentNameKey],
	}, nil
}

// CreateSnapshot ensures the backend VolumeSnapshot of the source volume's backend
// PVC exists, asking the volume's server to flush before it is first created, and
// waits until the backend says it is ready to use. A call that runs out of time
// returns DeadlineExceeded naming what the backend is doing, or, once the backend
// snapshot is cut, ready_to_use false; the csi-snapshotter calls again.
func (s *Service) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if err := s.snapshotsEnabled(); err != nil {
		return nil, err
	}
	sp, err := validateCreateSnapshot(req, s.cfg.Namespace)
	if err != nil {
		return nil, err
	}
	ctx, done, err := s.beginSnapshot(ctx, sp.key, sp.id)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.snaps.ready(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureSnapshot(ctx, sp); err != nil {
		s.reportSnapshotError(ctx, sp, err)
		return nil, err
	}
	vs, err := s.waitSnapshot(ctx, sp.key, "ready to use", snapshotSettled)
	if err != nil {
		if vs != nil && vs.Status != nil && vs.Status.CreationTime != nil && status.Code(err) == codes.DeadlineExceeded {
			// Cut but not yet usable (the backend still uploads it): the
			// snapshotter asks again, and the application need not wait.
			return &csi.CreateSnapshotResponse{Snapshot: s.csiSnapshot(vs)}, nil
		}
		return nil, err
	}
	if err := backendSnapshotError(vs); err != nil {
		s.reportSnapshotError(ctx, sp, err)
		return nil, err
	}
	klog.V(2).InfoS("Snapshot ready", "snapshotID", sp.id, "name", sp.name, "sourceVolumeID", sp.source,
		"restoreSize", vs.Status.RestoreSize, "creationTime", vs.Status.CreationTime)
	return &csi.CreateSnapshotResponse{Snapshot: s.csiSnapshot(vs)}, nil
}

// ensureSnapshot gets or creates the backend VolumeSnapshot. Only a create flushes
// the server: a retry finds the VolumeSnapshot and waits for it.
func (s *Service) ensureSnapshot(ctx context.Context, sp snapshotSpec) error {
	if vs := s.snaps.get(sp.key); vs != nil {
		return checkSameSnapshot(vs, sp)
	}
	pvc, err := s.snapshotSource(sp.source)
	if err != nil {
		return err
	}
	class, driver, err := s.backendSnapshotClass(sp, pvc)
	if err != nil {
		return err
	}
	if err := s.flushServers(ctx, sp.source); err != nil {
		return err
	}
	vs := &crdv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name: volume.SnapshotObjectName(sp.key), Namespace: s.cfg.Namespace,
			Labels:      volume.SnapshotLabels(sp.key, sp.source),
			Annotations: sp.annotations(driver),
		},
		Spec: crdv1.VolumeSnapshotSpec{
			Source:                  crdv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc.Name},
			VolumeSnapshotClassName: &class.Name,
		},
	}
	created, err := s.snaps.client.SnapshotV1().VolumeSnapshots(s.cfg.Namespace).Create(ctx, vs, metav1.CreateOptions{})
	if err != nil {
		// A racing retry or controller replica may have made it.
		existing, getErr := s.snaps.client.SnapshotV1().VolumeSnapshots(s.cfg.Namespace).Get(ctx, vs.Name, metav1.GetOptions{})
		if getErr != nil {
			return fmt.Errorf("creating backend VolumeSnapshot %s/%s: %w", s.cfg.Namespace, vs.Name, err)
		}
		return checkSameSnapshot(existing, sp)
	}
	if class.DeletionPolicy == crdv1.VolumeSnapshotContentRetain {
		klog.InfoS("The backend VolumeSnapshotClass retains its snapshots: deleting the pvnfs snapshot will leave the backend's behind",
			"snapshotID", sp.id, "volumeSnapshotClass", class.Name)
	}
	klog.V(2).InfoS("Created backend VolumeSnapshot", "snapshotID", sp.id, "name", sp.name, "sourceVolumeID", sp.source,
		"backendPVC", pvc.Name, "volumeSnapshotClass", class.Name, "driver", driver, "uid", created.UID)
	return nil
}

func (sp snapshotSpec) annotations(driver string) map[string]string {
	a := map[string]string{
		volume.AnnotationSnapshotName:       sp.name,
		volume.AnnotationSnapshotParameters: sp.storedParams,
		volume.AnnotationBackendDriver:      driver,
	}
	for k, v := range map[string]string{
		volume.AnnotationVolumeSnapshotNamespace:   sp.userNamespace,
		volume.AnnotationVolumeSnapshotName:        sp.userName,
		volume.AnnotationVolumeSnapshotContentName: sp.contentName,
	} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}

// checkSameSnapshot refuses a VolumeSnapshot made for another snapshot name (a key
// collision), another source volume or other parameters: CSI asks for AlreadyExists.
func checkSameSnapshot(vs *crdv1.VolumeSnapshot, sp snapshotSpec) error {
	if got := vs.Annotations[volume.AnnotationSnapshotName]; got != sp.name {
		return status.Errorf(codes.AlreadyExists, "VolumeSnapshot %s/%s belongs to snapshot %q, not %q", vs.Namespace, vs.Name, got, sp.name)
	}
	if got := vs.Labels[volume.LabelSourceVolumeID]; got != sp.source {
		return status.Errorf(codes.AlreadyExists, "snapshot %q exists of volume %s, not of volume %s", sp.name, got, sp.source)
	}
	if got := vs.Annotations[volume.AnnotationSnapshotParameters]; got != sp.storedParams {
		return status.Errorf(codes.AlreadyExists, "snapshot %q exists with other parameters: %s, requested %s", sp.name, got, sp.storedParams)
	}
	return nil
}

// snapshotSource returns the backend PVC of the volume to snapshot, bound.
func (s *Service) snapshotSource(id string) (*corev1.PersistentVolumeClaim, error) {
	if _, err := volume.ParseID(id); err != nil {
		return nil, status.Errorf(codes.NotFound, "source volume %q does not exist: %v", id, err)
	}
	pvc, _ := s.cache.pvcs.PersistentVolumeClaims(s.cfg.Namespace).Get(volume.ObjectName(id))
	switch {
	case pvc == nil || pvc.Labels[volume.LabelVolumeID] != id:
		return nil, status.Errorf(codes.NotFound, "source volume %s does not exist (no backend PVC %s/%s)", id, s.cfg.Namespace, volume.ObjectName(id))
	case pvc.DeletionTimestamp != nil:
		return nil, status.Errorf(codes.NotFound, "source volume %s is being deleted", id)
	case pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "":
		return nil, status.Errorf(codes.Unavailable, "the backend PVC %s/%s of volume %s is %s, not Bound yet; the call will be retried",
			pvc.Namespace, pvc.Name, id, phaseOr(string(pvc.Status.Phase), "Pending"))
	}
	return pvc, nil
}

// backendSnapshotClass chooses the VolumeSnapshotClass of the backend snapshot: the
// one the pvnfs class names, else the default class of the backend volume's CSI
// driver. It returns the class and the driver, or why the backend cannot snapshot.
func (s *Service) backendSnapshotClass(sp snapshotSpec, pvc *corev1.PersistentVolumeClaim) (*crdv1.VolumeSnapshotClass, string, error) {
	obj, exists, _ := s.cache.pvs.GetByKey(pvc.Spec.VolumeName)
	pv, _ := obj.(*corev1.PersistentVolume)
	if !exists || pv == nil {
		return nil, "", status.Errorf(codes.Unavailable, "the PersistentVolume %s of backend PVC %s/%s is not known yet; the call will be retried",
			pvc.Spec.VolumeName, pvc.Namespace, pvc.Name)
	}
	if pv.Spec.CSI == nil {
		return nil, "", status.Errorf(codes.FailedPrecondition,
			"the backend of volume %s cannot take snapshots: its backend volume %s (StorageClass %q, provisioner %s) is not a CSI volume, and only CSI drivers take VolumeSnapshots; use a backendStorageClass of a CSI driver that supports snapshots",
			sp.source, pv.Name, pv.Spec.StorageClassName, pv.Annotations[annProvisionedBy])
	}
	driver := pv.Spec.CSI.Driver
	if name := sp.params.BackendSnapshotClass; name != "" {
		class, err := s.snaps.classes.Get(name)
		if err != nil {
			return nil, "", status.Errorf(codes.InvalidArgument, "parameter %q: VolumeSnapshotClass %q does not exist; name a VolumeSnapshotClass of the backend's CSI driver %s",
				parameters.BackendSnapshotClass, name, driver)
		}
		if class.Driver != driver {
			return nil, "", status.Errorf(codes.InvalidArgument, "parameter %q: VolumeSnapshotClass %q is for the CSI driver %s, but the backend volume of %s is provisioned by %s",
				parameters.BackendSnapshotClass, name, class.Driver, sp.source, driver)
		}
		return class, driver, nil
	}
	all, _ := s.snaps.classes.List(labels.Everything())
	var ofDriver, defaults []string
	var chosen *crdv1.VolumeSnapshotClass
	for _, c := range all {
		if c.Driver != driver {
			continue
		}
		ofDriver = append(ofDriver, c.Name)
		if c.Annotations[isDefaultSnapshotClass] == "true" {
			defaults = append(defaults, c.Name)
			chosen = c
		}
	}
	sort.Strings(ofDriver)
	sort.Strings(defaults)
	switch {
	case len(ofDriver) == 0:
		return nil, "", status.Errorf(codes.FailedPrecondition,
			"the backend of volume %s cannot take snapshots: no VolumeSnapshotClass exists for its CSI driver %s (backend StorageClass %q); install the driver's snapshot support and a VolumeSnapshotClass for it, or use a backendStorageClass whose driver takes snapshots",
			sp.source, driver, pv.Spec.StorageClassName)
	case len(defaults) == 0:
		return nil, "", status.Errorf(codes.FailedPrecondition,
			"no default VolumeSnapshotClass for the backend's CSI driver %s (classes: %s): set parameter %q on the pvnfs VolumeSnapshotClass to one of them, or annotate one with %s: \"true\"",
			driver, strings.Join(ofDriver, ", "), parameters.BackendSnapshotClass, isDefaultSnapshotClass)
	case len(defaults) > 1:
		return nil, "", status.Errorf(codes.FailedPrecondition,
			"several default VolumeSnapshotClasses for the backend's CSI driver %s (%s): set parameter %q on the pvnfs VolumeSnapshotClass to one of them",
			driver, strings.Join(defaults, ", "), parameters.BackendSnapshotClass)
	}
	return chosen, driver, nil
}

// annProvisionedBy names the provisioner of a PersistentVolume.
const annProvisionedBy = "pv.kubernetes.io/provisioned-by"

// snapshotSettled: the backend snapshot is ready to use, or failed.
func snapshotSettled(vs *crdv1.VolumeSnapshot) bool {
	return vs != nil && (snapshotReady(vs) || backendSnapshotError(vs) != nil)
}

func snapshotReady(vs *crdv1.VolumeSnapshot) bool {
	return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse
}

// backendSnapshotError returns the backend's error of a snapshot that is not ready.
// The code is final (Internal): the csi-snapshotter records it on the user's
// snapshot and tries again later, and the user can delete the snapshot meanwhile.
func backendSnapshotError(vs *crdv1.VolumeSnapshot) error {
	if snapshotReady(vs) || vs.Status == nil || vs.Status.Error == nil || vs.Status.Error.Message == nil {
		return nil
	}
	return status.Errorf(codes.Internal, "the backend snapshot %s/%s failed: %s", vs.Namespace, vs.Name, *vs.Status.Error.Message)
}

// waitSnapshot waits, woken by watch events, until done holds for the snapshot's
// VolumeSnapshot (nil while it is not in the cache: just created, or gone), and
// returns it.
func (s *Service) waitSnapshot(ctx context.Context, key, what string, done func(*crdv1.VolumeSnapshot) bool) (*crdv1.VolumeSnapshot, error) {
	for {
		changed := s.snaps.notifier.wait(key)
		vs := s.snaps.get(key)
		if done(vs) {
			return vs, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			why := fmt.Sprintf("backend VolumeSnapshot %s/%s does not exist", s.cfg.Namespace, volume.SnapshotObjectName(key))
			if vs != nil {
				why = s.snapshotProgress(vs)
			}
			return vs, status.Errorf(codes.DeadlineExceeded, "snapshot %s is not %s yet, the call will be retried: %s",
				volume.FormatSnapshotID(s.cfg.Namespace, key), what, why)
		}
	}
}

// snapshotProgress explains what a backend snapshot waits for.
func (s *Service) snapshotProgress(vs *crdv1.VolumeSnapshot) string {
	msg := fmt.Sprintf("backend VolumeSnapshot %s/%s", vs.Namespace, vs.Name)
	switch {
	case vs.DeletionTimestamp != nil:
		msg += fmt.Sprintf(" is being deleted (finalizers %v)", vs.Finalizers)
	case vs.Status == nil || vs.Status.BoundVolumeSnapshotContentName == nil:
		msg += " has no VolumeSnapshotContent yet: is the snapshot-controller running?"
	case vs.Status.CreationTime == nil:
		msg += fmt.Sprintf(" is bound to %s, not taken yet: is the backend's csi-snapshotter running?", *vs.Status.BoundVolumeSnapshotContentName)
	default:
		msg += " is taken, not yet ready to use"
	}
	if ev := s.cache.latestEvent(vs); ev != nil {
		msg += fmt.Sprintf("; %s: %s", ev.Reason, ev.Message)
	}
	return msg
}

// reportSnapshotError records a failure the user has to act on as an event on the
// user's VolumeSnapshot. Waiting and retries that resolve themselves are not events.
func (s *Service) reportSnapshotError(ctx context.Context, sp snapshotSpec, err error) {
	var reason string
	switch st := status.Convert(err); {
	case st.Code() == codes.FailedPrecondition:
		reason = EventBackendCannotSnapshot
	case st.Code() == codes.InvalidArgument || st.Code() == codes.AlreadyExists || st.Code() == codes.NotFound:
		reason = EventSnapshotRefused
	case st.Code() == codes.Internal:
		reason = EventBackendSnapshotFailed
	case st.Code() == codes.Unavailable && strings.Contains(st.Message(), "flush"):
		reason = EventFlushFailed
	default:
		return
	}
	klog.InfoS("Snapshot not taken", "snapshotID", sp.id, "sourceVolumeID", sp.source, "reason", reason, "err", err)
	s.snaps.event(ctx, sp.userNamespace, sp.userName, corev1.EventTypeWarning, reason, status.Convert(err).Message())
}

// csiSnapshot describes a snapshot to the CO.
func (s *Service) csiSnapshot(vs *crdv1.VolumeSnapshot) *csi.Snapshot {
	key, _ := volume.SnapshotKeyFromObjectName(vs.Name)
	snap := &csi.Snapshot{
		SnapshotId:     volume.FormatSnapshotID(s.cfg.Namespace, key),
		SourceVolumeId: vs.Labels[volume.LabelSourceVolumeID],
		ReadyToUse:     snapshotReady(vs),
	}
	if vs.Status != nil {
		if vs.Status.CreationTime != nil {
			snap.CreationTime = timestamppb.New(vs.Status.CreationTime.Time)
		}
		if vs.Status.RestoreSize != nil {
			snap.SizeBytes = vs.Status.RestoreSize.Value()
		}
	}
	return snap
}

// DeleteSnapshot deletes the backend VolumeSnapshot and waits until it is gone, which,
// with the backend class's deletionPolicy Delete, is once the backend snapshot is
// deleted. An ID pvnfs never made is already deleted.
func (s *Service) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if err := s.snapshotsEnabled(); err != nil {
		return nil, err
	}
	if err := requireField("snapshot_id", req.GetSnapshotId()); err != nil {
		return nil, err
	}
	ns, key, err := volume.ParseSnapshotID(req.GetSnapshotId())
	if err != nil {
		klog.V(2).InfoS("DeleteSnapshot of an ID pvnfs never made; nothing to do", "snapshotID", req.GetSnapshotId())
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if ns != s.cfg.Namespace {
		return nil, status.Errorf(codes.FailedPrecondition,
			"snapshot %s belongs to the pvnfs installation in namespace %q; this controller serves namespace %q and cannot delete it",
			req.GetSnapshotId(), ns, s.cfg.Namespace)
	}
	ctx, done, err := s.beginSnapshot(ctx, key, req.GetSnapshotId())
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.snaps.ready(ctx); err != nil {
		return nil, err
	}
	if err := s.deleteSnapshotObject(ctx, key); err != nil {
		return nil, err
	}
	if _, err := s.waitSnapshot(ctx, key, "deleted", func(vs *crdv1.VolumeSnapshot) bool { return vs == nil }); err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Snapshot deleted", "snapshotID", req.GetSnapshotId())
	return &csi.DeleteSnapshotResponse{}, nil
}

// deleteSnapshotObject deletes pvnfs's VolumeSnapshot of the key, by UID when it is
// in the cache, and only when pvnfs made it.
func (s *Service) deleteSnapshotObject(ctx context.Context, key string) error {
	name := volume.SnapshotObjectName(key)
	opts := metav1.DeleteOptions{}
	if vs := s.snaps.get(key); vs != nil {
		if vs.DeletionTimestamp != nil {
			return nil
		}
		uid := types.UID(vs.UID)
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	} else {
		// Not in the cache: too new to be there, or not pvnfs's (the informer sees
		// only pvnfs's labels). Read it to tell.
		vs, err := s.snaps.client.SnapshotV1().VolumeSnapshots(s.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading VolumeSnapshot %s/%s: %w", s.cfg.Namespace, name, err)
		}
		if vs.Labels[volume.LabelComponent] != volume.ComponentSnapshot || vs.Labels[volume.LabelManagedBy] != volume.ManagedBy {
			klog.InfoS("Not deleting a VolumeSnapshot pvnfs did not create", "namespace", s.cfg.Namespace, "name", name)
			return nil
		}
		uid := vs.UID
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	err := s.snaps.client.SnapshotV1().VolumeSnapshots(s.cfg.Namespace).Delete(ctx, name, opts)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting VolumeSnapshot %s/%s: %w", s.cfg.Namespace, name, err)
	}
	return nil
}

// ListSnapshots lists the snapshots that are taken and not being deleted, in key
// order, optionally only one (snapshot_id) or those of one volume
// (source_volume_id). The token is the last key of the previous page.
func (s *Service) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if err := s.snapshotsEnabled(); err != nil {
		return nil, err
	}
	if req.GetMaxEntries() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "max_entries %d must not be negative", req.GetMaxEntries())
	}
	after, err := parseSnapshotListToken(req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if err := s.snaps.ready(ctx); err != nil {
		return nil, err
	}
	var candidates []*crdv1.VolumeSnapshot
	switch {
	case req.GetSnapshotId() != "":
		ns, key, err := volume.ParseSnapshotID(req.GetSnapshotId())
		if err != nil || ns != s.cfg.Namespace {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if vs := s.snaps.get(key); vs != nil {
			candidates = append(candidates, vs)
		}
	case req.GetSourceVolumeId() != "":
		candidates = indexed[*crdv1.VolumeSnapshot](s.snaps.bySource, snapshotsBySource, req.GetSourceVolumeId())
	default:
		candidates, _ = s.snaps.snapshots.VolumeSnapshots(s.cfg.Namespace).List(labels.Everything())
	}
	byKey := map[string]*crdv1.VolumeSnapshot{}
	var keys []string
	for _, vs := range candidates {
		key, err := volume.SnapshotKeyFromObjectName(vs.Name)
		if err != nil || vs.DeletionTimestamp != nil || vs.Status == nil || vs.Status.CreationTime == nil {
			continue
		}
		if id := req.GetSourceVolumeId(); id != "" && vs.Labels[volume.LabelSourceVolumeID] != id {
			continue
		}
		byKey[key] = vs
		keys = append(keys, key)
	}
	sort.Strings(keys)
	start := sort.SearchStrings(keys, after)
	if start < len(keys) && keys[start] == after {
		start++
	}
	keys = keys[start:]
	resp := &csi.ListSnapshotsResponse{}
	if max := int(req.GetMaxEntries()); max > 0 && len(keys) > max {
		keys = keys[:max]
		resp.NextToken = listToken(keys[max-1])
	}
	for _, k := range keys {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: s.csiSnapshot(byKey[k])})
	}
	return resp, nil
}

// parseSnapshotListToken reads a token ListSnapshots returned ("after:<key>").
func parseSnapshotListToken(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	key, ok := strings.CutPrefix(token, listTokenPrefix)
	if _, err := volume.SnapshotKeyFromObjectName(volume.SnapshotObjectName(key)); !ok || err != nil {
		return "", status.Errorf(codes.Aborted, "starting_token %q is not a token ListSnapshots returned", token)
	}
	return key, nil
}

// errSnapshotNotReady is wrapped when a volume is to be restored from a snapshot that
// is not ready to use yet.
var errSnapshotNotReady = errors.New("snapshot is not ready to use yet")
