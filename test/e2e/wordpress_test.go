//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	wpNS       = "wordpress"
	wpClaim    = "wordpress-html"
	wpSelector = "app.kubernetes.io/name=wordpress"
	wpRoot     = "/var/www/html"
	pluginFile = wpRoot + "/wp-content/plugins/hello-pvnfs/hello.php"
	replicas   = 6
)

// pod is a WordPress replica and its node.
type pod struct{ name, node string }

// TestKindWordPressSharesOneVolumeAndSurvivesServerLoss follows the WordPress
// example's README on a real cluster: apply it, scale it to six replicas through its
// autoscaler, install a plugin through one replica and read it through all, check
// that each node mounts the volume once (one NFS mount, a bind mount per pod), delete
// the volume's NFS server pod and check that writes resume and nothing was lost, and
// finally delete the example and check that the volume's objects go.
func TestKindWordPressSharesOneVolumeAndSurvivesServerLoss(t *testing.T) {
	c := suite
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()

	dir := filepath.Join(c.dir, "wordpress")
	if out, err := exec.CommandContext(ctx, "cp", "-r", filepath.Join(c.root, "deploy/examples/wordpress"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying the example: %v\n%s", err, out)
	}
	if _, err := run(ctx, dir, "bash", "generate-secrets.sh"); err != nil {
		t.Fatal(err)
	}
	kubectl(t, ctx, "apply", "-k", dir)
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer ccancel()
			_, _ = c.kubectl(cctx, "delete", "-k", dir, "--wait=true", "--timeout=10m")
		}
	})

	kubectl(t, ctx, "-n", wpNS, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/"+wpClaim, "--timeout=5m")
	pv := kubectl(t, ctx, "-n", wpNS, "get", "pvc", wpClaim, "-o", "jsonpath={.spec.volumeName}")
	handle := kubectl(t, ctx, "get", "pv", pv, "-o", "jsonpath={.spec.csi.volumeHandle}")
	server := kubectl(t, ctx, "get", "pv", pv, "-o", "jsonpath={.spec.csi.volumeAttributes.server}")
	t.Logf("claim %s bound to %s, NFS server at %s", wpClaim, pv, server)
	kubectl(t, ctx, "-n", wpNS, "rollout", "status", "statefulset/mariadb", "--timeout=10m")
	kubectl(t, ctx, "-n", wpNS, "rollout", "status", "deployment/wordpress", "--timeout=10m")

	// README, "Scale from 1 to 10 replicas": the autoscaler owns the count.
	kubectl(t, ctx, "-n", wpNS, "patch", "hpa", "wordpress", "--type", "merge", "-p", fmt.Sprintf(`{"spec":{"minReplicas":%d}}`, replicas))
	poll(t, ctx, 10*time.Minute, func() (bool, string) {
		ready, _ := c.kubectl(ctx, "-n", wpNS, "get", "deployment", "wordpress", "-o", "jsonpath={.status.readyReplicas}")
		return strings.TrimSpace(ready) == fmt.Sprint(replicas), fmt.Sprintf("%s of %d replicas ready", ready, replicas)
	})
	pods := wordpressPods(t, ctx)
	if nodes := nodesOf(pods); len(nodes) < 2 {
		t.Fatalf("%d replicas on %d node(s); the example spreads them over the workers", len(pods), len(nodes))
	}

	t.Run("a plugin installed through one replica is in all", func(t *testing.T) {
		content := fmt.Sprintf("<?php /* Plugin Name: Hello pvnfs; installed through %s on %s */", pods[0].name, pods[0].node)
		inPod(t, ctx, pods[0], `set -e; mkdir -p "$(dirname "$2")"; printf '%s' "$1" > "$2"; chown -R www-data:www-data "$(dirname "$2")"`, content, pluginFile)
		for _, p := range pods {
			if got := inPod(t, ctx, p, `cat "$1"`, pluginFile); got != content {
				t.Errorf("%s on %s reads %q, want %q", p.name, p.node, got, content)
			}
		}
	})

	t.Run("each node mounts the volume once and binds it into its pods", func(t *testing.T) {
		checkNodeMounts(t, ctx, server, pods)
	})

	t.Run("writes resume after the server pod is deleted", func(t *testing.T) {
		sel := volumeIDKey + "=" + handle
		old := kubectl(t, ctx, "-n", driverNS, "get", "pods", "-l", sel, "-o", "jsonpath={.items[0].metadata.name}")
		kubectl(t, ctx, "-n", driverNS, "delete", "pod", old, "--wait=false")
		start := time.Now()
		stamp := fmt.Sprintf("written after %s was deleted", old)
		// The mount is hard: the write waits for the new server instead of failing.
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
		defer wcancel()
		if _, err := suite.kubectl(wctx, "-n", wpNS, "exec", pods[0].name, "-c", "wordpress", "--",
			"sh", "-c", `printf '%s' "$1" > "$2"`, "sh", stamp, wpRoot+"/wp-content/after-failover.txt"); err != nil {
			t.Fatalf("write through %s after deleting the server pod: %v", pods[0].name, err)
		}
		t.Logf("a write through %s completed %v after the server pod was deleted", pods[0].name, time.Since(start).Round(time.Second))
		if ip := kubectl(t, ctx, "-n", driverNS, "get", "svc", "-l", sel, "-o", "jsonpath={.items[0].spec.clusterIP}"); ip != server {
			t.Errorf("the volume's Service has ClusterIP %s after the failover, want %s (what every node mounted)", ip, server)
		}
		now := kubectl(t, ctx, "-n", driverNS, "get", "pods", "-l", sel, "-o", "jsonpath={.items[*].metadata.name}")
		if now == "" || strings.Contains(now, old) {
			t.Errorf("server pods after the failover: %q, want a new one instead of %s", now, old)
		}
		for _, p := range pods {
			if got := inPod(t, ctx, p, `cat "$1"`, wpRoot+"/wp-content/after-failover.txt"); got != stamp {
				t.Errorf("%s on %s reads %q after the failover, want %q", p.name, p.node, got, stamp)
			}
			if got := inPod(t, ctx, p, `test -s "$1" && echo present`, pluginFile); got != "present" {
				t.Errorf("%s on %s lost the plugin in the failover", p.name, p.node)
			}
		}
	})

	t.Run("deleting the example removes the volume's objects", func(t *testing.T) {
		kubectl(t, ctx, "delete", "-k", dir, "--wait=true", "--timeout=10m")
		deleted = true
		poll(t, ctx, 5*time.Minute, func() (bool, string) {
			pvLeft, _ := suite.kubectl(ctx, "get", "pv", pv, "--ignore-not-found", "-o", "name")
			objs, _ := suite.kubectl(ctx, "-n", driverNS, "get", "deployments,pods,services,pvc", "-l", volumeIDKey+"="+handle, "-o", "name")
			left := strings.TrimSpace(pvLeft + "\n" + objs)
			return left == "", "left: " + strings.ReplaceAll(left, "\n", ", ")
		})
	})
}

