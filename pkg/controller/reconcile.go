package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// ReconcileOptions configure the reconciler.
type ReconcileOptions struct {
	// Resync re-checks every volume this often, besides the watch events.
	Resync time.Duration
	// OrphanMinAge is how old a volume's objects must be before a missing PV makes
	// it an orphan: CreateVolume returns before the provisioner creates the PV.
	OrphanMinAge time.Duration
	// DeleteOrphansAfter deletes an orphan's objects once it has been reported for
	// this long; 0 never deletes them. Backup tools restore such objects on purpose,
	// so deleting is an explicit choice.
	DeleteOrphansAfter time.Duration
	// Workers is the number of volumes repaired at once.
	Workers int
	// MaxServerRollouts is how many servers built by another pvnfs version or
	// --server-image are rolled to the current template at a time; the next starts
	// once one of them has a Ready new server. 0 leaves them for the operator.
	MaxServerRollouts int
	// RolloutRecheck is how often a server waiting for its turn to roll looks
	// again, besides being woken when a roll completes; 0 means 5 s.
	RolloutRecheck time.Duration
}

// Events the reconciler records, on the backend PVC (or the Deployment).
const (
	EventServiceRecreated    = "ServiceRecreated"
	EventDeploymentRecreated = "DeploymentRecreated"
	EventDeploymentCorrected = "DeploymentCorrected"
	EventRepairFailed        = "RepairFailed"
	EventBackendMissing      = "BackendVolumeMissing"
	EventWaitingForOldServer = "WaitingForOldServer"
	EventOrphaned            = "Orphaned"
	EventOrphanDeleted       = "OrphanDeleted"
	EventServerRollStarted   = "ServerRollStarted"
	EventServerRolled        = "ServerRolled"
)

// AnnotationPinServer, set to "true" on a volume's server Deployment, keeps the
// reconciler from rolling that server to a new template: a volume whose
// applications cannot take a grace period now stays on its current server until
// the annotation is removed.
const AnnotationPinServer = "pvnfs.io/pin-server"

// annotationRolledTo marks a server Deployment the reconciler rolled, with the
// template hash it rolled it to. While that hash is the Deployment's and the roll
// has not completed, the roll counts against MaxServerRollouts, also after a
// controller restart.
const annotationRolledTo = "pvnfs.io/rolled-to"

// AnnotationTemplateHash records on a server Deployment the hash of the spec pvnfs
// built. A live spec that differs while the hash still matches was edited by hand
// and is corrected; a hash that differs means this pvnfs builds servers differently
// (an upgrade, a new --server-image): the server is outdated, and rolled a few at a
// time (ReconcileOptions.MaxServerRollouts) instead of every volume's server at once.
const AnnotationTemplateHash = "pvnfs.io/template-hash"

// reconciler keeps every volume's objects as its parameters require.
type reconciler struct {
	s        *Service
	opts     ReconcileOptions
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	now      func() time.Time

	mu          sync.Mutex
	orphanSince map[string]time.Time
	outdated    map[string]bool
	// rolling holds the rolls this reconciler started, by volume, with their start
	// time, until it sees them complete.
	rolling map[string]time.Time
	// looks counts, per volume with objects, the syncs that finished looking at
	// them, whatever they decided. "The reconciler looked and left it alone" is
	// otherwise invisible; tests wait on this count instead of sleeping.
	looks map[string]int
}

