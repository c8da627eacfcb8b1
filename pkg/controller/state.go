package controller

import (
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/pvnfs/pvnfs/pkg/podutil"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// volumeState is what the cache knows of one volume's objects.
type volumeState struct {
	pvc    *corev1.PersistentVolumeClaim
	dep    *appsv1.Deployment
	svc    *corev1.Service
	pods   []*corev1.Pod
	slices []*discoveryv1.EndpointSlice
	// problems say, in order of the serving chain, why the volume is not ready to
	// serve. Empty means ready.
	problems []string
}

func (s volumeState) ready() bool { return len(s.problems) == 0 }

// exists reports whether any object of the volume is left.
func (s volumeState) exists() bool {
	return s.pvc != nil || s.dep != nil || s.svc != nil || len(s.pods) > 0
}

func (s volumeState) message() string { return strings.Join(s.problems, "; ") }

// lookup reads a volume's objects from the cache and explains what keeps it from
// serving.
func (c *cache) lookup(namespace, id string) volumeState {
	name := volume.ObjectName(id)
	var s volumeState
	s.pvc, _ = c.pvcs.PersistentVolumeClaims(namespace).Get(name)
	s.dep, _ = c.deployments.Deployments(namespace).Get(name)
	s.svc, _ = c.services.Services(namespace).Get(name)
	// Informers are namespaced, so the indexes hold only this namespace's objects;
	// pods must also carry the server component label (the selector).
	for _, p := range indexed[*corev1.Pod](c.podIndex, byVolume, id) {
		if p.Labels[volume.LabelComponent] == volume.ComponentServer {
			s.pods = append(s.pods, p)
		}
	}
	s.slices = indexed[*discoveryv1.EndpointSlice](c.sliceIndex, byVolume, id)
	sort.Slice(s.pods, func(i, j int) bool { return s.pods[i].Name < s.pods[j].Name })

	s.problems = append(s.problems, c.pvcProblems(s.pvc, name)...)
	s.problems = append(s.problems, c.serverProblems(s.dep, s.pods, name)...)
	s.problems = append(s.problems, serviceProblems(s.svc, s.slices, name)...)
	return s
}

func (c *cache) pvcProblems(pvc *corev1.PersistentVolumeClaim, name string) []string {
	if pvc == nil {
		return []string{fmt.Sprintf("backend PVC %s does not exist", name)}
	}
	if pvc.DeletionTimestamp != nil {
		return []string{fmt.Sprintf("backend PVC %s is being deleted", name)}
	}
	if pvc.Status.Phase == corev1.ClaimBound {
		return nil
	}
	msg := fmt.Sprintf("backend PVC %s is %s", name, phaseOr(string(pvc.Status.Phase), "Pending"))
	if why := c.pendingReason(pvc); why != "" {
		msg += ": " + why
	}
	return []string{msg}
}

// pendingReason explains a Pending backend PVC from its StorageClass and its most
// recent event (ProvisioningFailed, WaitForFirstConsumer, ...).
func (c *cache) pendingReason(pvc *corev1.PersistentVolumeClaim) string {
	if ev := c.latestEvent(pvc); ev != nil {
		return fmt.Sprintf("%s: %s", ev.Reason, ev.Message)
	}
	if pvc.Spec.StorageClassName == nil {
		return "waiting for the cluster's default StorageClass to provision it"
	}
	sc, err := c.storageClasses.Get(*pvc.Spec.StorageClassName)
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("StorageClass %q does not exist", *pvc.Spec.StorageClassName)
	}
	if sc != nil && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		return fmt.Sprintf("StorageClass %q provisions when the server pod is scheduled", sc.Name)
	}
	return fmt.Sprintf("waiting for provisioner %q", storageProvisioner(sc))
}

func (c *cache) serverProblems(dep *appsv1.Deployment, pods []*corev1.Pod, name string) []string {
	if dep == nil {
		return []string{fmt.Sprintf("server Deployment %s does not exist", name)}
	}
	var live []*corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		msg := fmt.Sprintf("server Deployment %s has no running pod", name)
		for _, cond := range dep.Status.Conditions {
			if cond.Type == appsv1.DeploymentReplicaFailure && cond.Status == corev1.ConditionTrue {
				msg += fmt.Sprintf(": %s: %s", cond.Reason, cond.Message)
			}
		}
		return []string{msg}
	}
	for _, p := range live {
		if p.DeletionTimestamp == nil && podutil.Ready(p) {
			return nil
		}
	}
	// Explain the newest pod: it is the one the Deployment is waiting for.
	sort.Slice(live, func(i, j int) bool { return live[j].CreationTimestamp.Before(&live[i].CreationTimestamp) })
	return []string{c.podProblem(live[0])}
}

