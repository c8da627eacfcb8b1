package deploy

// Tests against the real local control plane: the chart installed with helm, the
// manifests applied with kubectl, the controller's RBAC, and volumes provisioned by
// the csi-provisioner sidecar and pvnfs-csi running with the chart's ServiceAccount.

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pvnfs/pvnfs/pkg/podutil"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/harness"
)

// TestControlPlaneChartInstall installs the chart with helm and checks that every
// object it renders exists, and that the controller and node pods are scheduled onto
// the simulated nodes and run.
func TestControlPlaneChartInstall(t *testing.T) {
	e := installed(t)
	ctx := context.Background()

	t.Run("every rendered object exists", func(t *testing.T) {
		for _, o := range e.objects {
			m, err := e.mapper.RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
			if err != nil {
				t.Errorf("%s %s: the API server does not serve its kind: %v", o.GetKind(), o.GetName(), err)
				continue
			}
			if _, err := e.dyn.Resource(m.Resource).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{}); err != nil {
				t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
		if n := len(e.objects); n < 19 {
			t.Errorf("the chart rendered only %d objects", n)
		}
	})

	t.Run("namespace allows privileged pods", func(t *testing.T) {
		ns, err := e.cluster.Client.CoreV1().Namespaces().Get(ctx, driverNamespace, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			t.Errorf("pod-security.kubernetes.io/enforce = %q, want privileged", got)
		}
	})

	t.Run("CSIDriver", func(t *testing.T) {
		d, err := e.cluster.Client.StorageV1().CSIDrivers().Get(ctx, volume.DefaultDriverName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s := d.Spec
		if s.AttachRequired == nil || *s.AttachRequired || s.PodInfoOnMount == nil || *s.PodInfoOnMount ||
			s.FSGroupPolicy == nil || *s.FSGroupPolicy != storagev1.NoneFSGroupPolicy ||
			s.RequiresRepublish == nil || !*s.RequiresRepublish {
			t.Errorf("CSIDriver spec: attachRequired %v, podInfoOnMount %v, fsGroupPolicy %v, requiresRepublish %v; want false, false, None, true",
				deref(s.AttachRequired), deref(s.PodInfoOnMount), deref(s.FSGroupPolicy), deref(s.RequiresRepublish))
		}
	})

	t.Run("node plugin on every node", func(t *testing.T) {
		nodes, err := e.cluster.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, n := range nodes.Items {
			want = append(want, n.Name)
		}
		sort.Strings(want)
		why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
			pods, err := runningPods(ctx, e, "node")
			if err != nil {
				return false, "", err
			}
			var on []string
			for _, p := range pods {
				on = append(on, p.Spec.NodeName)
			}
			sort.Strings(on)
			return strings.Join(on, ",") == strings.Join(want, ","), fmt.Sprintf("node plugin Running and Ready on %v, nodes %v", on, want), nil
		})
		if err != nil {
			t.Fatalf("%s: %v", why, err)
		}
		ds, err := e.cluster.Client.AppsV1().DaemonSets(driverNamespace).Get(ctx, releaseName+"-node", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !ds.Spec.Template.Spec.HostNetwork || ds.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("node plugin: hostNetwork %v, dnsPolicy %s", ds.Spec.Template.Spec.HostNetwork, ds.Spec.Template.Spec.DNSPolicy)
		}
	})

	t.Run("controller replicas running", func(t *testing.T) {
		why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
			pods, err := runningPods(ctx, e, "controller")
			if err != nil {
				return false, "", err
			}
			dep, err := e.cluster.Client.AppsV1().Deployments(driverNamespace).Get(ctx, releaseName+"-controller", metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			return len(pods) == 2 && dep.Status.ReadyReplicas == 2,
				fmt.Sprintf("%d controller pods Running and Ready, Deployment ready %d/2", len(pods), dep.Status.ReadyReplicas), nil
		})
		if err != nil {
			t.Fatalf("%s: %v", why, err)
		}
	})
}

