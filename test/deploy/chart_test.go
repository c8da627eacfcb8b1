package deploy

// Tests of the chart and the generated manifests that need helm but no cluster.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/pvnfs/pvnfs/pkg/parameters"
)

// regenerate is what to run when the manifests drift from the chart.
const regenerate = "make manifests (deploy/generate.sh)"

func TestChartLint(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "default values"},
		{name: "single controller without leader election", args: []string{"--set", "controller.replicas=1,controller.leaderElection=false"}},
		{name: "existing namespace, no example class, no priority class", args: []string{"--set", "namespace.create=false,storageClass.create=false,serverPriorityClass.create=false"}},
		{name: "mirror registry, digests, kubelet elsewhere", args: []string{"--set", "imageRegistry=mirror.example.com,images.pvnfsCSI.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,kubeletDir=/var/lib/k0s/kubelet"}},
		{name: "no network restriction", args: []string{"--set", "nfsClients.cidrs=null,networkPolicy.enabled=false,nfsClients.restrictExports=false"}},
		{name: "policy widened, exports unrestricted", args: []string{"--set", "nfsClients.cidrs={10.0.0.0/16,fd00:10::/64},nfsClients.restrictExports=false," +
			"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring,networkPolicy.nfsFrom[0].podSelector.matchLabels.app=backup"}},
		{name: "metrics on the nodes, file fsGroupPolicy", args: []string{"--set", "node.metricsPort=29763,csiDriver.fsGroupPolicy=File"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"lint", "--strict", repoPath(t, chartDir)}, chartValues...), tc.args...)
			if out, err := runHelm(t, helm, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestManifestsMatchChart fails when deploy/kubernetes is not exactly what
// deploy/generate.sh makes from the chart, so the two install paths never differ.
func TestManifestsMatchChart(t *testing.T) {
	helm := helmBinary(t)
	out := t.TempDir()
	cmd := exec.Command("bash", repoPath(t, "deploy/generate.sh"), out)
	cmd.Env = append(os.Environ(), "HELM="+helm)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/generate.sh: %v\n%s", err, b)
	}
	want := listYAML(t, out)
	have := listYAML(t, repoPath(t, manifestsDir))
	if !slices.Equal(want, have) {
		t.Fatalf("%s holds %v, the chart generates %v: run %s", manifestsDir, have, want, regenerate)
	}
	for _, f := range want {
		w, _ := os.ReadFile(filepath.Join(out, f))
		h, _ := os.ReadFile(repoPath(t, filepath.Join(manifestsDir, f)))
		if !bytes.Equal(w, h) {
			diff, _ := exec.Command("diff", "-u", repoPath(t, filepath.Join(manifestsDir, f)), filepath.Join(out, f)).CombinedOutput()
			t.Errorf("%s/%s differs from what the chart generates: run %s\n%s", manifestsDir, f, regenerate, diff)
		}
	}
}

func listYAML(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range m {
		names = append(names, filepath.Base(p))
	}
	sort.Strings(names)
	return names
}

// commentedParam matches a parameter the example StorageClass shows commented, with
// its default: `  # nfsThreads: "8"`.
var commentedParam = regexp.MustCompile(`(?m)^  # ([A-Za-z]+): "(.*)"$`)

// TestChartStorageClassDocumentsEveryParameter keeps the example StorageClass in step
// with pkg/parameters: every parameter pvnfs accepts appears in it (set or commented),
// every commented default is pvnfs's real default, and what it sets is accepted.
func TestChartStorageClassDocumentsEveryParameter(t *testing.T) {
	helm := helmBinary(t)
	raw := render(t, helm, "--show-only", "templates/storageclass.yaml")
	sc := typed[storagev1.StorageClass](t, decodeObjects(t, raw)[0])

	shown := map[string]string{}
	for _, m := range commentedParam.FindAllStringSubmatch(string(raw), -1) {
		shown[m[1]] = m[2]
	}
	for _, key := range parameters.Keys() {
		_, set := sc.Parameters[key]
		_, commented := shown[key]
		if !set && !commented {
			t.Errorf("parameter %q is neither set nor shown commented in templates/storageclass.yaml; add it to the list there", key)
		}
	}
	for key := range shown {
		if !slices.Contains(parameters.Keys(), key) {
			t.Errorf("templates/storageclass.yaml shows %q, which pvnfs does not accept", key)
		}
	}

	defaults, err := parameters.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, value := range shown {
		if value == "" {
			continue // "unset" is the default of an optional parameter
		}
		got, err := parameters.Parse(map[string]string{key: value})
		if err != nil {
			t.Errorf("commented default %s: %q is refused by pvnfs: %v", key, value, err)
			continue
		}
		if !apiequality.Semantic.DeepEqual(got, defaults) {
			t.Errorf("commented default %s: %q is not pvnfs's default (pkg/parameters)", key, value)
		}
	}

	if _, err := parameters.Parse(sc.Parameters); err != nil {
		t.Errorf("pvnfs refuses the example StorageClass's parameters: %v", err)
	}
	if got := sc.Parameters[parameters.ServerPriorityClassName]; got != "pvnfs-server" {
		t.Errorf("serverPriorityClassName = %q, want the chart's PriorityClass pvnfs-server", got)
	}
	if sc.Provisioner != "nfs.pvnfs.io" || sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion {
		t.Errorf("provisioner %q, allowVolumeExpansion %v: want nfs.pvnfs.io and true", sc.Provisioner, sc.AllowVolumeExpansion)
	}
	if !strings.Contains(string(raw), "# mountOptions:") {
		t.Error("the example StorageClass does not show mountOptions commented")
	}
}

