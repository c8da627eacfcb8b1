package localcluster

import (
	"context"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

var shared = Shared{
	Options: Options{HoldNode: true},
	Setup: func(ctx context.Context, c *Cluster) error {
		if err := c.AddBackendClass(ctx, BackendClass{Name: "rwo", Default: true, AllowExpansion: true}); err != nil {
			return err
		}
		return c.StartBackendProvisioner()
	},
}

func TestMain(m *testing.M) { os.Exit(shared.Main(m)) }

// TestLocalClusterRunsADeploymentWithAClaim checks the pieces the driver relies on:
// the scheduler places a pod, the backend provisioner binds its WaitForFirstConsumer
// claim, and kwok marks the pod Ready, except on the hold node.
func TestLocalClusterRunsADeploymentWithAClaim(t *testing.T) {
	c := shared.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := "smoke"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		node      string
		wantReady bool
	}{{"ready", "", true}, {"held", HoldNode, false}} {
		pvc := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: ns},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{"app": tc.name}
		one := int32(1)
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}},
					Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: tc.name}}}},
				}}},
		}
		if tc.node != "" {
			dep.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": tc.node}
			dep.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: HoldTaint, Operator: corev1.TolerationOpExists}}
		}
		if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=ready"})
		if err != nil || len(pods.Items) != 1 {
			return false, nil
		}
		for _, cond := range pods.Items[0].Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod never turned Ready: %v", err)
	}
	pvc, _ := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "ready", metav1.GetOptions{})
	if pvc.Status.Phase != corev1.ClaimBound {
		t.Errorf("claim of a Ready pod is %s", pvc.Status.Phase)
	}
	t.Logf("pod Ready with its claim bound %v after creation", time.Since(start).Round(time.Millisecond))

	// The hold pod is scheduled on its own: on a busy machine the hold node may
	// still carry its not-ready taint when the other pod is already Ready, and the
	// scheduler places the pod once the taint is gone.
	var held *corev1.PodList
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		held, err = c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=held"})
		return err == nil && len(held.Items) == 1 && held.Items[0].Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod on the hold node never ran: %v; %+v", err, held)
	}
	for _, cond := range held.Items[0].Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
			t.Error("pod on the hold node turned Ready")
		}
	}
}