// Reconcile runs the reconciler until ctx ends. Run it in one controller replica at
// a time (leader election): two would race to repair the same objects.
func (s *Service) Reconcile(ctx context.Context, opts ReconcileOptions) {
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.OrphanMinAge <= 0 {
		opts.OrphanMinAge = 10 * time.Minute
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events(s.cfg.Namespace)})
	defer broadcaster.Shutdown()
	r := &reconciler{
		s:    s,
		opts: opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "pvnfs-reconciler"}),
		recorder:    broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "pvnfs-controller"}),
		now:         time.Now,
		orphanSince: map[string]time.Time{},
		outdated:    map[string]bool{},
		rolling:     map[string]time.Time{},
		looks:       map[string]int{},
	}
	if r.opts.RolloutRecheck <= 0 {
		r.opts.RolloutRecheck = 5 * time.Second
	}
	s.metrics.setReconciler(r)
	defer s.metrics.setReconciler(nil)
	defer r.queue.ShutDown()

	stop := s.cache.onChange(r.queue.Add)
	defer stop()
	klog.InfoS("Reconciler started", "namespace", s.cfg.Namespace, "resync", opts.Resync, "deleteOrphansAfter", opts.DeleteOrphansAfter)
	var wg sync.WaitGroup
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.next(ctx) {
			}
		}()
	}
	ticker := time.NewTicker(opts.Resync)
	defer ticker.Stop()
	for {
		for _, id := range s.volumeIDs() {
			r.queue.Add(id)
		}
		select {
		case <-ctx.Done():
			r.queue.ShutDown()
			wg.Wait()
			klog.InfoS("Reconciler stopped")
			return
		case <-ticker.C:
		}
	}
}

func (r *reconciler) next(ctx context.Context) bool {
	id, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(id)
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	requeue, err := r.sync(callCtx, id)
	switch {
	case err != nil:
		klog.ErrorS(err, "Repairing volume failed; retrying", "volumeID", id)
		r.s.metrics.action("repair_failed")
		r.queue.AddRateLimited(id)
	case requeue > 0:
		r.queue.Forget(id)
		r.queue.AddAfter(id, requeue)
	default:
		r.queue.Forget(id)
	}
	return true
}

// sync checks one volume and repairs what is missing or edited. It returns when to
// look again, for states that change with time alone (an orphan's grace period).
func (r *reconciler) sync(ctx context.Context, id string) (time.Duration, error) {
	if _, err := volume.ParseID(id); err != nil {
		return 0, nil
	}
	// A CreateVolume or DeleteVolume of this volume is running here: it owns the
	// objects until it returns.
	release, ok := r.s.inflight.TryAcquire(id)
	if !ok {
		return time.Second, nil
	}
	defer release()

	st := r.s.cache.lookup(r.s.cfg.Namespace, id)
	if !st.exists() {
		r.forget(id)
		r.mu.Lock()
		delete(r.looks, id)
		r.mu.Unlock()
		return 0, nil
	}
	defer r.looked(id)
	if st.pvc == nil {
		// The data lives on the backend PVC: recreating it empty would hide a data
		// loss behind a working volume. Say so and touch nothing.
		if st.dep != nil {
			r.recorder.Eventf(st.dep, corev1.EventTypeWarning, EventBackendMissing,
				"backend PVC %s/%s of volume %s does not exist; pvnfs does not recreate it (its data would be lost) and leaves the server as it is",
				r.s.cfg.Namespace, volume.ObjectName(id), id)
		}
		return 0, nil
	}
	if st.pvc.DeletionTimestamp != nil {
		return 0, nil // DeleteVolume (or a person) is deleting the volume
	}
	spec, err := specFromBackend(id, st.pvc)
	if err != nil {
		r.recorder.Eventf(st.pvc, corev1.EventTypeWarning, EventRepairFailed, "cannot rebuild volume %s: %v", id, err)
		return 0, nil
	}
	desired := r.s.cfg.buildDeployment(spec)
	var waitOld time.Duration
	needService := st.svc == nil
	needDeployment := st.dep == nil
	if needDeployment && len(st.pods) > 0 {
		// The old server pod is still stopping (its Deployment was deleted without
		// waiting for it). Two servers on one volume could both write it, and an RWO
		// volume does not prevent two pods on one node: wait for it to be gone.
		r.recorder.Eventf(st.pvc, corev1.EventTypeNormal, EventWaitingForOldServer,
			"server Deployment %s is missing; waiting for the old server pod %s to stop before recreating it", volume.ObjectName(id), st.pods[0].Name)
		needDeployment = false
		waitOld = 2 * time.Second
	}
	drift := st.dep != nil && r.drifted(id, st.dep, desired)
	if needService || needDeployment || drift {
		if err := r.repair(ctx, id, spec, st, needService, needDeployment, drift); err != nil {
			return 0, err
		}
	}
	if st.dep != nil {
		r.rolled(id, st.dep)
	}
	rollAgain := time.Duration(0)
	if st.dep != nil && r.isOutdated(id) {
		wait, err := r.roll(ctx, id, st.dep, desired)
		if err != nil {
			return 0, err
		}
		rollAgain = wait
	}
	after, err := r.checkOrphan(ctx, id, st.pvc)
	for _, d := range []time.Duration{waitOld, rollAgain} {
		if d > 0 && (after == 0 || d < after) {
			after = d
		}
	}
	return after, err
}

