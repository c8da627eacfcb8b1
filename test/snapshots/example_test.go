package snapshots

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	crdv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// TestWordPressExampleBackupAndRestore follows the WordPress example's README, "Back
// up and restore": its backup/snapshot.yaml snapshots the shared volume
// wordpress-html, a plugin update then breaks a file, and the volume its
// backup/restore.yaml restores holds the plugin as it was, read through a pod on
// another node.
func TestWordPressExampleBackupAndRestore(t *testing.T) {
	e := setup(t)
	ctx := ctxFor(t, 10*time.Minute)
	const ns = "wordpress"
	if err := e.cluster.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	html := e.createPVCIn(t, ns, "wordpress-html", pvnfsClass, nil)
	html = e.waitBound(t, html)
	wp := e.startPod(t, "wordpress-0", nodeA, html)
	const plugin = "wp-content/plugins/classic-editor/classic-editor.php"
	good := []byte("<?php\n/* Plugin Name: Classic Editor, Version: 1.6.7 */\n")
	e.write(t, wp, plugin, good)

	e.applyExample(t, ctx, "snapshot.yaml")
	t.Cleanup(func() {
		_ = e.backend.Snapshots.SnapshotV1().VolumeSnapshots(ns).Delete(context.Background(), "wordpress-html-backup", metav1.DeleteOptions{})
	})
	e.waitSnapshot(t, ctx, &crdv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wordpress-html-backup"}},
		func(vs *crdv1.VolumeSnapshot) bool {
			return vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse
		})
	e.write(t, wp, plugin, []byte("<?php syntax error from a broken update"))

	e.applyExample(t, ctx, "restore.yaml")
	restored := e.waitBound(t, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wordpress-html-restored"}})
	reader := e.startPod(t, "wordpress-restored-0", nodeB, restored)
	e.expectFiles(t, reader, map[string][]byte{plugin: good})
	e.checkNoForbidden(t)
}

// applyExample applies a file of the WordPress example's backup directory as its
// README does.
func (e *env) applyExample(t testing.TB, ctx context.Context, file string) {
	t.Helper()
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "deploy", "examples", "wordpress", "backup", file)
	if out, err := exec.CommandContext(ctx, e.cluster.Tools.Kubectl, "--kubeconfig="+e.cluster.Kubeconfig, "apply", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", path, err, out)
	}
}
