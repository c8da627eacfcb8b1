package deploy

// The chart's NetworkPolicy on the volumes' NFS servers: rendered (helm only) and
// installed (against the real API server, whose label selection decides which pods
// a CNI applies it to).

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/harness"
)

const policyName = releaseName + "-nfs-servers"

// checkPolicyRules checks the policy's two ingress rules: NFS and the health port,
// the ports pvnfs's server pods declare, from the nodes' networks.
func checkPolicyRules(t *testing.T, np *networkingv1.NetworkPolicy, cidrs []string) {
	t.Helper()
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Ingress) != 2 {
		t.Fatalf("policy types %v, %d ingress rules: want Ingress with two rules", np.Spec.PolicyTypes, len(np.Spec.Ingress))
	}
	for i, want := range []int32{volume.NFSPort, serverconfig.DefaultHealthPort} {
		r := np.Spec.Ingress[i]
		if len(r.Ports) != 1 || r.Ports[0].Port == nil || r.Ports[0].Port.IntVal != want || *r.Ports[0].Protocol != corev1.ProtocolTCP {
			t.Errorf("rule %d ports %+v, want TCP %d", i, r.Ports, want)
		}
		var got []string
		for _, p := range r.From {
			if p.IPBlock != nil {
				got = append(got, p.IPBlock.CIDR)
			}
		}
		if !slices.Equal(got, cidrs) {
			t.Errorf("rule %d (port %d) admits the networks %v, want nfsClients.cidrs %v", i, want, got, cidrs)
		}
	}
}

// TestChartNetworkPolicy: the policy and --nfs-clients follow the values, and the
// policy's selector matches the labels pvnfs-csi gives a server pod and none of the
// chart's own pods or the volume's other objects.
func TestChartNetworkPolicy(t *testing.T) {
	helm := helmBinary(t)
	objs := decodeObjects(t, render(t, helm))
	np := typed[networkingv1.NetworkPolicy](t, find(t, objs, "NetworkPolicy", policyName))
	if np.Namespace != driverNamespace {
		t.Errorf("policy in namespace %q, want %s", np.Namespace, driverNamespace)
	}
	checkPolicyRules(t, np, []string{nodeCIDR})
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() {
		t.Fatalf("pod selector %v: %v (an empty selector would select every pod)", np.Spec.PodSelector, err)
	}
	if server := volume.Labels("pvc-1", volume.ComponentServer); !sel.Matches(labels.Set(server)) {
		t.Errorf("the selector %s does not match a server pod's labels %v", sel, server)
	}
	for _, c := range []string{volume.ComponentBackend, volume.ComponentService} {
		if l := volume.Labels("pvc-1", c); sel.Matches(labels.Set(l)) {
			t.Errorf("the selector %s matches a volume's %s labels %v", sel, c, l)
		}
	}
	chartPods := map[string]map[string]string{
		"controller": typed[appsv1.Deployment](t, find(t, objs, "Deployment", releaseName+"-controller")).Spec.Template.Labels,
		"node":       typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", releaseName+"-node")).Spec.Template.Labels,
	}
	for name, l := range chartPods {
		if sel.Matches(labels.Set(l)) {
			t.Errorf("the selector %s matches the %s pods %v", sel, name, l)
		}
	}
	nfsClients := func(objs []*unstructured.Unstructured) string {
		for _, a := range typed[appsv1.Deployment](t, find(t, objs, "Deployment", releaseName+"-controller")).Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--nfs-clients="); ok {
				return v
			}
		}
		return ""
	}
	if got := nfsClients(objs); got != nodeCIDR {
		t.Errorf("pvnfs-csi --nfs-clients=%q, want %s", got, nodeCIDR)
	}

	t.Run("exports unrestricted", func(t *testing.T) {
		objs := decodeObjects(t, render(t, helm, "--set", "nfsClients.restrictExports=false"))
		if got := nfsClients(objs); got != "" {
			t.Errorf("pvnfs-csi --nfs-clients=%q with restrictExports false", got)
		}
		find(t, objs, "NetworkPolicy", policyName)
	})
	t.Run("no policy", func(t *testing.T) {
		for _, o := range decodeObjects(t, render(t, helm, "--set", "networkPolicy.enabled=false")) {
			if o.GetKind() == "NetworkPolicy" {
				t.Errorf("networkPolicy.enabled=false rendered %s", o.GetName())
			}
		}
	})
	t.Run("widened", func(t *testing.T) {
		objs := decodeObjects(t, render(t, helm, "--set", "nfsClients.cidrs={10.0.0.0/16,fd00:10::/64}",
			"--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring"))
		np := typed[networkingv1.NetworkPolicy](t, find(t, objs, "NetworkPolicy", policyName))
		checkPolicyRules(t, np, []string{"10.0.0.0/16", "fd00:10::/64"})
		if from := np.Spec.Ingress[1].From; len(from) != 3 || from[2].NamespaceSelector == nil || from[2].NamespaceSelector.MatchLabels["name"] != "monitoring" {
			t.Errorf("metrics rule peers %+v: want the two networks and the monitoring namespace", from)
		}
	})
}