// checkNodeMounts reads each node's mount table through its pvnfs node plugin (host
// network, kubelet's directory with Bidirectional propagation) and counts the NFS
// mounts of the volume: one in kubelet's plugins directory (NodeStage) and one in
// each of the node's WordPress pods' directories (NodePublish).
func checkNodeMounts(t *testing.T, ctx context.Context, server string, pods []pod) {
	plugins := map[string]string{} // node -> node plugin pod
	out := kubectl(t, ctx, "-n", driverNS, "get", "pods", "-l", "app.kubernetes.io/component=node",
		"-o", `jsonpath={range .items[*]}{.spec.nodeName} {.metadata.name}{"\n"}{end}`)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			plugins[f[0]] = f[1]
		}
	}
	perNode := map[string]int{}
	for _, p := range pods {
		perNode[p.node]++
	}
	source := server + ":/data/export"
	for node, want := range perNode {
		plugin, ok := plugins[node]
		if !ok {
			t.Errorf("no pvnfs node plugin on %s", node)
			continue
		}
		table := kubectl(t, ctx, "-n", driverNS, "exec", plugin, "-c", "pvnfs-csi", "--", "cat", "/proc/self/mountinfo")
		staging, bind := 0, 0
		for _, line := range strings.Split(table, "\n") {
			// <id> <parent> <dev> <root> <mount point> <options> [optional...] - <type> <source> <super options>
			pre, post, ok := strings.Cut(line, " - ")
			f, g := strings.Fields(pre), strings.Fields(post)
			if !ok || len(f) < 5 || len(g) < 2 || !strings.HasPrefix(g[0], "nfs") || g[1] != source {
				continue
			}
			switch {
			case strings.Contains(f[4], "/plugins/kubernetes.io/csi/"):
				staging++
			case strings.Contains(f[4], "/pods/"):
				bind++
			}
		}
		if staging != 1 || bind != want {
			t.Errorf("%s: %d NFS mounts of %s in kubelet's plugins directory and %d in pods' directories; want 1 and %d (its WordPress pods)",
				node, staging, source, bind, want)
		}
	}
}

// wordpressPods lists the running WordPress replicas with their nodes.
func wordpressPods(t *testing.T, ctx context.Context) []pod {
	t.Helper()
	out := kubectl(t, ctx, "-n", wpNS, "get", "pods", "-l", wpSelector, "--field-selector=status.phase=Running",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{"\n"}{end}`)
	var pods []pod
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 { // a third field: being deleted
			pods = append(pods, pod{f[0], f[1]})
		}
	}
	if len(pods) != replicas {
		t.Fatalf("%d running WordPress pods, want %d:\n%s", len(pods), replicas, out)
	}
	return pods
}

func nodesOf(pods []pod) map[string]bool {
	out := map[string]bool{}
	for _, p := range pods {
		out[p.node] = true
	}
	return out
}

// kubectl runs kubectl and fails the test on error; it returns the trimmed output.
func kubectl(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := suite.kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// inPod runs a shell script in a WordPress pod's container, with args as $1...; it
// returns the trimmed output.
func inPod(t *testing.T, ctx context.Context, p pod, script string, args ...string) string {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return kubectl(t, cctx, append([]string{"-n", wpNS, "exec", p.name, "-c", "wordpress", "--", "sh", "-c", script, "sh"}, args...)...)
}

// poll checks cond every 5 s until it holds, failing the test with cond's last
// explanation when timeout passes.
func poll(t *testing.T, ctx context.Context, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, why := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s after %v", why, timeout)
		case <-time.After(5 * time.Second):
		}
	}
}