func (r *reconciler) isOutdated(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outdated[id]
}

// roll brings an outdated server to the current template when its turn comes:
// not pinned, and fewer than MaxServerRollouts rolls in progress. It returns when
// to look again while the server waits for its turn.
func (r *reconciler) roll(ctx context.Context, id string, live, desired *appsv1.Deployment) (time.Duration, error) {
	if r.opts.MaxServerRollouts <= 0 || live.Annotations[AnnotationPinServer] == "true" {
		return 0, nil
	}
	r.mu.Lock()
	if _, mine := r.rolling[id]; !mine && r.rollsInProgress() >= r.opts.MaxServerRollouts {
		r.mu.Unlock()
		return r.opts.RolloutRecheck, nil
	}
	r.rolling[id] = r.now()
	r.mu.Unlock()

	dep := withTemplate(live, desired)
	dep.Annotations[annotationRolledTo] = desired.Annotations[AnnotationTemplateHash]
	if _, err := r.s.client.AppsV1().Deployments(r.s.cfg.Namespace).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		r.mu.Lock()
		delete(r.rolling, id)
		r.mu.Unlock()
		return 0, fmt.Errorf("rolling server Deployment %s to the current template: %w", dep.Name, err)
	}
	r.mu.Lock()
	delete(r.outdated, id)
	r.mu.Unlock()
	r.recorder.Eventf(dep, corev1.EventTypeNormal, EventServerRollStarted,
		"rolling server %s to the current template (image %s): clients pause for one grace period; at most %d servers roll at a time (--max-server-rollouts)",
		dep.Name, serverImage(desired), r.opts.MaxServerRollouts)
	r.s.metrics.action("server_roll_started")
	klog.InfoS("Rolling server to the current template", "volumeID", id, "image", serverImage(desired))
	return 0, nil
}

// rollsInProgress counts the rolls not yet complete: the Deployments in the cache
// that a reconciler rolled to their current template, and the rolls this one
// started that the cache does not show yet. Callers hold r.mu.
func (r *reconciler) rollsInProgress() int {
	n := 0
	counted := map[string]bool{}
	deps, _ := r.s.cache.deployments.Deployments(r.s.cfg.Namespace).List(labels.Everything())
	for _, d := range deps {
		to := d.Annotations[annotationRolledTo]
		if to == "" || to != d.Annotations[AnnotationTemplateHash] {
			continue
		}
		id := d.Labels[volume.LabelVolumeID]
		counted[id] = true
		if !rollComplete(d) {
			n++
		}
	}
	for id := range r.rolling {
		if !counted[id] {
			n++
		}
	}
	return n
}

// rolled notes the completion of a roll this reconciler started: the event, the
// metric, and a look at every server still waiting for its turn.
func (r *reconciler) rolled(id string, dep *appsv1.Deployment) {
	r.mu.Lock()
	started, mine := r.rolling[id]
	done := mine && dep.Annotations[annotationRolledTo] != "" &&
		dep.Annotations[annotationRolledTo] == dep.Annotations[AnnotationTemplateHash] && rollComplete(dep)
	var waiting []string
	if done {
		delete(r.rolling, id)
		for o := range r.outdated {
			waiting = append(waiting, o)
		}
	}
	r.mu.Unlock()
	if !done {
		return
	}
	took := r.now().Sub(started).Round(time.Millisecond)
	r.recorder.Eventf(dep, corev1.EventTypeNormal, EventServerRolled, "server %s runs the current template and is Ready again, %s after its roll started", dep.Name, took)
	r.s.metrics.action("server_roll_completed")
	klog.InfoS("Server rolled", "volumeID", id, "took", took)
	for _, o := range waiting {
		r.queue.Add(o)
	}
}

