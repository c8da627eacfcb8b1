package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// TestControlPlaneNewDeploymentIsNotDrift: the server Deployment CreateVolume makes,
// as the API server stores it (defaults filled in), is what the reconciler builds
// from the backend PVC. Otherwise the reconciler "corrects" every new volume — a GET,
// a PUT and a DeploymentCorrected event each time the Deployment's status changes —
// and provisioning costs several times its three writes (docs/benchmarks.md).
func TestControlPlaneNewDeploymentIsNotDrift(t *testing.T) {
	d := startDriver(t)
	r := &reconciler{s: d.svc, outdated: map[string]bool{}}
	for _, tc := range []struct {
		name   string
		params map[string]string
	}{
		{"no-drift-defaults", nil},
		{"no-drift-ganesha", map[string]string{
			"serverEngine":              "ganesha",
			"exportSync":                "false",
			"rootSquash":                "true",
			"exportOwner":               "33:33",
			"exportMode":                "2775",
			"nfsThreads":                "16",
			"leaseSeconds":              "60",
			"serverCPURequest":          "250m",
			"serverMemoryRequest":       "128Mi",
			"serverCPULimit":            "2",
			"serverMemoryLimit":         "512Mi",
			"serverNodeSelector":        "kubernetes.io/os=linux",
			"serverTolerations":         `[{"key":"dedicated","operator":"Equal","value":"storage","effect":"NoSchedule"}]`,
			"failoverTolerationSeconds": "15",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.create(t, tc.name, tc.params)
			ctx := callCtx(t, controlPlaneWait)
			name := volume.ObjectName(tc.name)
			live, err := d.cluster.Client.AppsV1().Deployments(d.ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pvc, err := d.cluster.Client.CoreV1().PersistentVolumeClaims(d.ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			spec, err := specFromBackend(tc.name, pvc)
			if err != nil {
				t.Fatal(err)
			}
			if r.drifted(tc.name, live, d.svc.cfg.buildDeployment(spec)) {
				t.Errorf("the reconciler takes the Deployment CreateVolume made for an edited one; desired:\n%+v\nlive:\n%+v",
					d.svc.cfg.buildDeployment(spec).Spec.Template.Spec, live.Spec.Template.Spec)
			}
		})
	}
}
