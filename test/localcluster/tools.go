package localcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Tools are the paths of the binaries the cluster runs.
type Tools struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kubectl, Kwok string
	// Provisioner and Resizer are the csi-provisioner and csi-resizer sidecars, Helm
	// the helm CLI; empty when not asked for.
	Provisioner, Resizer, Helm string
	// SnapshotController, Snapshotter (the csi-snapshotter sidecar) and SnapshotCRDs
	// (a directory of the snapshot CRDs' manifests) come from external-snapshotter;
	// empty when not asked for ("snapshotter").
	SnapshotController, Snapshotter, SnapshotCRDs string
	// KubeVersion is the Kubernetes version of the control plane.
	KubeVersion string
}

// RepoRoot returns the root of the pvnfs checkout the caller runs in.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/pvnfs/pvnfs\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the pvnfs repository (no go.mod of github.com/pvnfs/pvnfs above the working directory)")
		}
		dir = parent
	}
}

// InstallTools runs test/tools/install.sh for the given tools (apt, kube, kwok,
// provisioner, snapshotter, helm), which builds what is missing and returns at once otherwise,
// and returns the paths of all tools installed so far.
func InstallTools(what ...string) (Tools, error) {
	root, err := RepoRoot()
	if err != nil {
		return Tools{}, err
	}
	script := filepath.Join(root, "test", "tools", "install.sh")
	if len(what) > 0 {
		cmd := exec.Command("bash", append([]string{script}, what...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return Tools{}, fmt.Errorf("test/tools/install.sh %s: %v\n%s", strings.Join(what, " "), err, out.String())
		}
	}
	out, err := exec.Command("bash", "-c", `. "$1" && printf '%s\n' "$PVNFS_TOOLS_DIR" "$KUBE_VERSION" "$KWOK_VERSION" "$PROVISIONER_VERSION" "$HELM_VERSION" "$RESIZER_VERSION" "$SNAPSHOTTER_VERSION"`,
		"versions", filepath.Join(root, "test", "tools", "versions.sh")).Output()
	if err != nil {
		return Tools{}, fmt.Errorf("reading test/tools/versions.sh: %w", err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(f) != 7 {
		return Tools{}, fmt.Errorf("test/tools/versions.sh printed %q", out)
	}
	dir, kube, kwok, prov, helm, resizer, snap := f[0], f[1], f[2], f[3], f[4], f[5], f[6]
	k := filepath.Join(dir, "kubernetes-"+kube)
	t := Tools{
		Etcd:              "/usr/bin/etcd",
		APIServer:         filepath.Join(k, "kube-apiserver"),
		ControllerManager: filepath.Join(k, "kube-controller-manager"),
		Scheduler:         filepath.Join(k, "kube-scheduler"),
		Kubectl:           filepath.Join(k, "kubectl"),
		Kwok:              filepath.Join(dir, "kwok-"+kwok, "kwok"),
		Provisioner:       filepath.Join(dir, "external-provisioner-"+prov, "csi-provisioner"),
		Resizer:           filepath.Join(dir, "external-resizer-"+resizer, "csi-resizer"),
		Helm:              filepath.Join(dir, "helm-"+helm, "helm"),
		KubeVersion:       kube,
	}
	snapDir := filepath.Join(dir, "external-snapshotter-"+snap)
	t.SnapshotController = filepath.Join(snapDir, "snapshot-controller")
	t.Snapshotter = filepath.Join(snapDir, "csi-snapshotter")
	t.SnapshotCRDs = filepath.Join(snapDir, "crd")
	for _, p := range []*string{&t.Provisioner, &t.Resizer, &t.Helm, &t.SnapshotController, &t.Snapshotter, &t.SnapshotCRDs} {
		if _, err := os.Stat(*p); err != nil {
			*p = ""
		}
	}
	for _, p := range []string{t.Etcd, t.APIServer, t.ControllerManager, t.Scheduler, t.Kwok} {
		if _, err := os.Stat(p); err != nil {
			return t, fmt.Errorf("%s is missing: run `make tools` (test/tools/install.sh)", p)
		}
	}
	return t, nil
}