// runningPods returns the Running and Ready pods of one of the chart's components.
func runningPods(ctx context.Context, e *env, component string) ([]corev1.Pod, error) {
	sel := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/instance": releaseName, "app.kubernetes.io/component": component})
	pods, err := e.cluster.Client.CoreV1().Pods(driverNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && podutil.Ready(&p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func deref[T any](p *T) any {
	if p == nil {
		return "<unset>"
	}
	return *p
}

// TestControlPlaneKustomizeApplies applies deploy/kubernetes with `kubectl apply -k`
// as a server-side dry run over the installed chart: the API server validates and
// admits every object of the kubectl install path.
func TestControlPlaneKustomizeApplies(t *testing.T) {
	e := installed(t)
	if e.kubectl == "" {
		missing(t, "kubectl is not available (test/tools/install.sh kube)")
	}
	out, err := exec.Command(e.kubectl, "--kubeconfig", e.cluster.Kubeconfig, "apply", "-k", repoPath(t, manifestsDir),
		"--server-side", "--force-conflicts", "--field-manager=pvnfs-test", "--dry-run=server").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -k %s: %v\n%s", manifestsDir, err, out)
	}
	// The plain manifests are the chart without its NetworkPolicy (deploy/generate.sh).
	want := 0
	for _, o := range e.objects {
		if o.GetKind() != "NetworkPolicy" {
			want++
		}
	}
	applied := strings.Count(string(out), "serverside-applied (server dry run)")
	if applied != want {
		t.Errorf("kubectl applied %d objects, the chart has %d besides its NetworkPolicy:\n%s", applied, want, out)
	}
}

// TestControlPlanePodSecurity shows why the namespace carries the privileged label:
// the node plugin's pod is admitted there, and refused by Pod Security admission in a
// namespace at the baseline level.
func TestControlPlanePodSecurity(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	ds := typed[appsv1.DaemonSet](t, find(t, e.objects, "DaemonSet", releaseName+"-node"))
	pod := func(ns, sa string) *corev1.Pod {
		spec := *ds.Spec.Template.Spec.DeepCopy()
		spec.ServiceAccountName = sa
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "psa-", Namespace: ns}, Spec: spec}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := e.cluster.Client.CoreV1().Pods(driverNamespace).Create(ctx, pod(driverNamespace, releaseName+"-node"), dryRun); err != nil {
		t.Errorf("the node plugin's pod is refused in %s: %v", driverNamespace, err)
	}

	baseline := "psa-baseline"
	_, err := e.cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: baseline, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := e.cluster.WaitServiceAccount(ctx, baseline, "default", waitLong); err != nil {
		t.Fatal(err)
	}
	_, err = e.cluster.Client.CoreV1().Pods(baseline).Create(ctx, pod(baseline, "default"), dryRun)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("at Pod Security level baseline the node plugin's pod should be refused by PodSecurity, got %v", err)
	}
}