func (c *cache) podProblem(p *corev1.Pod) string {
	where := ""
	if p.Spec.NodeName != "" {
		where = " on node " + p.Spec.NodeName
	}
	msg := fmt.Sprintf("server pod %s%s is %s", p.Name, where, phaseOr(string(p.Status.Phase), "Pending"))
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			return msg + fmt.Sprintf(", not scheduled: %s", cond.Message)
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
			return msg + fmt.Sprintf(", container %s waiting: %s: %s", cs.Name, w.Reason, w.Message)
		}
		if t := cs.LastTerminationState.Terminated; t != nil && !cs.Ready {
			return msg + fmt.Sprintf(", container %s last exited with code %d (%s): %s", cs.Name, t.ExitCode, t.Reason, t.Message)
		}
	}
	if ev := c.latestEvent(p); ev != nil && ev.Type == corev1.EventTypeWarning {
		return msg + fmt.Sprintf(", %s: %s", ev.Reason, ev.Message)
	}
	if p.Status.Phase == corev1.PodRunning {
		return msg + " but not Ready (its readiness probe /readyz fails)"
	}
	return msg
}

func serviceProblems(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, name string) []string {
	if svc == nil {
		return []string{fmt.Sprintf("Service %s does not exist", name)}
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return []string{fmt.Sprintf("Service %s has no ClusterIP", name)}
	}
	for _, sl := range slices {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				return nil
			}
		}
	}
	return []string{fmt.Sprintf("Service %s has no ready endpoint", name)}
}

// expansionReason says why a backend claim does not hold want yet: how much it
// holds, the resize conditions the backend set on it, and its newest warning
// (a failed resize), so that the user's claim shows the backend's cause.
func (c *cache) expansionReason(pvc *corev1.PersistentVolumeClaim, want *resource.Quantity) string {
	if pvc == nil {
		return "the backend PVC is gone"
	}
	have := pvc.Status.Capacity[corev1.ResourceStorage]
	msg := fmt.Sprintf("the backend PVC %s/%s holds %s of the %s requested; waiting for its StorageClass's driver to expand it", pvc.Namespace, pvc.Name, have.String(), want.String())
	for _, cond := range pvc.Status.Conditions {
		if cond.Status == corev1.ConditionTrue {
			msg += fmt.Sprintf("; condition %s", cond.Type)
			if cond.Message != "" {
				msg += ": " + cond.Message
			}
		}
	}
	for _, rs := range pvc.Status.AllocatedResourceStatuses {
		msg += fmt.Sprintf("; resize status %s", rs)
	}
	if ev := c.latestEvent(pvc); ev != nil && ev.Type == corev1.EventTypeWarning {
		msg += fmt.Sprintf("; backend PVC event %s: %s", ev.Reason, ev.Message)
	}
	return msg
}

// latestEvent returns the event that best explains obj's state: the newest Warning
// (ProvisioningFailed, FailedMount, ...), else the newest event. A Normal event that
// repeats while waiting (ExternalProvisioning) must not hide the failure behind it.
func (c *cache) latestEvent(obj runtime.Object) *corev1.Event {
	m := metaOf(obj)
	if m == nil {
		return nil
	}
	var newest, newestWarning *corev1.Event
	for _, ev := range indexed[*corev1.Event](c.eventIndex, byInvolvedUID, string(m.GetUID())) {
		if newest == nil || eventTime(ev).After(eventTime(newest)) {
			newest = ev
		}
		if ev.Type == corev1.EventTypeWarning && (newestWarning == nil || eventTime(ev).After(eventTime(newestWarning))) {
			newestWarning = ev
		}
	}
	if newestWarning != nil {
		return newestWarning
	}
	return newest
}

func eventTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

func phaseOr(phase, fallback string) string {
	if phase == "" {
		return fallback
	}
	return phase
}

func storageProvisioner(sc *storagev1.StorageClass) string {
	if sc == nil {
		return "unknown"
	}
	return sc.Provisioner
}
