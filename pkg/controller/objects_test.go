package controller

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

func testSpec(t *testing.T, params map[string]string) volumeSpec {
	t.Helper()
	p, err := parameters.Parse(params)
	if err != nil {
		t.Fatal(err)
	}
	return volumeSpec{id: "pvc-1", name: "pvc-1", params: p, storedParams: parameters.Stored(params), capacity: 5 << 30, clusterIP: "10.96.0.7"}
}

var testConfig = Config{Namespace: "pvnfs-system", ServerImage: "registry.example/pvnfs-server:v1", ServerImagePullPolicy: corev1.PullIfNotPresent}

func TestBuildDeploymentPerEngine(t *testing.T) {
	tests := []struct {
		name       string
		params     map[string]string
		privileged bool
		caps       []corev1.Capability
		extraVols  int
	}{
		{name: "kernel", params: nil, privileged: true},
		{name: "ganesha", params: map[string]string{parameters.ServerEngine: "ganesha"}, caps: GaneshaCapabilities(), extraVols: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := testSpec(t, tc.params)
			dep := testConfig.buildDeployment(v)
			pod := dep.Spec.Template.Spec
			c := pod.Containers[0]
			sc := c.SecurityContext
			if got := sc.Privileged != nil && *sc.Privileged; got != tc.privileged {
				t.Errorf("privileged = %v, want %v", got, tc.privileged)
			}
			if tc.caps != nil && (sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, tc.caps) || sc.Capabilities.Drop[0] != "ALL") {
				t.Errorf("capabilities = %+v", sc.Capabilities)
			}
			if len(pod.Volumes) != 1+tc.extraVols || len(c.VolumeMounts) != 1+tc.extraVols {
				t.Errorf("volumes %d mounts %d, want %d", len(pod.Volumes), len(c.VolumeMounts), 1+tc.extraVols)
			}
			if psc := pod.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod security context %+v, want seccomp RuntimeDefault", psc)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the server pod must not mount a service account token")
			}
			if pod.Hostname != "pvnfs-pvc-1" {
				t.Errorf("hostname %q: the NFSv4.1 server scope must not change with the pod", pod.Hostname)
			}
			want := v.params.ServerConfig("pvc-1", nil).Args()
			if !slices.Equal(c.Args, want) {
				t.Errorf("args %v, want %v", c.Args, want)
			}
			if c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Error("a probe is missing")
			}
			if dep.Annotations[volume.AnnotationClusterIP] != "10.96.0.7" || dep.Annotations[volume.AnnotationVolumeName] != "pvc-1" {
				t.Errorf("annotations %v", dep.Annotations)
			}
			for k, val := range dep.Spec.Selector.MatchLabels {
				if dep.Spec.Template.Labels[k] != val {
					t.Errorf("pod template does not carry selector label %s=%s", k, val)
				}
			}
		})
	}
}

func TestBuildDeploymentPlacement(t *testing.T) {
	v := testSpec(t, map[string]string{
		parameters.ServerNodeSelector: "pool=storage", parameters.ServerPriorityClassName: "pvnfs-server",
		parameters.ServerTolerations: `[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]`, parameters.FailoverTolerationSeconds: "5",
		parameters.ServerCPULimit: "2", parameters.ServerMemoryRequest: "128Mi",
	})
	cfg := testConfig
	cfg.ServerPullSecrets = []string{"registry-a"}
	pod := cfg.buildDeployment(v).Spec.Template.Spec
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "registry-a" {
		t.Errorf("image pull secrets %v", pod.ImagePullSecrets)
	}
	if pod.NodeSelector["pool"] != "storage" || pod.PriorityClassName != "pvnfs-server" {
		t.Errorf("node selector %v priority class %q", pod.NodeSelector, pod.PriorityClassName)
	}
	var keys []string
	for _, tol := range pod.Tolerations {
		keys = append(keys, tol.Key)
		if tol.Effect == corev1.TaintEffectNoExecute && (tol.TolerationSeconds == nil || *tol.TolerationSeconds != 5) {
			t.Errorf("NoExecute toleration %+v does not use failoverTolerationSeconds", tol)
		}
	}
	if strings.Join(keys, ",") != "dedicated,"+corev1.TaintNodeNotReady+","+corev1.TaintNodeUnreachable {
		t.Errorf("tolerations %v", keys)
	}
	res := pod.Containers[0].Resources
	if res.Limits.Cpu().String() != "2" || res.Requests.Memory().String() != "128Mi" || res.Limits.Memory().String() != parameters.DefaultServerMemoryLimit {
		t.Errorf("resources %+v", res)
	}
}

