package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// ControllerModifyVolume applies a VolumeAttributesClass's parameters to a live
// volume: the mutable server settings (parameters.MutableKeys). Keys the class does
// not name keep their value. The new settings are recorded on the backend PVC
// first (the reconciler rebuilds the server from there), then the server
// Deployment is rolled once, and the call answers once the new server is Ready.
// An earlier roll of the same server (a change or an upgrade) completes first.
// When the deadline comes before all that, it answers DeadlineExceeded saying what
// it waits for; csi-resizer retries, and the retry picks up where this call stopped.
func (s *Service) ControllerModifyVolume(ctx context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	if err := requireField("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := parameters.CheckMutable(req.GetMutableParameters()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "mutable_parameters (the VolumeAttributesClass's parameters): %v", err)
	}
	id, err := volume.ParseID(req.GetVolumeId())
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %q does not exist: %v", req.GetVolumeId(), err)
	}
	ctx, done, err := s.begin(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()

	st := s.cache.lookup(s.cfg.Namespace, id)
	if st.pvc == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", id)
	}
	if st.pvc.DeletionTimestamp != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is being deleted", id)
	}
	current, err := loadMutable(st.pvc.Annotations[volume.AnnotationMutableParameters])
	if err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
	}
	next := parameters.Merge(current, req.GetMutableParameters())
	spec, err := specFromBackend(id, st.pvc)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
	}
	if spec.params, err = loadParameters(spec.storedParams, storedMutable(next)); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the volume's parameters with the VolumeAttributesClass's: %v", err)
	}
	spec.storedMutable = storedMutable(next)
	desired := s.cfg.buildDeployment(spec)

	if !maps.Equal(current, next) {
		// Never two rolls of one server at once: an earlier change or an upgrade
		// finishes (its new server Ready) before this one starts.
		if _, err := s.waitFor(ctx, id, "done with an earlier roll of its server (a change or an upgrade) before this change", func(st volumeState) bool {
			return st.dep == nil || rollComplete(st.dep)
		}); err != nil {
			return nil, err
		}
		if err := s.recordMutable(ctx, st.pvc, spec.storedMutable); err != nil {
			return nil, err
		}
		klog.InfoS("Volume settings changed; rolling its server", "volumeID", id, "mutableParameters", spec.storedMutable)
	}
	if err := s.rollTo(ctx, id, desired); err != nil {
		return nil, err
	}
	hash := desired.Annotations[AnnotationTemplateHash]
	if _, err := s.waitFor(ctx, id, "running with its new settings", func(st volumeState) bool {
		return st.dep != nil && st.dep.Annotations[AnnotationTemplateHash] == hash && rollComplete(st.dep) && st.ready()
	}); err != nil {
		return nil, err
	}
	return &csi.ControllerModifyVolumeResponse{}, nil
}

// recordMutable writes the volume's new mutable parameters on its backend PVC, the
// record the reconciler and later calls rebuild the server from.
func (s *Service) recordMutable(ctx context.Context, pvc *corev1.PersistentVolumeClaim, stored string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations":     map[string]string{volume.AnnotationMutableParameters: stored},
		"resourceVersion": pvc.ResourceVersion, // refuse to overwrite a change made meanwhile
	}})
	_, err := s.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Patch(ctx, pvc.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsConflict(err) {
		return status.Errorf(codes.Aborted, "backend PVC %s/%s changed meanwhile; the call will be retried", pvc.Namespace, pvc.Name)
	}
	if err != nil {
		return fmt.Errorf("recording the new settings on backend PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return nil
}

// rollTo gives the server Deployment the desired template, unless it has it
// already (a retry, or the reconciler was first).
func (s *Service) rollTo(ctx context.Context, id string, desired *appsv1.Deployment) error {
	deps := s.client.AppsV1().Deployments(s.cfg.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := deps.Get(ctx, desired.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil // the reconciler recreates it from the backend PVC's record
		}
		if err != nil {
			return err
		}
		if live.Annotations[AnnotationTemplateHash] == desired.Annotations[AnnotationTemplateHash] {
			return nil
		}
		_, err = deps.Update(ctx, withTemplate(live, desired), metav1.UpdateOptions{})
		if err == nil {
			klog.V(2).InfoS("Server Deployment rolled to new settings", "volumeID", id)
		}
		return err
	})
}

// withTemplate returns a copy of the live server Deployment with the spec and the
// annotations pvnfs builds (template hash, recorded parameters) of desired; the
// annotations others set (a pin, kubectl's) stay.
func withTemplate(live, desired *appsv1.Deployment) *appsv1.Deployment {
	dep := live.DeepCopy()
	dep.Spec = desired.Spec
	if dep.Annotations == nil {
		dep.Annotations = map[string]string{}
	}
	maps.Copy(dep.Annotations, desired.Annotations)
	if desired.Annotations[volume.AnnotationMutableParameters] == "" {
		delete(dep.Annotations, volume.AnnotationMutableParameters)
	}
	return dep
}

// loadParameters parses a volume's recorded StorageClass parameters with its
// VolumeAttributesClass's on top.
func loadParameters(stored, mutable string) (parameters.Parameters, error) {
	in, _, err := parameters.Load(stored)
	if err != nil {
		return parameters.Parameters{}, err
	}
	m, err := loadMutable(mutable)
	if err != nil {
		return parameters.Parameters{}, err
	}
	return parameters.Parse(parameters.Merge(in, m))
}

func loadMutable(stored string) (map[string]string, error) {
	m := map[string]string{}
	if stored == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		return nil, fmt.Errorf("annotation %s is not a JSON object: %v", volume.AnnotationMutableParameters, err)
	}
	return m, nil
}

// storedMutable is the recorded form of a VolumeAttributesClass's parameters, ""
// for none (so a volume no class touched carries no annotation).
func storedMutable(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	return parameters.Stored(m)
}