// TestControlPlaneControllerRBAC asks the API server what the chart's ServiceAccounts
// may do: the controller what pvnfs and its sidecars need and nothing more (never a
// Secret), the node plugin nothing.
func TestControlPlaneControllerRBAC(t *testing.T) {
	e := installed(t)
	controller := "system:serviceaccount:" + driverNamespace + ":" + releaseName + "-controller"
	node := "system:serviceaccount:" + driverNamespace + ":" + releaseName + "-node"
	type attrs = authorizationv1.ResourceAttributes
	for _, tc := range []struct {
		name  string
		user  string
		attrs attrs
		allow bool
	}{
		// pvnfs-csi in the driver's namespace.
		{"create server Deployments", controller, attrs{Namespace: driverNamespace, Verb: "create", Group: "apps", Resource: "deployments"}, true},
		{"update server Deployments", controller, attrs{Namespace: driverNamespace, Verb: "update", Group: "apps", Resource: "deployments"}, true},
		{"create backend PVCs", controller, attrs{Namespace: driverNamespace, Verb: "create", Resource: "persistentvolumeclaims"}, true},
		{"patch backend PVCs", controller, attrs{Namespace: driverNamespace, Verb: "patch", Resource: "persistentvolumeclaims"}, true},
		{"delete Services", controller, attrs{Namespace: driverNamespace, Verb: "delete", Resource: "services"}, true},
		{"watch server pods", controller, attrs{Namespace: driverNamespace, Verb: "watch", Resource: "pods"}, true},
		{"list EndpointSlices", controller, attrs{Namespace: driverNamespace, Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"}, true},
		{"create events in its namespace", controller, attrs{Namespace: driverNamespace, Verb: "create", Resource: "events"}, true},
		{"update its Leases", controller, attrs{Namespace: driverNamespace, Verb: "update", Group: "coordination.k8s.io", Resource: "leases"}, true},
		{"read StorageClasses", controller, attrs{Verb: "list", Group: "storage.k8s.io", Resource: "storageclasses"}, true},
		{"read a CSIDriver (backendAccessMode auto)", controller, attrs{Verb: "get", Group: "storage.k8s.io", Resource: "csidrivers"}, true},
		{"watch PersistentVolumes", controller, attrs{Verb: "watch", Resource: "persistentvolumes"}, true},
		// The sidecars, cluster-wide.
		{"provisioner creates PVs", controller, attrs{Verb: "create", Resource: "persistentvolumes"}, true},
		{"provisioner updates users' PVCs", controller, attrs{Namespace: "default", Verb: "update", Resource: "persistentvolumeclaims"}, true},
		{"provisioner records events on users' PVCs", controller, attrs{Namespace: "default", Verb: "create", Resource: "events"}, true},
		{"resizer patches PVC status", controller, attrs{Namespace: "default", Verb: "patch", Resource: "persistentvolumeclaims", Subresource: "status"}, true},
		// Never.
		{"no Secret in its namespace", controller, attrs{Namespace: driverNamespace, Verb: "get", Resource: "secrets"}, false},
		{"no listing Secrets in its namespace", controller, attrs{Namespace: driverNamespace, Verb: "list", Resource: "secrets"}, false},
		{"no Secret elsewhere", controller, attrs{Namespace: "default", Verb: "get", Resource: "secrets"}, false},
		{"no Secrets cluster-wide", controller, attrs{Verb: "list", Resource: "secrets"}, false},
		{"no Deployments elsewhere", controller, attrs{Namespace: "default", Verb: "create", Group: "apps", Resource: "deployments"}, false},
		{"no Services elsewhere", controller, attrs{Namespace: "default", Verb: "delete", Resource: "services"}, false},
		{"no deleting users' PVCs", controller, attrs{Namespace: "default", Verb: "delete", Resource: "persistentvolumeclaims"}, false},
		{"no creating pods", controller, attrs{Namespace: driverNamespace, Verb: "create", Resource: "pods"}, false},
		{"no exec into pods", controller, attrs{Namespace: driverNamespace, Verb: "create", Resource: "pods", Subresource: "exec"}, false},
		{"no reading pods cluster-wide", controller, attrs{Verb: "list", Resource: "pods"}, false},
		{"no ConfigMaps", controller, attrs{Namespace: driverNamespace, Verb: "get", Resource: "configmaps"}, false},
		{"no Leases elsewhere", controller, attrs{Namespace: "default", Verb: "update", Group: "coordination.k8s.io", Resource: "leases"}, false},
		{"no changing StorageClasses", controller, attrs{Verb: "update", Group: "storage.k8s.io", Resource: "storageclasses"}, false},
		{"no changing CSIDrivers", controller, attrs{Verb: "update", Group: "storage.k8s.io", Resource: "csidrivers"}, false},
		{"no NetworkPolicies", controller, attrs{Namespace: driverNamespace, Verb: "update", Group: "networking.k8s.io", Resource: "networkpolicies"}, false},
		{"no Nodes", controller, attrs{Verb: "list", Resource: "nodes"}, false},
		{"no RBAC", controller, attrs{Namespace: driverNamespace, Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "rolebindings"}, false},
		// The node plugin calls no API.
		{"node plugin: no pods", node, attrs{Namespace: driverNamespace, Verb: "list", Resource: "pods"}, false},
		{"node plugin: no Secrets", node, attrs{Namespace: driverNamespace, Verb: "get", Resource: "secrets"}, false},
		{"node plugin: no PVs", node, attrs{Verb: "get", Resource: "persistentvolumes"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra := tc.attrs
			sar, err := e.cluster.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
				Spec: authorizationv1.SubjectAccessReviewSpec{User: tc.user, ResourceAttributes: &ra,
					Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + driverNamespace, "system:authenticated"}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tc.allow {
				t.Errorf("%s may %s %s/%s (namespace %q): allowed=%v, want %v (%s)", tc.user, ra.Verb, ra.Resource, ra.Subresource, ra.Namespace,
					sar.Status.Allowed, tc.allow, sar.Status.Reason)
			}
		})
	}
}

var appSeq atomic.Int32

// appNamespace creates a namespace for a test's PVCs, deleted at the end.
func appNamespace(t testing.TB, e *env) string {
	t.Helper()
	ctx := context.Background()
	ns := fmt.Sprintf("app-%d", appSeq.Add(1))
	if err := e.cluster.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.cluster.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return ns
}

// exampleClass renders the chart's example StorageClass under another name with
// backendStorageClass set, and creates it.
func exampleClass(t testing.TB, e *env, name, backend string) *storagev1.StorageClass {
	t.Helper()
	return exampleClassWith(t, e, name, backend)
}

// exampleClassWith is exampleClass with more values (--set key=value each).
func exampleClassWith(t testing.TB, e *env, name, backend string, set ...string) *storagev1.StorageClass {
	t.Helper()
	args := []string{"--show-only", "templates/storageclass.yaml",
		"--set", "storageClass.name=" + name, "--set", "storageClass.parameters.backendStorageClass=" + backend}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	raw := render(t, e.helm, args...)
	sc := typed[storagev1.StorageClass](t, decodeObjects(t, raw)[0])
	ctx := context.Background()
	created, err := e.cluster.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = e.cluster.Client.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// waitBound waits until a PVC is Bound and returns it.
func waitBound(t testing.TB, e *env, ns, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	why, err := poll(context.Background(), waitLong, func(ctx context.Context) (bool, string, error) {
		var err error
		pvc, err = e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return pvc.Status.Phase == corev1.ClaimBound, fmt.Sprintf("PVC %s/%s is %s; events: %s", ns, name, pvc.Status.Phase, events(ctx, e, ns, name)), nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", why, err, e.logs())
	}
	return pvc
}

// events lists the events of an object, oldest first.
func events(ctx context.Context, e *env, ns, name string) string {
	evs, err := e.cluster.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, ev := range evs.Items {
		out = append(out, fmt.Sprintf("%s %s (x%d): %s", ev.Type, ev.Reason, ev.Count, ev.Message))
	}
	return strings.Join(out, "; ")
}

// volumeObjects counts the objects of a volume in the driver's namespace by kind,
// straight from the API server.
func volumeObjects(ctx context.Context, e *env, id string) (map[string]int, error) {
	sel := metav1.ListOptions{LabelSelector: volume.LabelVolumeID + "=" + id}
	k := e.cluster.Client
	out := map[string]int{}
	pvcs, err := k.CoreV1().PersistentVolumeClaims(driverNamespace).List(ctx, sel)
	if err != nil {
		return nil, err
	}
	out["backend PVC"] = len(pvcs.Items)
	deps, err := k.AppsV1().Deployments(driverNamespace).List(ctx, sel)
	if err != nil {
		return nil, err
	}
	out["Deployment"] = len(deps.Items)
	rss, err := k.AppsV1().ReplicaSets(driverNamespace).List(ctx, sel)
	if err != nil {
		return nil, err
	}
	out["ReplicaSet"] = len(rss.Items)
	pods, err := k.CoreV1().Pods(driverNamespace).List(ctx, sel)
	if err != nil {
		return nil, err
	}
	out["pod"] = len(pods.Items)
	svcs, err := k.CoreV1().Services(driverNamespace).List(ctx, sel)
	if err != nil {
		return nil, err
	}
	out["Service"] = len(svcs.Items)
	return out, nil
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestControlPlaneProvisionRWX creates a ReadWriteMany PVC of the example
// StorageClass and follows it through the real csi-provisioner and pvnfs-csi to a
// bound PV that names the volume's Service, then deletes it and checks that nothing of
// the volume is left.
func TestControlPlaneProvisionRWX(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	sc := exampleClass(t, e, "pvnfs-e2e", backendClass)
	ns := appNamespace(t, e)
	if _, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, harness.RWXClaim(ns, "shared", sc.Name, "2Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc := waitBound(t, e, ns, "shared")
	pv, err := e.cluster.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	src := pv.Spec.CSI
	if src == nil || src.Driver != volume.DefaultDriverName {
		t.Fatalf("PV %s is not a pvnfs volume: %+v", pv.Name, pv.Spec.PersistentVolumeSource)
	}
	id := src.VolumeHandle
	if _, err := volume.ParseID(id); err != nil || id != pv.Name {
		t.Errorf("volumeHandle %q: want the volume ID pvnfs derives from the PV name %s (%v)", id, pv.Name, err)
	}
	svc, err := e.cluster.Client.CoreV1().Services(driverNamespace).Get(ctx, volume.ObjectName(id), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the volume's Service: %v", err)
	}
	if got := src.VolumeAttributes[volume.ContextServer]; got == "" || got != svc.Spec.ClusterIP {
		t.Errorf("volumeAttributes[%s] = %q, want the Service's ClusterIP %s", volume.ContextServer, got, svc.Spec.ClusterIP)
	}
	if got := src.VolumeAttributes[volume.ContextShare]; got != volume.ExportPath {
		t.Errorf("volumeAttributes[%s] = %q, want %s", volume.ContextShare, got, volume.ExportPath)
	}
	if _, err := volume.ParseContext(src.VolumeAttributes); err != nil {
		t.Errorf("the node plugin would refuse the volume context: %v", err)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.AccessModes[0] != corev1.ReadWriteMany {
		t.Errorf("PV reclaim policy %s, access modes %v", pv.Spec.PersistentVolumeReclaimPolicy, pv.Spec.AccessModes)
	}

	backend, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(driverNamespace).Get(ctx, volume.ObjectName(id), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the volume's backend PVC: %v", err)
	}
	if backend.Spec.StorageClassName == nil || *backend.Spec.StorageClassName != backendClass {
		t.Errorf("backend PVC class %v, want the StorageClass's backendStorageClass %s", deref(backend.Spec.StorageClassName), backendClass)
	}
	// --extra-create-metadata reached pvnfs.
	if backend.Annotations[volume.AnnotationPVCName] != "shared" || backend.Annotations[volume.AnnotationPVCNamespace] != ns || backend.Annotations[volume.AnnotationPVName] != pv.Name {
		t.Errorf("backend PVC annotations %v: want the user's PVC %s/shared and PV %s", backend.Annotations, ns, pv.Name)
	}
	// The server pod runs at the chart's PriorityClass: admission resolved the
	// StorageClass's serverPriorityClassName to its value.
	pods, err := e.cluster.Client.CoreV1().Pods(driverNamespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(volume.Selector(id)).String()})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("server pods of %s: %d, %v", id, len(pods.Items), err)
	}
	if p := pods.Items[0].Spec; p.PriorityClassName != "pvnfs-server" || p.Priority == nil || *p.Priority != 1000000 {
		t.Errorf("server pod priority class %q, priority %v: want pvnfs-server, 1000000", p.PriorityClassName, deref(p.Priority))
	}

	if err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "shared", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		_, err := e.cluster.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err == nil {
			return false, "PV " + pv.Name + " still exists", nil
		}
		if !apierrors.IsNotFound(err) {
			return false, "", err
		}
		left, err := volumeObjects(ctx, e, id)
		if err != nil {
			return false, "", err
		}
		return total(left) == 0, fmt.Sprintf("objects of %s left: %v", id, left), nil
	})
	if err != nil {
		t.Fatalf("after deleting the PVC: %s: %v\n%s", why, err, e.logs())
	}
	e.checkNoForbidden(t)
}

// TestControlPlaneMissingBackendClass creates a PVC whose StorageClass names a backend
// StorageClass that does not exist: it stays Pending, the provisioner's
// ProvisioningFailed event (recorded with the ServiceAccount's events rights) carries
// pvnfs's InvalidArgument message, and pvnfs creates nothing.
func TestControlPlaneMissingBackendClass(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	const missingClass = "no-such-backend"
	sc := exampleClass(t, e, "pvnfs-broken-backend", missingClass)
	ns := appNamespace(t, e)
	pvc, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, harness.RWXClaim(ns, "orphan", sc.Name, "2Gi"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`StorageClass %q does not exist`, missingClass)
	var failed *corev1.Event
	why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		evs, err := e.cluster.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(pvc.UID)).String()})
		if err != nil {
			return false, "", err
		}
		for i, ev := range evs.Items {
			if ev.Reason == "ProvisioningFailed" && strings.Contains(ev.Message, want) {
				failed = &evs.Items[i]
				return true, "", nil
			}
		}
		return false, "events: " + events(ctx, e, ns, "orphan"), nil
	})
	if err != nil {
		t.Fatalf("no ProvisioningFailed event saying %q: %s: %v\n%s", want, why, err, e.logs())
	}
	// The sidecar calls InvalidArgument "infeasible" and retries it only after
	// --retry-interval-max (or when the StorageClass is replaced).
	if !strings.Contains(failed.Message, "InvalidArgument") || !strings.Contains(failed.Message, "backendStorageClass") {
		t.Errorf("event message %q: want pvnfs's InvalidArgument naming backendStorageClass", failed.Message)
	}
	got, err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "orphan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.ClaimPending || got.Spec.VolumeName != "" {
		t.Errorf("PVC is %s bound to %q, want Pending", got.Status.Phase, got.Spec.VolumeName)
	}
	id := "pvc-" + string(pvc.UID)
	left, err := volumeObjects(ctx, e, id)
	if err != nil {
		t.Fatal(err)
	}
	if total(left) != 0 {
		t.Errorf("pvnfs created objects for a volume it refused: %v", left)
	}
	if err := e.cluster.Client.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "orphan", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkNoForbidden(t)
}

