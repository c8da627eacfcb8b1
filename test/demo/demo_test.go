package demo_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/demo"
	"github.com/pvnfs/pvnfs/test/harness"
	"github.com/pvnfs/pvnfs/test/localcluster"
)

// TestControlPlaneAndNFSStandInWordPressDemo runs `make demo`'s story (demo.Up and
// demo.WordPress, the very functions the program calls) on a real local control
// plane with the real driver, the node plugins in their own mount namespaces and the
// NFS leg stood in by bind mounts, and then goes on where the demo stops:
//
//   - scaling down to one replica unmounts the volume from the nodes with no pod
//     left: no NFS-leg mount and no pod bind mount there;
//   - a second RWX volume works beside the first with a server, ClusterIP and files
//     of its own;
//   - deleting a claim removes every object of its volume (PV, backend PVC, server
//     Deployment and pods, Service) and every mount, and leaves the other volume
//     serving;
//   - stopping the stack leaves no process, no mount and no etcd directory.
func TestControlPlaneAndNFSStandInWordPressDemo(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp("", "pvnfs-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	st, err := demo.Claim(dir, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	p := demo.NewProgress(t.Output(), st.Record)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s, err := demo.Up(ctx, demo.Options{Dir: dir, Progress: p})
	if err != nil {
		_ = st.Release(true)
		t.Fatalf("starting the demo's stack: %v (logs in %s)", err, dir)
	}
	t.Cleanup(func() { stopAndCheckNothingLeft(t, s, st, dir) })

	res, err := demo.WordPress(ctx, s, 6)
	if err != nil {
		t.Fatalf("the demo's story: %v", err)
	}
	checkShared(t, s, res)

	// Each step builds on the one before; stop at the first that fails.
	if !t.Run("scaling down to one replica unmounts from nodes without pods", func(t *testing.T) {
		checkScaleDown(t, ctx, s, res)
	}) {
		return
	}
	var second *demo.Volume
	if !t.Run("a second RWX volume has its own server and files", func(t *testing.T) {
		second = checkSecondVolume(t, ctx, s, res)
	}) {
		return
	}
	t.Run("deleting the claims removes every object and mount", func(t *testing.T) {
		checkDelete(t, ctx, s, res.Volume, second)
	})
}

func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	switch {
	case testing.Short():
		t.Skip("-short: the demo's end-to-end test needs root, the local control plane and mount namespaces")
	case os.Geteuid() != 0:
		why = "the demo's end-to-end test needs root (mount namespaces per simulated node, the local control plane)"
	}
	if why == "" {
		return
	}
	if os.Getenv(localcluster.RequireAll) == "1" {
		t.Fatalf("%s (%s=1: not skipping)", why, localcluster.RequireAll)
	}
	t.Skip(why)
}

// checkShared checks the demo's claims against the mount tables and the objects:
// every replica sees the plugin, each node with replicas has one NFS-leg mount and
// one bind mount per replica, and the volume has its backend PVC, server and Service.
func checkShared(t *testing.T, s *demo.Stack, res *demo.Result) {
	t.Helper()
	if len(res.Replicas) != 6 {
		t.Fatalf("%d replicas, want 6", len(res.Replicas))
	}
	for pod, err := range res.Seen {
		if err != nil {
			t.Errorf("%s does not see the plugin: %v", pod, err)
		}
	}
	if len(res.Seen) != 5 {
		t.Errorf("the plugin was checked through %d replicas, want the 5 others", len(res.Seen))
	}
	checkMounts(t, s, res.Volume, res.Replicas)
	perNode := map[string]bool{}
	for _, r := range res.Replicas {
		perNode[r.Node] = true
	}
	if len(perNode) < 2 {
		t.Errorf("6 replicas on %d node(s): the example's spread constraint should use several", len(perNode))
	}
	v := res.Volume
	if v.BackendPVC.Status.Phase != corev1.ClaimBound || ptr.Deref(v.BackendPVC.Spec.StorageClassName, "") != demo.BackendClass ||
		!slices.Equal(v.BackendPVC.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("backend PVC %s: %s, class %v, modes %v; want Bound, %s, ReadWriteOnce", v.BackendPVC.Name,
			v.BackendPVC.Status.Phase, ptr.Deref(v.BackendPVC.Spec.StorageClassName, ""), v.BackendPVC.Spec.AccessModes, demo.BackendClass)
	}
	if v.Service.Spec.ClusterIP != v.Export.Server {
		t.Errorf("the volume mounts %s, but its Service's ClusterIP is %s", v.Export.Server, v.Service.Spec.ClusterIP)
	}
}

