package main

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

const (
	oldID = "pvc-11111111-1111-1111-1111-111111111111"
	newID = "pvc-22222222-2222-2222-2222-222222222222"
)

// pvnfsObjects are a volume's objects as the API server returns them.
func pvnfsObjects() templates {
	name := volume.ObjectName(oldID)
	meta := func(component string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: name, Namespace: driverNS, UID: "uid", ResourceVersion: "42", Labels: volume.Labels(oldID, component),
			Annotations: map[string]string{
				volume.AnnotationVolumeName: oldID, volume.AnnotationClusterIP: "10.96.0.7",
				"pv.kubernetes.io/bind-completed": "yes", "deployment.kubernetes.io/revision": "1",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "pvnfs-csi"}},
		}
	}
	class := backendClass
	return templates{
		id: oldID,
		svc: &corev1.Service{ObjectMeta: meta(volume.ComponentService), Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.7", ClusterIPs: []string{"10.96.0.7"}, Selector: volume.Selector(oldID),
			Ports: []corev1.ServicePort{{Name: "nfs", Port: 2049}}}},
		pvc: &corev1.PersistentVolumeClaim{ObjectMeta: meta(volume.ComponentBackend), Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class, VolumeName: "pv-bound",
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
			Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
		dep: &appsv1.Deployment{ObjectMeta: meta(volume.ComponentServer), Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: volume.Selector(oldID)},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: volume.Labels(oldID, volume.ComponentServer)},
				Spec: corev1.PodSpec{Hostname: name, Volumes: []corev1.Volume{{Name: "backend", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}}}},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 1}},
	}
}

// TestLowerBoundCopiesPvnfsObjects: the lower bound's objects are pvnfs's for another
// volume ID, without anything the API server or other controllers added, and
// labelled so that no pvnfs controller takes them for its own.
func TestLowerBoundCopiesPvnfsObjects(t *testing.T) {
	tm := pvnfsObjects()
	svc, err := tm.service(newID, lowerBoundNS)
	if err != nil {
		t.Fatal(err)
	}
	pvc, err := tm.backendPVC(newID, lowerBoundNS, "10.96.0.9")
	if err != nil {
		t.Fatal(err)
	}
	dep, err := tm.deployment(newID, lowerBoundNS, "10.96.0.9")
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []metav1.Object{svc, pvc, dep} {
		b, _ := json.Marshal(obj)
		if strings.Contains(string(b), oldID) {
			t.Errorf("%T still names the template's volume: %s", obj, b)
		}
		if obj.GetName() != volume.ObjectName(newID) || obj.GetNamespace() != lowerBoundNS {
			t.Errorf("%T is %s/%s", obj, obj.GetNamespace(), obj.GetName())
		}
		if obj.GetUID() != "" || obj.GetResourceVersion() != "" || len(obj.GetManagedFields()) > 0 {
			t.Errorf("%T keeps server-set metadata: %+v", obj, obj)
		}
		if obj.GetLabels()[volume.LabelVolumeID] != newID || obj.GetLabels()[volume.LabelManagedBy] != lowerBoundManagedBy {
			t.Errorf("%T labels %v", obj, obj.GetLabels())
		}
		for k := range obj.GetAnnotations() {
			if !strings.HasPrefix(k, "pvnfs.io/") {
				t.Errorf("%T keeps annotation %s", obj, k)
			}
		}
	}
	if svc.Spec.ClusterIP != "" || len(svc.Spec.ClusterIPs) != 0 || svc.Annotations[volume.AnnotationClusterIP] != "" {
		t.Errorf("Service asks for the template's address: %+v", svc.Spec)
	}
	if pvc.Spec.VolumeName != "" || pvc.Status.Phase != "" || pvc.Annotations[volume.AnnotationClusterIP] != "10.96.0.9" {
		t.Errorf("backend PVC: %+v, %v", pvc.Spec, pvc.Annotations)
	}
	if dep.Status.ReadyReplicas != 0 || dep.Annotations[volume.AnnotationClusterIP] != "10.96.0.9" ||
		dep.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != volume.ObjectName(newID) ||
		dep.Spec.Selector.MatchLabels[volume.LabelVolumeID] != newID {
		t.Errorf("Deployment: %+v", dep)
	}
	// The template itself is untouched.
	if tm.svc.Spec.ClusterIP != "10.96.0.7" || tm.dep.Labels[volume.LabelVolumeID] != oldID {
		t.Error("making copies changed the template")
	}
}