// TestChartImagesInOnePlace checks that every image the chart runs, the server image
// included, comes from values: a mirror registry replaces all of them.
func TestChartImagesInOnePlace(t *testing.T) {
	helm := helmBinary(t)
	const mirror = "mirror.example.com"
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	objs := decodeObjects(t, render(t, helm, "--set", "imageRegistry="+mirror+",images.pvnfsServer.digest="+digest))
	var images []string
	for _, o := range objs {
		var spec *corev1.PodSpec
		switch o.GetKind() {
		case "Deployment":
			spec = &typed[appsv1.Deployment](t, o).Spec.Template.Spec
		case "DaemonSet":
			spec = &typed[appsv1.DaemonSet](t, o).Spec.Template.Spec
		default:
			continue
		}
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			images = append(images, c.Image)
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--server-image="); ok {
					images = append(images, v)
					if want := mirror + "/pvnfs/pvnfs-server@" + digest; v != want {
						t.Errorf("--server-image=%s, want %s", v, want)
					}
				}
			}
		}
	}
	if len(images) < 8 {
		t.Fatalf("found only %d images: %v", len(images), images)
	}
	for _, img := range images {
		if !strings.HasPrefix(img, mirror+"/") {
			t.Errorf("image %s does not follow imageRegistry", img)
		}
	}
}

func TestChartRefusesInvalidValues(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct {
		name, set, want string
	}{
		{"fsGroupPolicy pvnfs cannot honour", "csiDriver.fsGroupPolicy=ReadWriteOnceWithFSType", "supports None and File"},
		{"two controllers without leader election", "controller.leaderElection=false", "must be true with more than one controller replica"},
		{"unknown StorageClass parameter", "storageClass.parameters.nfsVersio=4.2", "pvnfs has no such parameter"},
		{"no node networks for the policy", "nfsClients.cidrs=null", "nfsClients.cidrs is required while networkPolicy.enabled"},
		{"no node networks for the exports", "nfsClients.cidrs=null,networkPolicy.enabled=false", "nfsClients.cidrs is required"},
		{"node network not a CIDR", "nfsClients.cidrs={node-a}", `nfsClients.cidrs: "node-a" is not a network in CIDR notation`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runHelm(t, helm, append(append([]string{"template", releaseName, repoPath(t, chartDir)}, chartValues...), "--set", tc.set)...)
			if err == nil {
				t.Fatalf("rendered with --set %s:\n%s", tc.set, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not say %q: %v", tc.want, err)
			}
		})
	}
}

