package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/inflight"
	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Config is the controller's configuration from its flags.
type Config struct {
	// DriverName is the CSI driver name; the driver's PersistentVolumes carry it.
	DriverName string
	// Namespace holds every volume's objects.
	Namespace string
	// ServerImage runs pvnfs-server; ServerImagePullPolicy is its pull policy.
	ServerImage           string
	ServerImagePullPolicy corev1.PullPolicy
	// ServerPullSecrets name Secrets in Namespace for pulling ServerImage.
	ServerPullSecrets []string
	// NFSClients are the networks (CIDRs) every server's export admits; none admits
	// every address (serverconfig.Config.Clients).
	NFSClients []string
	// MaxWait bounds a call whose request carries no deadline.
	MaxWait time.Duration
	// Registerer receives the controller's metrics; nil leaves them unexported.
	Registerer prometheus.Registerer
	// AfterStep, when set, is called after each step of CreateVolume (Step*) with
	// the volume's ID. It is nil in production; fault tests stop the controller at
	// a named step with it, so that a crash lands where they say and not wherever a
	// timer happened to fire.
	AfterStep func(step, volumeID string)
}

// The steps of CreateVolume, in order, as AfterStep names them. Each leaves the
// volume in a state a retry completes.
const (
	StepServiceEnsured    = "service-ensured"
	StepBackendPVCEnsured = "backend-pvc-ensured"
	StepDeploymentEnsured = "deployment-ensured"
)

// Steps lists the steps of CreateVolume in order.
func Steps() []string {
	return []string{StepServiceEnsured, StepBackendPVCEnsured, StepDeploymentEnsured}
}

func (c *Config) afterStep(step, volumeID string) {
	if c.AfterStep != nil {
		c.AfterStep(step, volumeID)
	}
}

// Service is the CSI controller service.
type Service struct {
	csi.UnimplementedControllerServer
	cfg      Config
	client   kubernetes.Interface
	cache    *cache
	inflight *inflight.Guard
	metrics  *metrics
	// snaps and flusher serve snapshots and clones (EnableSnapshots); nil without.
	snaps   *snapshotCache
	flusher Flusher
}

// New returns the controller service. Call Start before serving.
func New(client kubernetes.Interface, cfg Config) *Service {
	s := &Service{cfg: cfg, client: client, cache: newCache(client, cfg.Namespace, cfg.DriverName), inflight: inflight.New()}
	s.metrics = newMetrics(cfg.Registerer, s)
	return s
}

// Start runs the informers until ctx ends and returns once their caches are filled.
func (s *Service) Start(ctx context.Context) error {
	if s.snaps != nil {
		s.snaps.setContext(ctx, s.client.CoreV1())
	}
	return s.cache.start(ctx)
}

// Ready returns nil once the caches have been filled; the identity service's
// Probe reports it. csi-provisioner waits for it before its first call, and the
// livenessprobe sidecar restarts the controller when it fails.
//
// It does not ask whether the API server answers now. During an API outage the
// caches keep what they had, calls answer Unavailable and the sidecars retry; a
// restart would only empty the caches and make the controller unable to fill
// them again until the outage ends.
func (s *Service) Ready(context.Context) error {
	if !s.cache.hasSynced() {
		return errors.New("informer caches are not filled yet")
	}
	return nil
}

var controllerCapabilities = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	csi.ControllerServiceCapability_RPC_GET_VOLUME,
	csi.ControllerServiceCapability_RPC_VOLUME_CONDITION,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
}

// ControllerGetCapabilities lists what the controller offers.
func (s *Service) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, c := range s.capabilities() {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}}})
	}
	return resp, nil
}

// CreateVolume ensures the volume's Service, backend PVC and server Deployment exist,
// then waits until the server serves. A call that runs out of time returns
// DeadlineExceeded naming what is still missing; the provisioner retries, and the
// retry picks up where this one stopped.
func (s *Service) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	v, err := validateCreate(req)
	if err != nil {
		return nil, err
	}
	ctx, done, err := s.begin(ctx, v.id)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := s.checkBackendClass(v); err != nil {
		return nil, err
	}
	if err := s.prepareContentSource(ctx, &v); err != nil {
		return nil, err
	}
	if err := s.ensureObjects(ctx, &v); err != nil {
		return nil, err
	}
	st, err := s.waitFor(ctx, v.id, "ready", volumeState.ready)
	if err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Volume ready", "volumeID", v.id, "name", v.name, "clusterIP", v.clusterIP, "pod", st.pods[0].Name, "node", st.pods[0].Spec.NodeName, "source", describeSource(v))
	return &csi.CreateVolumeResponse{Volume: s.csiVolume(v.id, st)}, nil
}