// TestControlPlaneLeaderElection checks that the controller ServiceAccount's Lease
// rights suffice: pvnfs-csi (running with the chart's --leader-election) holds the
// reconciler's Lease, and a csi-provisioner started with the chart's leader election
// takes its own.
func TestControlPlaneLeaderElection(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	if err := e.startProvisioner(t, "csi-provisioner-leader", true); err != nil {
		t.Fatal(err)
	}
	// Lease names: csi-lib-utils' sanitized driver name for the sidecar,
	// pvnfs-csi's leaseName for the reconciler.
	want := map[string]string{"nfs-pvnfs-io": "csi-provisioner", "nfs-pvnfs-io-controller": "pvnfs-csi"}
	why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		var missing []string
		for name, who := range want {
			l, err := e.cluster.Client.CoordinationV1().Leases(driverNamespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
				missing = append(missing, fmt.Sprintf("%s's Lease %s (%v)", who, name, err))
			}
		}
		sort.Strings(missing)
		return len(missing) == 0, fmt.Sprintf("not held: %v", missing), nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", why, err, e.logs())
	}
	e.checkNoForbidden(t)
}

// TestControlPlaneHelmUpgrade upgrades the release with a changed value: the
// controller Deployment rolls out again and both replicas run. (The rollout replaces
// only the simulated controller pods; the host processes keep serving.)
func TestControlPlaneHelmUpgrade(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	if _, err := runHelm(t, e.helm, "upgrade", releaseName, repoPath(t, chartDir), "--kubeconfig", e.cluster.Kubeconfig,
		"--namespace", "default", "--reuse-values", "--set", "controller.logLevel=4"); err != nil {
		t.Fatal(err)
	}
	why, err := poll(ctx, waitLong, func(ctx context.Context) (bool, string, error) {
		dep, err := e.cluster.Client.AppsV1().Deployments(driverNamespace).Get(ctx, releaseName+"-controller", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := dep.Status
		return s.ObservedGeneration >= dep.Generation && s.UpdatedReplicas == 2 && s.ReadyReplicas == 2 && s.Replicas == 2,
			fmt.Sprintf("generation %d observed %d, replicas %d updated %d ready %d", dep.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas), nil
	})
	if err != nil {
		t.Fatalf("controller rollout after helm upgrade: %s: %v", why, err)
	}
	dep, _ := e.cluster.Client.AppsV1().Deployments(driverNamespace).Get(ctx, releaseName+"-controller", metav1.GetOptions{})
	if args := container(t, dep.Spec.Template.Spec, "pvnfs-csi").Args; !strings.Contains(strings.Join(args, " "), "--v=4") {
		t.Errorf("pvnfs-csi args after the upgrade: %v", args)
	}
}