// TestChartProbesUseOwnPorts checks every probe's named port against the ports of
// the container it probes: kubelet looks a named port up there and nowhere else (a
// port declared by a sibling container does not count), and the API server does not
// check it, so the mistake would show only on a real node as a failing probe.
func TestChartProbesUseOwnPorts(t *testing.T) {
	helm := helmBinary(t)
	for _, values := range [][]string{nil, {"--set", "controller.metricsPort=0,node.metricsPort=29763"}} {
		objs := decodeObjects(t, render(t, helm, values...))
		for _, w := range []struct{ kind, name string }{{"Deployment", "pvnfs-controller"}, {"DaemonSet", "pvnfs-node"}} {
			var spec corev1.PodSpec
			if w.kind == "Deployment" {
				spec = typed[appsv1.Deployment](t, find(t, objs, w.kind, w.name)).Spec.Template.Spec
			} else {
				spec = typed[appsv1.DaemonSet](t, find(t, objs, w.kind, w.name)).Spec.Template.Spec
			}
			hostPorts := map[int32]string{}
			for _, c := range spec.Containers {
				own := map[string]bool{}
				for _, p := range c.Ports {
					own[p.Name] = true
					if spec.HostNetwork {
						if other, dup := hostPorts[p.ContainerPort]; dup {
							t.Errorf("%s %s: port %d declared by %s and %s", w.kind, w.name, p.ContainerPort, other, c.Name)
						}
						hostPorts[p.ContainerPort] = c.Name
					}
				}
				for kind, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
					if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Port.StrVal == "" {
						continue
					}
					if !own[pr.HTTPGet.Port.StrVal] {
						t.Errorf("%s %s %v: container %s's %s probe uses port %q, which that container does not declare",
							w.kind, w.name, values, c.Name, kind, pr.HTTPGet.Port.StrVal)
					}
				}
			}
		}
	}
}

// TestChartFlagsKnownToBinary checks every flag the chart passes to pvnfs-csi
// against the flags of the pvnfs-csi built from this checkout.
func TestChartFlagsKnownToBinary(t *testing.T) {
	helm := helmBinary(t)
	if pvnfsCSI == "" {
		missing(t, "pvnfs-csi was not built (-short)")
	}
	known := binaryFlags(t, pvnfsCSI)
	objs := decodeObjects(t, render(t, helm))
	for _, w := range []struct {
		kind, name string
	}{{"Deployment", "pvnfs-controller"}, {"DaemonSet", "pvnfs-node"}} {
		var spec corev1.PodSpec
		if w.kind == "Deployment" {
			spec = typed[appsv1.Deployment](t, find(t, objs, w.kind, w.name)).Spec.Template.Spec
		} else {
			spec = typed[appsv1.DaemonSet](t, find(t, objs, w.kind, w.name)).Spec.Template.Spec
		}
		c := container(t, spec, "pvnfs-csi")
		for _, a := range c.Args {
			if name := flagName(a); !known[name] {
				t.Errorf("%s %s passes %s, which pvnfs-csi does not know (pvnfs-csi --help)", w.kind, w.name, a)
			}
		}
	}
}

// binaryFlags returns the flag names a Go binary lists in --help.
func binaryFlags(t testing.TB, bin string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, "--help").CombinedOutput() // exits 0 or 2 by flag package
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9_-]+)`).FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	if !known["mode"] {
		t.Fatalf("%s --help lists no -mode flag:\n%s", bin, out)
	}
	return known
}

// flagName returns "namespace" for "--namespace=x" and "leader-election" for
// "--leader-election".
func flagName(arg string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name
}

func container(t testing.TB, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// TestChartValuesDocumented fails when a value of values.yaml is not described in
// docs/chart-values.md. A value counts as described when its path, or that of a parent
// below the top level (e.g. controller.resources.pvnfsCSI for its requests), appears
// there in backquotes; <placeholder> in a documented path stands for any one key
// (images.<image>.tag).
func TestChartValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(repoPath(t, chartDir+"/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(repoPath(t, "docs/chart-values.md"))
	if err != nil {
		t.Fatal(err)
	}
	var documented [][]string
	for _, m := range regexp.MustCompile("`([A-Za-z<>][A-Za-z0-9<>.]*)`").FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, strings.Split(m[1], "."))
	}
	matches := func(path []string) bool {
		for _, d := range documented {
			if len(d) != len(path) {
				continue
			}
			ok := true
			for i := range d {
				if d[i] != path[i] && !strings.HasPrefix(d[i], "<") {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	var leaves [][]string
	var walk func(path []string, v any)
	walk = func(path []string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, c := range m {
				walk(append(slices.Clone(path), k), c)
			}
			return
		}
		leaves = append(leaves, path)
	}
	walk(nil, values)
	if len(leaves) < 50 {
		t.Fatalf("found only %d values in values.yaml", len(leaves))
	}
	for _, leaf := range leaves {
		found := false
		for n := len(leaf); n >= min(2, len(leaf)) && !found; n-- {
			found = matches(leaf[:n])
		}
		if !found {
			t.Errorf("value %s is not described in docs/chart-values.md", strings.Join(leaf, "."))
		}
	}
}