// validateCreate checks a CreateVolume request and derives the volume it asks for.
func validateCreate(req *csi.CreateVolumeRequest) (volumeSpec, error) {
	if err := requireField("name", req.GetName()); err != nil {
		return volumeSpec{}, err
	}
	id, err := volume.IDFromName(req.GetName())
	if err != nil {
		return volumeSpec{}, status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	if err := validateCapabilities(req.GetVolumeCapabilities()); err != nil {
		return volumeSpec{}, err
	}
	source, err := parseContentSource(req.GetVolumeContentSource())
	if err != nil {
		return volumeSpec{}, err
	}
	capacity, err := capacityFor(req.GetCapacityRange())
	if err != nil {
		return volumeSpec{}, err
	}
	mutable := req.GetMutableParameters()
	if err := parameters.CheckMutable(mutable); err != nil {
		return volumeSpec{}, status.Errorf(codes.InvalidArgument, "VolumeAttributesClass parameters (mutable_parameters): %v", err)
	}
	params, err := parameters.Parse(parameters.Merge(req.GetParameters(), mutable))
	if err != nil {
		return volumeSpec{}, status.Errorf(codes.InvalidArgument, "StorageClass and VolumeAttributesClass parameters: %v", err)
	}
	p := req.GetParameters()
	return volumeSpec{
		id:            id,
		name:          req.GetName(),
		params:        params,
		storedParams:  parameters.Stored(p),
		storedMutable: storedMutable(mutable),
		capacity:      capacity,
		capRange:      req.GetCapacityRange(),
		pvName:        p[parameters.PVNameKey],
		pvcName:       p[parameters.PVCNameKey],
		pvcNamespace:  p[parameters.PVCNamespaceKey],
		source:        source,
	}, nil
}

// checkBackendClass refuses a volume whose backend StorageClass does not exist
// before anything is created: otherwise the backend PVC would sit Pending forever.
//
// With no class named, the backend PVC would take the cluster's default class; a
// cluster without one would leave it Pending forever, so that is refused too.
func (s *Service) checkBackendClass(v volumeSpec) error {
	if existing, _ := s.cache.pvcs.PersistentVolumeClaims(s.cfg.Namespace).Get(volume.ObjectName(v.id)); existing != nil {
		return nil // created already; its class is the backend's business now
	}
	if v.params.BackendStorageClass == "" {
		if s.backendClass("") == nil {
			return status.Errorf(codes.InvalidArgument, "parameter %q is not set and the cluster has no default StorageClass: name a ReadWriteOnce StorageClass in %q or mark one as the default (annotation %s: \"true\")",
				parameters.BackendStorageClass, parameters.BackendStorageClass, isDefaultClass)
		}
		return nil
	}
	_, err := s.cache.storageClasses.Get(v.params.BackendStorageClass)
	if apierrors.IsNotFound(err) {
		return status.Errorf(codes.InvalidArgument, "parameter %q: StorageClass %q does not exist; create it or name an existing ReadWriteOnce StorageClass",
			parameters.BackendStorageClass, v.params.BackendStorageClass)
	}
	return err
}

// DeleteVolume deletes the volume's Deployment, Service and backend PVC and waits
// until they and the server pods are gone. An unknown or malformed ID is already
// deleted.
func (s *Service) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if err := requireField("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	id, err := volume.ParseID(req.GetVolumeId())
	if err != nil {
		klog.V(2).InfoS("DeleteVolume of an ID pvnfs never made; nothing to do", "volumeID", req.GetVolumeId())
		return &csi.DeleteVolumeResponse{}, nil
	}
	ctx, done, err := s.begin(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	if pv := s.cache.livePV(id); pv != nil {
		return nil, status.Errorf(codes.FailedPrecondition,
			"volume %s is still used by PersistentVolume %s (phase %s): a volume shared through a second PersistentVolume is deleted only after every other PersistentVolume on it is gone; delete %s first, or retain this one",
			id, pv.Name, pv.Status.Phase, pv.Name)
	}
	if err := s.deleteObjects(ctx, id); err != nil {
		return nil, err
	}
	if _, err := s.waitFor(ctx, id, "deleted", func(st volumeState) bool { return !st.exists() }); err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Volume deleted", "volumeID", id)
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerExpandVolume grows the backend PVC and answers success once the
// backend reports the new size (the claim's status.capacity), so a resize the
// backend never completes is not reported done. Until then it answers
// DeadlineExceeded (csi-resizer keeps the resize in progress and retries) with
// what it waits for and the backend claim's newest warning, which csi-resizer
// records as an event on the user's claim. The server's filesystem grows online
// when the backend's driver expands it, and NFS clients see the new size without
// any node step.
func (s *Service) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if err := requireField("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity_range is required")
	}
	if req.GetVolumeCapability() != nil {
		if err := validateCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
			return nil, err
		}
	}
	id, err := volume.ParseID(req.GetVolumeId())
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist: %v", req.GetVolumeId(), err)
	}
	size, err := capacityFor(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	ctx, done, err := s.begin(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	if _, err := s.expandBackend(ctx, id, size); err != nil {
		return nil, err
	}
	got, err := s.waitExpanded(ctx, id, size)
	if err != nil {
		return nil, err
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: got, NodeExpansionRequired: false}, nil
}

// ControllerGetVolume reports a volume's capacity and whether it can serve.
func (s *Service) ControllerGetVolume(_ context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if err := requireField("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	st, id, err := s.existing(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: s.csiVolume(id, st),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{VolumeCondition: condition(st)},
	}, nil
}

// ValidateVolumeCapabilities confirms the capabilities a volume supports.
func (s *Service) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if err := requireField("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_capabilities: at least one capability is required")
	}
	if _, _, err := s.existing(req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := validateCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// ListVolumes lists volumes in ID order. The token is the last ID of the previous
// page, so deleting or adding volumes between pages neither repeats nor skips one.
func (s *Service) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "max_entries %d must not be negative", req.GetMaxEntries())
	}
	after, err := parseListToken(req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	ids := s.volumeIDs()
	start := sort.SearchStrings(ids, after)
	if start < len(ids) && ids[start] == after {
		start++
	}
	ids = ids[start:]
	resp := &csi.ListVolumesResponse{}
	if max := int(req.GetMaxEntries()); max > 0 && len(ids) > max {
		ids = ids[:max]
		resp.NextToken = listToken(ids[max-1])
	}
	for _, id := range ids {
		st := s.cache.lookup(s.cfg.Namespace, id)
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{
			Volume: s.csiVolume(id, st),
			Status: &csi.ListVolumesResponse_VolumeStatus{VolumeCondition: condition(st)},
		})
	}
	return resp, nil
}