// rollComplete reports whether a Deployment's controller has seen its current
// spec and every replica is updated and Ready, with no old one left.
func rollComplete(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want &&
		s.ReadyReplicas == want && s.AvailableReplicas == want && s.Replicas == want
}

func serverImage(d *appsv1.Deployment) string {
	if c := d.Spec.Template.Spec.Containers; len(c) > 0 {
		return c[0].Image
	}
	return ""
}

// repair recreates or corrects the volume's objects, after checking with the API
// server (not the cache) that the volume is not being deleted: the cache may show
// the Deployment gone before it shows the PVC's deletion mark.
func (r *reconciler) repair(ctx context.Context, id string, spec volumeSpec, st volumeState, needService, needDeployment, drift bool) error {
	ns, name := r.s.cfg.Namespace, volume.ObjectName(id)
	live, err := r.s.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && live.DeletionTimestamp != nil) {
		return nil
	}
	if err != nil {
		return err
	}
	if needService {
		svc, err := r.s.client.CoreV1().Services(ns).Create(ctx, r.s.cfg.buildService(spec), metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
		case err != nil:
			r.recorder.Eventf(live, corev1.EventTypeWarning, EventRepairFailed, "recreating Service %s with ClusterIP %s failed: %v", name, spec.clusterIP, err)
			return err
		default:
			r.recorder.Eventf(live, corev1.EventTypeNormal, EventServiceRecreated, "Service %s was missing and was recreated with its ClusterIP %s", name, svc.Spec.ClusterIP)
			r.s.metrics.action("service_recreated")
			klog.InfoS("Recreated Service", "volumeID", id, "clusterIP", svc.Spec.ClusterIP)
		}
	}
	if needDeployment {
		_, err := r.s.client.AppsV1().Deployments(ns).Create(ctx, r.s.cfg.buildDeployment(spec), metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
		case err != nil:
			r.recorder.Eventf(live, corev1.EventTypeWarning, EventRepairFailed, "recreating server Deployment %s failed: %v", name, err)
			return err
		default:
			r.recorder.Eventf(live, corev1.EventTypeNormal, EventDeploymentRecreated, "server Deployment %s was missing and was recreated", name)
			r.s.metrics.action("deployment_recreated")
			klog.InfoS("Recreated server Deployment", "volumeID", id)
		}
	}
	if drift {
		dep := st.dep.DeepCopy()
		dep.Spec = r.s.cfg.buildDeployment(spec).Spec
		if _, err := r.s.client.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("correcting server Deployment %s: %w", name, err)
		}
		r.recorder.Eventf(dep, corev1.EventTypeNormal, EventDeploymentCorrected, "server Deployment %s differed from what the volume's parameters require and was corrected", name)
		r.s.metrics.action("deployment_corrected")
		klog.InfoS("Corrected server Deployment", "volumeID", id)
	}
	return nil
}

// drifted reports whether a Deployment built by this pvnfs was edited since.
func (r *reconciler) drifted(id string, live, desired *appsv1.Deployment) bool {
	want := desired.Annotations[AnnotationTemplateHash]
	if live.Annotations[AnnotationTemplateHash] != want {
		r.mu.Lock()
		if !r.outdated[id] {
			klog.V(2).InfoS("Server Deployment was built by another pvnfs version or image", "volumeID", id,
				"maxServerRollouts", r.opts.MaxServerRollouts, "pinned", live.Annotations[AnnotationPinServer] == "true")
		}
		r.outdated[id] = true
		r.mu.Unlock()
		return false
	}
	r.mu.Lock()
	delete(r.outdated, id)
	r.mu.Unlock()
	// The API server fills defaults into the live spec; only what pvnfs sets counts.
	return !equality.Semantic.DeepDerivative(desired.Spec, live.Spec)
}