// checkMounts compares a volume's mounts in every node's mount table with the
// replicas that use it: one NFS-leg mount on a node with replicas and one bind
// mount per replica; nothing on the other nodes and nothing anywhere else.
func checkMounts(t *testing.T, s *demo.Stack, v *demo.Volume, reps []demo.Replica) {
	t.Helper()
	mounts, err := s.NodeMounts(v)
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]int{}
	for _, r := range reps {
		pods[r.Node]++
	}
	for _, n := range s.Nodes {
		m, want := mounts[n.Name()], pods[n.Name()]
		wantNFS := 0
		if want > 0 {
			wantNFS = 1
		}
		if len(m.NFS) != wantNFS || len(m.Pods) != want || len(m.Other) != 0 {
			t.Errorf("%s: %d NFS-leg mounts, %d pod bind mounts, %d others of %s; want %d, %d, 0",
				n.Name(), len(m.NFS), len(m.Pods), len(m.Other), v.Export.Source(), wantNFS, want)
		}
	}
}

func checkScaleDown(t *testing.T, ctx context.Context, s *demo.Stack, res *demo.Result) {
	if err := s.Scale(ctx, demo.WordPressNamespace, demo.WordPressDeployment, 1); err != nil {
		t.Fatal(err)
	}
	reps, err := s.WaitReplicas(ctx, demo.WordPressNamespace, demo.WordPressSelector, res.Volume.Handle, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitUnmounted(ctx, res.Volume.Handle, reps); err != nil {
		t.Fatalf("the kubelet did not unmount the volume from the pods and nodes that are gone: %v", err)
	}
	checkMounts(t, s, res.Volume, reps)
	if err := s.SeesFile(reps[0], demo.PluginFile, res.Plugin); err != nil {
		t.Errorf("the remaining replica %s lost the plugin: %v", reps[0].Pod, err)
	}
	t.Logf("1 replica left, %s on %s; the other nodes have no mount of %s", reps[0].Pod, reps[0].Node, res.Volume.Export.Source())
}

// checkSecondVolume creates a second RWX claim and a Deployment of two replicas
// using it, and checks that it has its own server, address and files.
func checkSecondVolume(t *testing.T, ctx context.Context, s *demo.Stack, res *demo.Result) *demo.Volume {
	const name, ns, selector = "uploads", demo.WordPressNamespace, "app=uploads"
	pvc := harness.RWXClaim(ns, name, demo.StorageClassName, "1Gi")
	if _, err := s.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app", Image: "example.invalid/uploads",
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}},
			}}},
	}
	if _, err := s.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err := s.WaitVolume(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	reps, err := s.WaitReplicas(ctx, ns, selector, v.Handle, 2)
	if err != nil {
		t.Fatal(err)
	}
	first := res.Volume
	if v.Handle == first.Handle || v.Export.Server == first.Export.Server || v.Server.Name == first.Server.Name ||
		v.BackendPVC.Name == first.BackendPVC.Name || v.Service.Name == first.Service.Name {
		t.Errorf("the second volume shares something with the first: %s at %s (server %s, backend %s) vs %s at %s (server %s, backend %s)",
			v.Handle, v.Export.Server, v.Server.Name, v.BackendPVC.Name, first.Handle, first.Export.Server, first.Server.Name, first.BackendPVC.Name)
	}
	checkMounts(t, s, v, reps)

	photo := []byte("not really a JPEG")
	const file = "2026/11/photo.jpg"
	if err := s.WriteFile(reps[0], file, photo); err != nil {
		t.Fatal(err)
	}
	if err := s.SeesFile(reps[1], file, photo); err != nil {
		t.Errorf("second volume: %s does not see what %s wrote: %v", reps[1].Pod, reps[0].Pod, err)
	}
	wp, err := s.WaitReplicas(ctx, demo.WordPressNamespace, demo.WordPressSelector, first.Handle, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SeesFile(wp[0], file, photo); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WordPress's volume shows the second volume's file (%v)", err)
	}
	for _, r := range reps {
		if err := s.SeesFile(r, demo.PluginFile, res.Plugin); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the second volume shows WordPress's plugin through %s (%v)", r.Pod, err)
		}
	}
	t.Logf("second volume %s: server %s at %s, replicas %s and %s", v.PV, v.Server.Name, v.Export.Server, reps[0].Pod, reps[1].Pod)
	return v
}

