package snapshots

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// chartAccount is the controller's ServiceAccount as the chart names it for the
// release "pvnfs".
const chartAccount = "pvnfs-controller"

// chartIdentity installs the chart's ServiceAccount and RBAC of the controller pod
// with snapshots.enabled, and returns a kubeconfig holding a token of that account:
// the pvnfs controller and its sidecars run with exactly the rights the chart gives
// them, so the snapshot tests prove those rights sufficient.
func (e *env) chartIdentity(ctx context.Context) (string, error) {
	tools, err := localcluster.InstallTools("helm")
	if err != nil {
		return "", err
	}
	if tools.Helm == "" {
		return "", fmt.Errorf("helm is missing after test/tools/install.sh helm")
	}
	root, err := localcluster.RepoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	args := []string{"template", "pvnfs", filepath.Join(root, "deploy", "charts", "pvnfs"), "--namespace", namespace,
		"--set", "namespace.name=" + namespace + ",snapshots.enabled=true,networkPolicy.enabled=false,nfsClients.restrictExports=false"}
	for _, t := range []string{"serviceaccounts", "rbac-controller", "rbac-provisioner", "rbac-snapshotter", "rbac-leader-election"} {
		args = append(args, "--show-only", "templates/"+t+".yaml")
	}
	rendered, err := exec.CommandContext(ctx, tools.Helm, args...).Output()
	if err != nil {
		return "", fmt.Errorf("helm %s: %w", strings.Join(args, " "), err)
	}
	file := filepath.Join(e.dir, "chart-rbac.yaml")
	if err := os.WriteFile(file, rendered, 0o644); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, e.cluster.Tools.Kubectl, "--kubeconfig="+e.cluster.Kubeconfig, "apply", "-f", file).CombinedOutput(); err != nil {
		return "", fmt.Errorf("kubectl apply -f %s: %w\n%s", file, err, out)
	}
	return e.cluster.ServiceAccountKubeconfig(ctx, e.dir, namespace, chartAccount)
}

// checkNoForbidden fails t if the API server refused any request of pvnfs-csi or its
// sidecars: the chart's RBAC must cover everything they do, including what they only
// log when it fails (events).
func (e *env) checkNoForbidden(t testing.TB) {
	t.Helper()
	for _, log := range []string{"controller.log", "csi-provisioner.log", "csi-snapshotter.log"} {
		b, err := os.ReadFile(filepath.Join(e.dir, "controller", log))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "is forbidden: User") { // an RBAC denial
				t.Errorf("%s: refused by the chart's RBAC: %s", log, line)
			}
		}
	}
}