// TestControlPlaneNetworkPolicySelectsServerPods provisions volumes through the
// chart's controller and asks the API server which pods the installed policy's
// selector picks: exactly the server pods of every volume (found through their
// owners, not their labels), not the controller's or the node plugin's pods.
func TestControlPlaneNetworkPolicySelectsServerPods(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	k := e.cluster.Client
	np, err := k.NetworkingV1().NetworkPolicies(driverNamespace).Get(ctx, policyName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's NetworkPolicy: %v", err)
	}
	checkPolicyRules(t, np, []string{nodeCIDR})

	sc := exampleClass(t, e, "pvnfs-policy", backendClass)
	ns := appNamespace(t, e)
	var ids []string
	for _, name := range []string{"web", "uploads"} {
		if _, err := k.CoreV1().PersistentVolumeClaims(ns).Create(ctx, harness.RWXClaim(ns, name, sc.Name, "1Gi"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"web", "uploads"} {
		ids = append(ids, waitBound(t, e, ns, name).Spec.VolumeName)
	}

	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	selectedList, err := k.CoreV1().Pods(driverNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		t.Fatal(err)
	}
	all, err := k.CoreV1().Pods(driverNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	servers, others, err := serverPodsByOwner(ctx, e, all.Items)
	if err != nil {
		t.Fatal(err)
	}
	var selected []string
	for _, p := range selectedList.Items {
		selected = append(selected, p.Name)
	}
	sort.Strings(selected)
	if !slices.Equal(selected, servers) {
		t.Errorf("the policy selects %v; the server pods are %v", selected, servers)
	}
	for _, id := range ids {
		obj := volume.ObjectName(id)
		if !slices.ContainsFunc(selected, func(p string) bool { return strings.HasPrefix(p, obj+"-") }) {
			t.Errorf("no selected pod belongs to volume %s (%s)", id, obj)
		}
	}
	// The other pods in the namespace are the chart's: the selection is meaningful
	// only if there are some, and none of them may be selected.
	if len(others) == 0 {
		t.Errorf("no pod besides the servers in %s: the controller and node pods should be there", driverNamespace)
	}
	for _, p := range others {
		if slices.Contains(selected, p) {
			t.Errorf("the policy selects %s, which is not a server pod", p)
		}
	}
	// The rule's ports are the ones the real server pods declare.
	for _, p := range selectedList.Items {
		declared := map[string]int32{}
		for _, port := range p.Spec.Containers[0].Ports {
			declared[port.Name] = port.ContainerPort
		}
		if declared[volume.NFSPortName] != np.Spec.Ingress[0].Ports[0].Port.IntVal || declared[volume.HealthPortName] != np.Spec.Ingress[1].Ports[0].Port.IntVal {
			t.Errorf("pod %s declares %v; the policy opens %d and %d", p.Name, declared,
				np.Spec.Ingress[0].Ports[0].Port.IntVal, np.Spec.Ingress[1].Ports[0].Port.IntVal)
		}
	}
	t.Logf("selected %d server pods; not selected: %v", len(selected), others)
}

// serverPodsByOwner splits pods into the server pods of pvnfs volumes (a pod of a
// ReplicaSet of a Deployment that pvnfs-csi created for a volume, as its
// pvnfs.io/volume-name annotation says) and the rest, each sorted by name.
func serverPodsByOwner(ctx context.Context, e *env, pods []corev1.Pod) (servers, others []string, err error) {
	k := e.cluster.Client
	for _, p := range pods {
		server := false
		for _, o := range p.OwnerReferences {
			if o.Kind != "ReplicaSet" {
				continue
			}
			rs, err := k.AppsV1().ReplicaSets(p.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, fmt.Errorf("ReplicaSet %s of pod %s: %w", o.Name, p.Name, err)
			}
			for _, ro := range rs.OwnerReferences {
				if ro.Kind != "Deployment" {
					continue
				}
				dep, err := k.AppsV1().Deployments(p.Namespace).Get(ctx, ro.Name, metav1.GetOptions{})
				if err != nil {
					return nil, nil, fmt.Errorf("Deployment %s of pod %s: %w", ro.Name, p.Name, err)
				}
				server = dep.Annotations[volume.AnnotationVolumeName] != ""
			}
		}
		if server {
			servers = append(servers, p.Name)
		} else {
			others = append(others, p.Name)
		}
	}
	sort.Strings(servers)
	sort.Strings(others)
	return servers, others, nil
}