// checkOrphan reports a volume that no PersistentVolume refers to any more, and
// deletes it when asked to. It returns when to check again.
func (r *reconciler) checkOrphan(ctx context.Context, id string, pvc *corev1.PersistentVolumeClaim) (time.Duration, error) {
	if r.s.cache.pvOf(id) != nil {
		r.forget(id)
		return 0, nil
	}
	age := r.now().Sub(pvc.CreationTimestamp.Time)
	if age < r.opts.OrphanMinAge {
		return r.opts.OrphanMinAge - age, nil
	}
	// The user's PVC may still be waiting for this volume (a CreateVolume that keeps
	// failing): then it is not an orphan.
	if ns, name := pvc.Annotations[volume.AnnotationPVCNamespace], pvc.Annotations[volume.AnnotationPVCName]; ns != "" && name != "" {
		user, err := r.s.client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, err
		}
		if err == nil && user.DeletionTimestamp == nil {
			r.forget(id)
			return r.opts.OrphanMinAge, nil
		}
	}
	r.mu.Lock()
	since, seen := r.orphanSince[id]
	if !seen {
		since = r.now()
		r.orphanSince[id] = since
	}
	r.mu.Unlock()
	if !seen {
		keep := "kept: --delete-orphans-after is 0"
		if r.opts.DeleteOrphansAfter > 0 {
			keep = fmt.Sprintf("deleted in %s (--delete-orphans-after) unless a PersistentVolume refers to it again", r.opts.DeleteOrphansAfter)
		}
		r.recorder.Eventf(pvc, corev1.EventTypeWarning, EventOrphaned,
			"no PersistentVolume refers to volume %s and its PVC %s/%s is gone; its objects and data are %s",
			id, pvc.Annotations[volume.AnnotationPVCNamespace], pvc.Annotations[volume.AnnotationPVCName], keep)
		r.s.metrics.action("orphan_reported")
		klog.InfoS("Orphaned volume", "volumeID", id, "deleteAfter", r.opts.DeleteOrphansAfter)
	}
	if r.opts.DeleteOrphansAfter <= 0 {
		return r.opts.Resync, nil
	}
	if wait := since.Add(r.opts.DeleteOrphansAfter).Sub(r.now()); wait > 0 {
		return wait, nil
	}
	r.recorder.Eventf(pvc, corev1.EventTypeNormal, EventOrphanDeleted, "deleting orphaned volume %s (--delete-orphans-after %s)", id, r.opts.DeleteOrphansAfter)
	if err := r.s.deleteObjects(ctx, id); err != nil {
		return 0, err
	}
	r.s.metrics.action("orphan_deleted")
	r.forget(id)
	return 0, nil
}

func (r *reconciler) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.orphanSince, id)
	delete(r.outdated, id)
}

// looked counts a finished sync of a volume that has objects.
func (r *reconciler) looked(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.looks[id]++
}

// lookCount returns how many syncs of the volume have finished.
func (r *reconciler) lookCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.looks[id]
}

func (r *reconciler) counts() (orphans, outdated int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.orphanSince), len(r.outdated)
}

// rollCount is the number of server rolls in progress.
func (r *reconciler) rollCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rollsInProgress()
}

// specFromBackend rebuilds a volume's spec from its backend PVC, which records the
// name, parameters and ClusterIP the volume was created with.
func specFromBackend(id string, pvc *corev1.PersistentVolumeClaim) (volumeSpec, error) {
	a := pvc.Annotations
	params, err := loadParameters(a[volume.AnnotationParameters], a[volume.AnnotationMutableParameters])
	if err != nil {
		return volumeSpec{}, err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	return volumeSpec{
		id:            id,
		name:          a[volume.AnnotationVolumeName],
		params:        params,
		storedParams:  a[volume.AnnotationParameters],
		storedMutable: a[volume.AnnotationMutableParameters],
		capacity:      size.Value(),
		clusterIP:     a[volume.AnnotationClusterIP],
		pvName:        a[volume.AnnotationPVName],
		pvcName:       a[volume.AnnotationPVCName],
		pvcNamespace:  a[volume.AnnotationPVCNamespace],
	}, nil
}

// templateHash fingerprints a Deployment spec as pvnfs builds it.
func templateHash(spec appsv1.DeploymentSpec) string {
	b, _ := json.Marshal(spec) // a DeploymentSpec always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