// listTokenPrefix marks ListVolumes tokens, so a token ListVolumes never returned is
// told apart from a volume ID and refused, as CSI asks.
const listTokenPrefix = "after:"

func listToken(lastID string) string { return listTokenPrefix + lastID }

func parseListToken(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	id, ok := strings.CutPrefix(token, listTokenPrefix)
	if _, err := volume.ParseID(id); !ok || err != nil {
		return "", status.Errorf(codes.Aborted, "starting_token %q is not a token ListVolumes returned", token)
	}
	return id, nil
}

// volumeIDs returns the sorted IDs of every volume with an object left.
func (s *Service) volumeIDs() []string {
	set := map[string]bool{}
	pvcs, _ := s.cache.pvcs.PersistentVolumeClaims(s.cfg.Namespace).List(labels.Everything())
	for _, o := range pvcs {
		set[o.Labels[volume.LabelVolumeID]] = true
	}
	deps, _ := s.cache.deployments.Deployments(s.cfg.Namespace).List(labels.Everything())
	for _, o := range deps {
		set[o.Labels[volume.LabelVolumeID]] = true
	}
	svcs, _ := s.cache.services.Services(s.cfg.Namespace).List(labels.Everything())
	for _, o := range svcs {
		set[o.Labels[volume.LabelVolumeID]] = true
	}
	ids := make([]string, 0, len(set))
	for id := range set {
		if _, err := volume.ParseID(id); err == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// existing returns the state of a volume that exists, or NotFound.
func (s *Service) existing(rawID string) (volumeState, string, error) {
	id, err := volume.ParseID(rawID)
	if err != nil {
		return volumeState{}, "", status.Errorf(codes.NotFound, "volume %q does not exist: %v", rawID, err)
	}
	st := s.cache.lookup(s.cfg.Namespace, id)
	if !st.exists() {
		return volumeState{}, "", status.Errorf(codes.NotFound, "volume %s does not exist", id)
	}
	return st, id, nil
}

// csiVolume describes a volume to the CO: its size and how nodes reach it.
func (s *Service) csiVolume(id string, st volumeState) *csi.Volume {
	v := &csi.Volume{VolumeId: id}
	if st.pvc != nil {
		q := st.pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		v.CapacityBytes = q.Value()
		v.ContentSource = contentSourceOf(st.pvc)
	}
	if st.svc != nil && st.svc.Spec.ClusterIP != "" {
		ctx := volume.Context{Server: st.svc.Spec.ClusterIP, Share: volume.ExportPath}
		if st.dep != nil {
			if _, p, err := parameters.Load(st.dep.Annotations[volume.AnnotationParameters]); err == nil {
				ctx.NFSVersion = p.NFSVersion
			}
		}
		v.VolumeContext = ctx.Map()
	}
	return v
}

// condition turns a volume's state into the CSI VolumeCondition.
func condition(st volumeState) *csi.VolumeCondition {
	if st.ready() {
		return &csi.VolumeCondition{Abnormal: false, Message: "NFS server is serving"}
	}
	return &csi.VolumeCondition{Abnormal: true, Message: st.message()}
}

// begin starts an operation on a volume: one at a time per volume in this process
// (a concurrent retry gets Aborted), within the call's deadline. done ends it.
func (s *Service) begin(ctx context.Context, id string) (context.Context, func(), error) {
	release, ok := s.inflight.TryAcquire(id)
	if !ok {
		return nil, nil, status.Errorf(codes.Aborted, "an operation on volume %s is already in progress", id)
	}
	ctx, cancel := s.deadline(ctx)
	return ctx, func() { cancel(); release() }, nil
}

// deadline bounds a call: it ends a little before the CO's own deadline, so the
// retryable answer explaining what is missing reaches the CO before it gives up, and
// at MaxWait when the request has no deadline.
func (s *Service) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	end := time.Now().Add(s.cfg.MaxWait)
	if d, ok := ctx.Deadline(); ok {
		margin := time.Until(d) / 10
		if margin > 2*time.Second {
			margin = 2 * time.Second
		}
		if d.Add(-margin).Before(end) {
			end = d.Add(-margin)
		}
	}
	return context.WithDeadline(ctx, end)
}

// waitFor waits, woken by watch events, until the volume's state satisfies done.
func (s *Service) waitFor(ctx context.Context, id, what string, done func(volumeState) bool) (volumeState, error) {
	return s.waitUntil(ctx, id, what, done, func(st volumeState) string { return notDoneReason(st, what) })
}

// waitUntil is waitFor with its own explanation of what is still missing.
func (s *Service) waitUntil(ctx context.Context, id, what string, done func(volumeState) bool, reason func(volumeState) string) (volumeState, error) {
	for {
		changed := s.cache.notifier.wait(id)
		st := s.cache.lookup(s.cfg.Namespace, id)
		if done(st) {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st, status.Errorf(codes.DeadlineExceeded, "volume %s is not %s yet, the call will be retried: %s", id, what, reason(st))
		}
	}
}

func notDoneReason(st volumeState, what string) string {
	if what != "deleted" {
		return st.message()
	}
	var left []string
	if st.dep != nil {
		left = append(left, "Deployment")
	}
	if st.svc != nil {
		left = append(left, "Service")
	}
	if st.pvc != nil {
		left = append(left, "backend PVC (deleted once no pod uses it)")
	}
	if len(st.pods) > 0 {
		left = append(left, fmt.Sprintf("%d server pod(s) terminating", len(st.pods)))
	}
	return fmt.Sprintf("still present: %v", left)
}
