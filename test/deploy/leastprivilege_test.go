package deploy

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/harness"
)

// documentedGaneshaCapabilities reads the capabilities docs/security.md lists as
// the Ganesha server's, so the documentation and the pods cannot drift apart.
func documentedGaneshaCapabilities(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, "docs/security.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "Each capability, and why Ganesha needs it:")
	end := strings.Index(doc, "Left out on purpose")
	if start < 0 || end < start {
		t.Fatal("docs/security.md has no Ganesha capability table between \"Each capability, and why Ganesha needs it:\" and \"Left out on purpose\"")
	}
	var caps []string
	for _, line := range strings.Split(doc[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range regexp.MustCompile("`([A-Z_]+)`").FindAllStringSubmatch(cells[1], -1) {
			caps = append(caps, m[1])
		}
	}
	slices.Sort(caps)
	return caps
}

// TestControlPlaneServerPodsLeastPrivilege provisions a volume of each engine through
// the chart's controller and reads the server pods as the API server admitted them
// (after every admission plugin, the ServiceAccount one included): no service
// account token, seccomp RuntimeDefault, and for Ganesha exactly the capabilities
// docs/security.md lists, a read-only root and no privilege escalation.
func TestControlPlaneServerPodsLeastPrivilege(t *testing.T) {
	e := installed(t)
	ctx := context.Background()
	k := e.cluster.Client
	ns := appNamespace(t, e)
	kernelClass := exampleClass(t, e, "pvnfs-kernel", backendClass)
	ganeshaClass := exampleClassWith(t, e, "pvnfs-ganesha", backendClass, "storageClass.parameters.serverEngine=ganesha")
	claims := map[string]string{"kernel": kernelClass.Name, "ganesha": ganeshaClass.Name}
	for engine, class := range claims {
		if _, err := k.CoreV1().PersistentVolumeClaims(ns).Create(ctx, harness.RWXClaim(ns, engine, class, "1Gi"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantCaps := documentedGaneshaCapabilities(t)
	if len(wantCaps) != 7 {
		t.Errorf("docs/security.md lists %d Ganesha capabilities (%v); it says seven", len(wantCaps), wantCaps)
	}
	for engine := range claims {
		t.Run(engine, func(t *testing.T) {
			id := waitBound(t, e, ns, engine).Spec.VolumeName
			pods, err := k.CoreV1().Pods(driverNamespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(volume.Selector(id)).String()})
			if err != nil || len(pods.Items) != 1 {
				t.Fatalf("server pods of %s: %v, %v", id, pods, err)
			}
			pod := pods.Items[0]
			if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken is not false")
			}
			for _, v := range pod.Spec.Volumes {
				if v.Projected != nil {
					for _, s := range v.Projected.Sources {
						if s.ServiceAccountToken != nil {
							t.Errorf("admission gave the pod a service account token (volume %s)", v.Name)
						}
					}
				}
			}
			if psc := pod.Spec.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod seccomp profile %+v, want RuntimeDefault", psc)
			}
			if pod.Spec.HostNetwork || pod.Spec.HostPID || pod.Spec.HostIPC {
				t.Error("the server pod shares a host namespace")
			}
			for _, v := range pod.Spec.Volumes {
				if v.HostPath != nil {
					t.Errorf("the server pod mounts the host path %s", v.HostPath.Path)
				}
			}
			c := pod.Spec.Containers[0]
			sc := c.SecurityContext
			switch engine {
			case "kernel":
				// Privileged, the only way to configure the kernel's nfsd
				// (docs/security.md says why); nothing else is added.
				if sc == nil || sc.Privileged == nil || !*sc.Privileged {
					t.Errorf("kernel server container %+v, want privileged", sc)
				}
			case "ganesha":
				if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Fatalf("ganesha server container %+v, want unprivileged, no escalation, read-only root", sc)
				}
				if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("container seccomp profile %+v", sc.SeccompProfile)
				}
				var added []string
				for _, a := range sc.Capabilities.Add {
					added = append(added, string(a))
				}
				slices.Sort(added)
				if !slices.Equal(added, wantCaps) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("capabilities drop %v add %v; docs/security.md: drop ALL, add %v", sc.Capabilities.Drop, added, wantCaps)
				}
			}
		})
	}
}
