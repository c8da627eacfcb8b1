package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pvnfs/pvnfs/pkg/podutil"
)

const exampleDir = "deploy/examples/wordpress"

// TestControlPlaneWordPressExample applies the WordPress example as its README does
// (generate-secrets.sh, kubectl apply -k) to a copy of it, and follows the README's
// scaling step: the shared volume is provisioned by pvnfs through the chart's
// StorageClass, MariaDB gets its ReadWriteOnce volume, and raising the autoscaler's
// minimum brings WordPress from 1 to 10 replicas over the nodes, all mounting the one
// claim. (The plugin check of the README needs real containers and NFS.)
func TestControlPlaneWordPressExample(t *testing.T) {
	e := installed(t)
	if e.kubectl == "" {
		missing(t, "kubectl is not available (test/tools/install.sh kube)")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		missing(t, "generate-secrets.sh needs openssl")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "wordpress")
	if out, err := exec.Command("cp", "-r", repoPath(t, exampleDir), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying the example: %v\n%s", err, out)
	}
	if out, err := exec.Command("bash", filepath.Join(dir, "generate-secrets.sh")).CombinedOutput(); err != nil {
		t.Fatalf("generate-secrets.sh: %v\n%s", err, out)
	}
	keys, err := os.ReadFile(filepath.Join(dir, "secrets", "wordpress-keys.env"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(keys), "WORDPRESS_"); n != 8 {
		t.Fatalf("generate-secrets.sh wrote %d WordPress keys and salts, want 8", n)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(e.kubectl, append([]string{"--kubeconfig", e.cluster.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kubectl("apply", "-k", dir)
	t.Cleanup(func() {
		_ = exec.Command(e.kubectl, "--kubeconfig", e.cluster.Kubeconfig, "delete", "-k", dir, "--wait=false").Run()
	})

	const ns = "wordpress"
	pvc := waitBound(t, e, ns, "wordpress-html")
	pv, err := e.cluster.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != "nfs.pvnfs.io" {
		t.Fatalf("wordpress-html is not a pvnfs volume: %+v", pv.Spec.PersistentVolumeSource)
	}
	waitBound(t, e, ns, "data-mariadb-0")
	waitReady(t, e, ns, "app.kubernetes.io/name=mariadb", 1)
	waitReady(t, e, ns, "app.kubernetes.io/name=wordpress", 1)

	// README, "Scale from 1 to 10 replicas".
	if _, err := e.cluster.Client.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(ctx, "wordpress", types.MergePatchType,
		[]byte(`{"spec":{"minReplicas":10}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := waitReady(t, e, ns, "app.kubernetes.io/name=wordpress", 10)
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
		claim := ""
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				claim = v.PersistentVolumeClaim.ClaimName
			}
		}
		if claim != "wordpress-html" {
			t.Errorf("pod %s mounts claim %q, want wordpress-html", p.Name, claim)
		}
	}
	if len(nodes) < 2 {
		t.Errorf("10 replicas on %d node(s): the spread constraint should use every node", len(nodes))
	}
}

// waitReady waits until exactly n pods matching selector are Running and Ready.
func waitReady(t testing.TB, e *env, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	why, err := poll(context.Background(), waitLong, func(ctx context.Context) (bool, string, error) {
		pods, err := e.cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, "", err
		}
		ready = ready[:0]
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && podutil.Ready(&p) {
				ready = append(ready, p)
			}
		}
		return len(ready) == n, fmt.Sprintf("%d of %d pods (%s) Running and Ready, %d in all", len(ready), n, selector, len(pods.Items)), nil
	})
	if err != nil {
		t.Fatalf("%s: %v", why, err)
	}
	return ready
}
