package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// lowerBoundManagedBy replaces pvnfs's managed-by label on the lower bound's
// objects, so that no pvnfs controller ever takes them for its own.
const lowerBoundManagedBy = "pvnfs-bench-lower-bound"

// templates are the Service, backend PVC and Deployment pvnfs created for one
// volume, read back from the API server. The lower bound creates exactly these
// objects (same specs, labels, annotations and sizes) for other volume IDs, so the
// only difference from pvnfs is who creates them.
type templates struct {
	id  string
	svc *corev1.Service
	pvc *corev1.PersistentVolumeClaim
	dep *appsv1.Deployment
}

// captureTemplates reads a volume's objects as pvnfs made them.
func captureTemplates(ctx context.Context, client kubernetes.Interface, namespace, id string) (templates, error) {
	name := volume.ObjectName(id)
	t := templates{id: id}
	var err error
	if t.svc, err = client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
		return t, fmt.Errorf("reading the Service pvnfs made: %w", err)
	}
	if t.pvc, err = client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
		return t, fmt.Errorf("reading the backend PVC pvnfs made: %w", err)
	}
	if t.dep, err = client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
		return t, fmt.Errorf("reading the Deployment pvnfs made: %w", err)
	}
	return t, nil
}

// cleanMeta keeps of an object's metadata what pvnfs sets: name, labels and its
// own annotations; everything the API server and controllers added goes.
func cleanMeta(m metav1.ObjectMeta, namespace string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{Name: m.Name, Namespace: namespace, Labels: map[string]string{}, Annotations: map[string]string{}}
	for k, v := range m.Labels {
		out.Labels[k] = v
	}
	out.Labels[volume.LabelManagedBy] = lowerBoundManagedBy
	for k, v := range m.Annotations {
		if strings.HasPrefix(k, "pvnfs.io/") {
			out.Annotations[k] = v
		}
	}
	return out
}

// rewrite returns obj with every occurrence of the template's volume ID replaced
// by id (names, labels, selectors, hostname, claim name, server arguments).
func rewrite[T any](obj *T, from, to string) (*T, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(b), from, to)), out); err != nil {
		return nil, err
	}
	return out, nil
}

// service returns the Service of volume id in namespace; the API server allocates
// its ClusterIP.
func (t templates) service(id, namespace string) (*corev1.Service, error) {
	svc := &corev1.Service{ObjectMeta: cleanMeta(t.svc.ObjectMeta, namespace), Spec: *t.svc.Spec.DeepCopy()}
	delete(svc.Annotations, volume.AnnotationClusterIP)
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
	return rewrite(svc, t.id, id)
}

// backendPVC returns the backend PVC of volume id, recording the Service's
// ClusterIP as pvnfs does.
func (t templates) backendPVC(id, namespace, clusterIP string) (*corev1.PersistentVolumeClaim, error) {
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: cleanMeta(t.pvc.ObjectMeta, namespace), Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes:      t.pvc.Spec.AccessModes,
		Resources:        t.pvc.Spec.Resources,
		StorageClassName: t.pvc.Spec.StorageClassName,
		VolumeMode:       t.pvc.Spec.VolumeMode,
	}}
	pvc.Annotations[volume.AnnotationClusterIP] = clusterIP
	return rewrite(pvc, t.id, id)
}

// deployment returns the server Deployment of volume id.
func (t templates) deployment(id, namespace, clusterIP string) (*appsv1.Deployment, error) {
	dep := &appsv1.Deployment{ObjectMeta: cleanMeta(t.dep.ObjectMeta, namespace), Spec: *t.dep.Spec.DeepCopy()}
	dep.Annotations[volume.AnnotationClusterIP] = clusterIP
	return rewrite(dep, t.id, id)
}

// createDirect creates a volume's objects the way pvnfs's CreateVolume does — the
// Service first (its ClusterIP goes on the others), then the backend PVC, then the
// Deployment, one after another — with the benchmark's client.
func (t templates) createDirect(ctx context.Context, client kubernetes.Interface, id, namespace string) error {
	svc, err := t.service(id, namespace)
	if err != nil {
		return err
	}
	name := svc.Name
	if svc, err = client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Service %s: %w", name, err)
	}
	pvc, err := t.backendPVC(id, namespace, svc.Spec.ClusterIP)
	if err != nil {
		return err
	}
	if _, err := client.CoreV1().PersistentVolumeClaims(namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating backend PVC %s: %w", pvc.Name, err)
	}
	dep, err := t.deployment(id, namespace, svc.Spec.ClusterIP)
	if err != nil {
		return err
	}
	if _, err := client.AppsV1().Deployments(namespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Deployment %s: %w", dep.Name, err)
	}
	return nil
}

// deleteDirect deletes a volume's objects as pvnfs's DeleteVolume does: the backend
// PVC, then the Deployment, then the Service, in the background (the garbage
// collector removes the ReplicaSet and pods).
func deleteDirect(ctx context.Context, client kubernetes.Interface, id, namespace string) error {
	name := volume.ObjectName(id)
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	if err := client.CoreV1().PersistentVolumeClaims(namespace).Delete(ctx, name, opts); err != nil {
		return fmt.Errorf("deleting backend PVC %s: %w", name, err)
	}
	if err := client.AppsV1().Deployments(namespace).Delete(ctx, name, opts); err != nil {
		return fmt.Errorf("deleting Deployment %s: %w", name, err)
	}
	if err := client.CoreV1().Services(namespace).Delete(ctx, name, opts); err != nil {
		return fmt.Errorf("deleting Service %s: %w", name, err)
	}
	return nil
}