// checkDelete deletes the WordPress claim, then its Deployment, and checks that the
// volume's objects and mounts all go while the second volume keeps serving; then
// the same for the second volume.
func checkDelete(t *testing.T, ctx context.Context, s *demo.Stack, first, second *demo.Volume) {
	c := s.Client
	ns := demo.WordPressNamespace
	if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, demo.WordPressClaim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The claim's protection holds it while a pod uses it, and the pod keeps its mount.
	pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, demo.WordPressClaim, metav1.GetOptions{})
	if err != nil || pvc.DeletionTimestamp == nil {
		t.Fatalf("claim in use after its deletion: %v, %v; want it kept, Terminating, while its pod uses it", pvc, err)
	}
	if err := c.AppsV1().Deployments(ns).Delete(ctx, demo.WordPressDeployment, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ctx, s, first)

	uploads, err := s.WaitReplicas(ctx, ns, "app=uploads", second.Handle, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SeesFile(uploads[0], "2026/11/photo.jpg", []byte("not really a JPEG")); err != nil {
		t.Errorf("the second volume stopped serving when the first was deleted: %v", err)
	}
	if err := c.AppsV1().Deployments(ns).Delete(ctx, "uploads", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "uploads", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ctx, s, second)
	if snap := s.Kubelet.Snapshot(); len(snap.Mounts) != 0 || len(snap.Staged) != 0 {
		t.Errorf("the kubelet still has mounts: %+v, staged %v", snap.Mounts, snap.Staged)
	}
}

// waitGone waits until every object of the volume is gone and the kubelet has
// unmounted it, then checks every node's mount table.
func waitGone(t *testing.T, ctx context.Context, s *demo.Stack, v *demo.Volume) {
	t.Helper()
	if _, err := s.WaitUnmounted(ctx, v.Handle, nil); err != nil {
		t.Fatalf("volume %s still mounted after its pods went: %v", v.Handle, err)
	}
	checkMounts(t, s, v, nil)
	var left string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, demo.WaitLimit, true, func(ctx context.Context) (bool, error) {
		left = objectsLeft(ctx, s, v)
		return left == "", nil
	})
	if err != nil {
		t.Fatalf("volume %s: still there after its claim was deleted: %s: %v", v.Handle, left, err)
	}
	t.Logf("volume %s: claim, PV, backend PVC, server Deployment and pods, Service and every mount are gone", v.Handle)
}

// objectsLeft names the volume's objects that still exist, "" when none does.
func objectsLeft(ctx context.Context, s *demo.Stack, v *demo.Volume) string {
	c := s.Client
	ns, name, _ := strings.Cut(v.Claim, "/")
	var left []string
	if _, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		left = append(left, "claim "+v.Claim)
	}
	if _, err := c.CoreV1().PersistentVolumes().Get(ctx, v.PV, metav1.GetOptions{}); err == nil {
		left = append(left, "PV "+v.PV)
	}
	sel := metav1.ListOptions{LabelSelector: volume.LabelVolumeID + "=" + v.Handle}
	if l, err := c.CoreV1().PersistentVolumeClaims(demo.DriverNamespace).List(ctx, sel); err != nil || len(l.Items) > 0 {
		left = append(left, fmt.Sprintf("backend PVCs (%v)", err))
	}
	if l, err := c.AppsV1().Deployments(demo.DriverNamespace).List(ctx, sel); err != nil || len(l.Items) > 0 {
		left = append(left, fmt.Sprintf("server Deployments (%v)", err))
	}
	if l, err := c.CoreV1().Pods(demo.DriverNamespace).List(ctx, sel); err != nil || len(l.Items) > 0 {
		left = append(left, fmt.Sprintf("server pods (%v)", err))
	}
	if l, err := c.CoreV1().Services(demo.DriverNamespace).List(ctx, sel); err != nil || len(l.Items) > 0 {
		left = append(left, fmt.Sprintf("Services (%v)", err))
	}
	return strings.Join(left, ", ")
}

// stopAndCheckNothingLeft stops the stack as the demo does and checks that no
// process, mount or etcd directory is left.
func stopAndCheckNothingLeft(t *testing.T, s *demo.Stack, st *demo.State, dir string) {
	if err := s.Down(); err != nil {
		t.Errorf("stopping the stack: %v", err)
	}
	if left := st.Leftovers(); len(left) > 0 {
		t.Errorf("left after stopping: %s", strings.Join(left, ", "))
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mountinfo), dir) {
		t.Errorf("mounts under %s left in the host's mount table", dir)
	}
	if err := st.Release(t.Failed()); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("logs kept in %s", dir)
	} else if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still exists (%v)", dir, err)
	}
}