func TestBuildServiceAndBackend(t *testing.T) {
	v := testSpec(t, nil)
	v.clusterIP = ""
	svc := testConfig.buildService(v)
	if svc.Spec.ClusterIP != "" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 2049 || svc.Spec.Ports[0].TargetPort.StrVal != volume.NFSPortName {
		t.Errorf("service spec %+v", svc.Spec)
	}
	v.clusterIP = "10.96.3.3"
	if got := testConfig.buildService(v).Spec.ClusterIP; got != "10.96.3.3" {
		t.Errorf("a recreated Service must ask for its old ClusterIP, got %q", got)
	}
	pvc := testConfig.buildBackendPVC(v, corev1.ReadWriteOnce)
	if pvc.Spec.StorageClassName != nil {
		t.Errorf("no backendStorageClass must leave storageClassName nil (cluster default), got %q", *pvc.Spec.StorageClassName)
	}
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "5Gi" || pvc.Spec.AccessModes[0] != corev1.ReadWriteOnce {
		t.Errorf("request %s modes %v", q.String(), pvc.Spec.AccessModes)
	}
	v = testSpec(t, map[string]string{parameters.BackendStorageClass: "ebs-gp3"})
	if got := testConfig.buildBackendPVC(v, corev1.ReadWriteOncePod).Spec; len(got.AccessModes) != 1 || got.AccessModes[0] != corev1.ReadWriteOncePod {
		t.Errorf("access modes %v, want [ReadWriteOncePod] alone", got.AccessModes)
	}
	if got := testConfig.buildBackendPVC(v, corev1.ReadWriteOnce).Spec.StorageClassName; got == nil || *got != "ebs-gp3" {
		t.Errorf("storageClassName %v", got)
	}
	for _, obj := range []interface{ GetName() string }{svc, pvc} {
		if obj.GetName() != "pvnfs-pvc-1" {
			t.Errorf("name %q", obj.GetName())
		}
	}
}

func TestBuildDeploymentPassesNFSClients(t *testing.T) {
	v := testSpec(t, nil)
	args := func(c Config) string {
		return strings.Join(c.buildDeployment(v).Spec.Template.Spec.Containers[0].Args, " ")
	}
	if got := args(testConfig); strings.Contains(got, "--clients") {
		t.Errorf("without NFSClients the server is told %s", got)
	}
	c := testConfig
	c.NFSClients = []string{"10.0.0.0/16", "10.1.0.0/16"}
	if got := args(c); !strings.Contains(got, "--clients=10.0.0.0/16,10.1.0.0/16") {
		t.Errorf("with NFSClients the server is told %s", got)
	}
}

func TestTemplateHashFollowsTheSpec(t *testing.T) {
	v := testSpec(t, nil)
	a := testConfig.buildDeployment(v)
	b := testConfig.buildDeployment(v)
	if a.Annotations[AnnotationTemplateHash] == "" || a.Annotations[AnnotationTemplateHash] != b.Annotations[AnnotationTemplateHash] {
		t.Fatalf("hash not stable: %q %q", a.Annotations[AnnotationTemplateHash], b.Annotations[AnnotationTemplateHash])
	}
	other := testConfig
	other.ServerImage = "registry.example/pvnfs-server:v2"
	if other.buildDeployment(v).Annotations[AnnotationTemplateHash] == a.Annotations[AnnotationTemplateHash] {
		t.Error("a new server image does not change the template hash")
	}
}
