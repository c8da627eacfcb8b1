package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/pvnfs/pvnfs/pkg/podutil"
	"github.com/pvnfs/pvnfs/pkg/volume"
	"github.com/pvnfs/pvnfs/test/kubeletsim"
	"github.com/pvnfs/pvnfs/test/simnode"
)

// The WordPress example's names (deploy/examples/wordpress).
const (
	WordPressNamespace  = "wordpress"
	WordPressClaim      = "wordpress-html"
	WordPressDeployment = "wordpress"
	WordPressSelector   = "app.kubernetes.io/name=wordpress"
)

// The plugin the demo installs through one replica.
const (
	PluginDir  = "wp-content/plugins/hello-pvnfs"
	PluginFile = PluginDir + "/hello.php"
)

// WaitLimit bounds every wait on the cluster: a deadline against hangs, never an
// assertion about speed.
const WaitLimit = 3 * time.Minute

// Replica is a pod of a Deployment with its volume mounted by the kubelet.
type Replica struct {
	Pod  string
	UID  types.UID
	Node string
	// Target is the pod's mount of the volume on its node (kubelet's layout).
	Target string
}

// Volume is a pvnfs volume and the objects pvnfs made for it.
type Volume struct {
	// Claim is the user's claim, "namespace/name".
	Claim  string
	PV     string
	Handle string
	// Export is the volume context: the Service's ClusterIP and the share.
	Export volume.Context
	// BackendPVC, Server (the Deployment), ServerPods and Service are in
	// DriverNamespace.
	BackendPVC *corev1.PersistentVolumeClaim
	Server     *appsv1.Deployment
	ServerPods []corev1.Pod
	Service    *corev1.Service
}

// Result is what the WordPress story showed.
type Result struct {
	Volume   *Volume
	Replicas []Replica
	// Writer is the replica the plugin was installed through.
	Writer Replica
	// Seen maps each other replica's pod to nil when it reads the plugin, or why not.
	Seen map[string]error
	// Plugin is the content written.
	Plugin []byte
}

// WordPress tells the story on a running stack: it applies the WordPress example,
// waits for pvnfs to provision its shared volume, scales it to replicas pods,
// installs a plugin through one replica, reads it through every other one and prints
// the table. It fails when any replica does not see the plugin.
func WordPress(ctx context.Context, s *Stack, replicas int) (*Result, error) {
	p := s.p
	p.Step("Applying the WordPress example (%s/wordpress.yaml): claim %s (ReadWriteMany, class %s), Deployment %s (1 replica), Service",
		wordpressDir, WordPressClaim, StorageClassName, WordPressDeployment)
	p.Detail("MariaDB and the autoscaler are left out: no container runs here to use the database, and no metrics reach an autoscaler")
	if err := s.applyWordPress(ctx); err != nil {
		return nil, err
	}

	p.Step("Waiting for pvnfs to provision %s, and for the first replica to mount it", WordPressClaim)
	p.Detail("csi-provisioner calls CreateVolume; the controller makes a backend PVC, an NFS server Deployment and a Service")
	vol, err := s.WaitVolume(ctx, WordPressNamespace, WordPressClaim)
	if err != nil {
		return nil, err
	}
	reps, err := s.WaitReplicas(ctx, WordPressNamespace, WordPressSelector, vol.Handle, 1)
	if err != nil {
		return nil, err
	}
	p.Detail("%s is bound to %s, served by its own NFS server:", WordPressClaim, vol.PV)
	p.Detail("  Service %s, ClusterIP %s", vol.Service.Name, vol.Export.Server)
	p.Detail("  server pod %s on %s", vol.serverPodName(), vol.serverNode())
	p.Detail("  data on backend PVC %s (class %s)", vol.BackendPVC.Name, BackendClass)
	// The wordpress image's entrypoint copies WordPress onto the empty volume when
	// its first pod starts. Two of its files stand for that here.
	first := reps[0]
	for file, content := range map[string]string{
		"index.php":                    "<?php\n// WordPress front controller (stand-in, written by the first replica)\n",
		"wp-content/plugins/index.php": "<?php\n// Silence is golden.\n",
	} {
		if err := s.WriteFile(first, file, []byte(content)); err != nil {
			return nil, err
		}
	}
	p.Detail("%s on %s \"installs WordPress\" onto the empty volume (index.php, wp-content/plugins/)", first.Pod, first.Node)

	p.Step("Scaling WordPress to %d replicas", replicas)
	if err := s.Scale(ctx, WordPressNamespace, WordPressDeployment, replicas); err != nil {
		return nil, err
	}
	if reps, err = s.WaitReplicas(ctx, WordPressNamespace, WordPressSelector, vol.Handle, replicas); err != nil {
		return nil, err
	}
	p.Detail("%d replicas on %s; each node mounted the volume once and bound it into its pods", len(reps), spread(reps))

	// Install through a replica on another node than the first one, if any: the
	// point is that other nodes see it.
	writer := reps[len(reps)-1]
	plugin := []byte(fmt.Sprintf("<?php\n/*\n * Plugin Name: Hello pvnfs\n * Description: installed through %s on %s\n */\n", writer.Pod, writer.Node))
	p.Step("Installing plugin hello-pvnfs through %s on %s (%s)", writer.Pod, writer.Node, PluginFile)
	if err := s.WriteFile(writer, PluginFile, plugin); err != nil {
		return nil, err
	}

	p.Step("Listing wp-content/plugins through every other replica")
	res := &Result{Volume: vol, Replicas: reps, Writer: writer, Seen: map[string]error{}, Plugin: plugin}
	var missing []string
	for _, r := range reps {
		if r.Pod == writer.Pod {
			continue
		}
		res.Seen[r.Pod] = s.SeesFile(r, PluginFile, plugin)
		if res.Seen[r.Pod] != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", r.Pod, res.Seen[r.Pod]))
		}
	}
	if err := s.PrintTable(ctx, res); err != nil {
		return res, err
	}
	if len(missing) > 0 {
		return res, fmt.Errorf("the plugin is missing in %d replica(s):\n%s", len(missing), strings.Join(missing, "\n"))
	}
	return res, nil
}

// WaitVolume waits until the claim is Bound to a pvnfs volume and returns it with
// its objects. While it waits, the claim's events say what is missing.
func (s *Stack) WaitVolume(ctx context.Context, namespace, claim string) (*Volume, error) {
	var why string
	var vol *Volume
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, WaitLimit, true, func(ctx context.Context) (bool, error) {
		pvc, err := s.Client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			why = fmt.Sprintf("claim %s/%s is %s%s", namespace, claim, pvc.Status.Phase, s.lastWarning(ctx, pvc))
			return false, nil
		}
		pv, err := s.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		if pv.Spec.CSI == nil {
			return false, fmt.Errorf("claim %s/%s is bound to %s, which is not a CSI volume", namespace, claim, pv.Name)
		}
		export, err := volume.ParseContext(pv.Spec.CSI.VolumeAttributes)
		if err != nil {
			return false, fmt.Errorf("PV %s: %w", pv.Name, err)
		}
		vol = &Volume{Claim: namespace + "/" + claim, PV: pv.Name, Handle: pv.Spec.CSI.VolumeHandle, Export: export}
		if err := s.fillObjects(ctx, vol); err != nil {
			why = err.Error()
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim %s/%s was not provisioned (%s): %w; see %s and %s", namespace, claim, why, err,
			s.rel(s.Controller.Log()), s.rel(s.Provisioner.Log()))
	}
	return vol, nil
}

// lastWarning is ": <reason>: <message>" of the claim's newest warning event.
func (s *Stack) lastWarning(ctx context.Context, pvc *corev1.PersistentVolumeClaim) string {
	evs, err := s.Client.CoreV1().Events(pvc.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(pvc.UID)})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	last := evs.Items[0]
	for _, e := range evs.Items {
		if e.Type == corev1.EventTypeWarning && e.LastTimestamp.After(last.LastTimestamp.Time) {
			last = e
		}
	}
	if last.Type != corev1.EventTypeWarning {
		return ""
	}
	return ": " + last.Reason + ": " + last.Message
}

// fillObjects looks up the volume's objects in DriverNamespace by its label.
func (s *Stack) fillObjects(ctx context.Context, v *Volume) error {
	c := s.Client
	sel := metav1.ListOptions{LabelSelector: volume.LabelVolumeID + "=" + v.Handle}
	pvcs, err := c.CoreV1().PersistentVolumeClaims(DriverNamespace).List(ctx, sel)
	if err != nil {
		return err
	}
	deps, err := c.AppsV1().Deployments(DriverNamespace).List(ctx, sel)
	if err != nil {
		return err
	}
	pods, err := c.CoreV1().Pods(DriverNamespace).List(ctx, sel)
	if err != nil {
		return err
	}
	svcs, err := c.CoreV1().Services(DriverNamespace).List(ctx, sel)
	if err != nil {
		return err
	}
	if len(pvcs.Items) != 1 || len(deps.Items) != 1 || len(svcs.Items) != 1 {
		return fmt.Errorf("volume %s has %d backend PVCs, %d server Deployments and %d Services in %s, want one each",
			v.Handle, len(pvcs.Items), len(deps.Items), len(svcs.Items), DriverNamespace)
	}
	v.BackendPVC, v.Server, v.Service, v.ServerPods = &pvcs.Items[0], &deps.Items[0], &svcs.Items[0], pods.Items
	return nil
}

// WaitReplicas waits until exactly n pods match the selector, all Running and Ready,
// and the kubelet has published the volume into each; it returns them sorted by
// node and name.
func (s *Stack) WaitReplicas(ctx context.Context, namespace, selector, handle string, n int) ([]Replica, error) {
	var why string
	var out []Replica
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, WaitLimit, true, func(ctx context.Context) (bool, error) {
		pods, err := s.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		snap := s.Kubelet.Snapshot()
		out = out[:0]
		ready, mounted := 0, 0
		for _, pod := range pods.Items {
			if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil || !podutil.Ready(&pod) {
				continue
			}
			ready++
			if m, ok := snap.Published(pod.UID, handle); ok {
				mounted++
				out = append(out, Replica{Pod: pod.Name, UID: pod.UID, Node: pod.Spec.NodeName, Target: m.Target})
			}
		}
		why = fmt.Sprintf("%d pods (%s), %d Running and Ready, %d with the volume mounted; want %d", len(pods.Items), selector, ready, mounted, n)
		if f := snap.FailureSummary(); f != "" {
			why += "; the kubelet's failing calls:\n" + f
		}
		return len(pods.Items) == n && mounted == n, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for %d replicas: %s: %w", n, why, err)
	}
	slices.SortFunc(out, func(a, b Replica) int { return strings.Compare(a.Node+"/"+a.Pod, b.Node+"/"+b.Pod) })
	return out, nil
}

// Scale sets a Deployment's replicas.
func (s *Stack) Scale(ctx context.Context, namespace, name string, replicas int) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	_, err := s.Client.AppsV1().Deployments(namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// WriteFile writes a file into a replica's volume, as a process in the pod would:
// through its mount on its node.
func (s *Stack) WriteFile(r Replica, rel string, data []byte) error {
	n := s.Node(r.Node)
	if n == nil {
		return fmt.Errorf("no simulated node %s", r.Node)
	}
	path := n.InNode(filepath.Join(r.Target, rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("through %s: %w", r.Pod, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("through %s: %w", r.Pod, err)
	}
	return nil
}

// SeesFile reads a file through a replica's volume: its directory must list it and
// its content must be want.
func (s *Stack) SeesFile(r Replica, rel string, want []byte) error {
	n := s.Node(r.Node)
	if n == nil {
		return fmt.Errorf("no simulated node %s", r.Node)
	}
	entries, err := os.ReadDir(n.InNode(filepath.Join(r.Target, filepath.Dir(rel))))
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return e.Name() == filepath.Base(rel) }) {
		return fmt.Errorf("%s is not listed", rel)
	}
	got, err := os.ReadFile(n.InNode(filepath.Join(r.Target, rel)))
	if err != nil {
		return err
	}
	if string(got) != string(want) {
		return fmt.Errorf("%s holds %q, want %q", rel, got, want)
	}
	return nil
}

// NodeMounts counts a volume's mounts on every node, from the node's mount table.
func (s *Stack) NodeMounts(v *Volume) (map[string]simnode.VolumeMounts, error) {
	out := map[string]simnode.VolumeMounts{}
	for _, n := range s.Nodes {
		m, err := n.VolumeMounts(v.Export.Source())
		if err != nil {
			return nil, fmt.Errorf("mount table of %s: %w", n.Name(), err)
		}
		out[n.Name()] = m
	}
	return out, nil
}

// WaitUnmounted waits until the kubelet has nothing of the volume mounted except for
// the given pods, and nothing staged except on their nodes.
func (s *Stack) WaitUnmounted(ctx context.Context, handle string, keep []Replica) (kubeletsim.Snapshot, error) {
	var nodes []string
	var uids []types.UID
	for _, r := range keep {
		if !slices.Contains(nodes, r.Node) {
			nodes = append(nodes, r.Node)
		}
		uids = append(uids, r.UID)
	}
	slices.Sort(nodes)
	slices.Sort(uids)
	ctx, cancel := context.WithTimeout(ctx, WaitLimit)
	defer cancel()
	return s.Kubelet.WaitFor(ctx, func(snap kubeletsim.Snapshot) bool {
		var got []types.UID
		for _, m := range snap.MountsOf(handle) {
			got = append(got, m.PodUID)
		}
		slices.Sort(got)
		return slices.Equal(got, uids) && slices.Equal(snap.NodesStaging(handle), nodes)
	})
}

// spread describes how replicas are spread over nodes: "kwok-node-1 (2), ...".
func spread(reps []Replica) string {
	count := map[string]int{}
	var nodes []string
	for _, r := range reps {
		if count[r.Node] == 0 {
			nodes = append(nodes, r.Node)
		}
		count[r.Node]++
	}
	slices.Sort(nodes)
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s (%d)", n, count[n]))
	}
	if len(nodes) == 1 {
		return "1 node: " + parts[0]
	}
	return fmt.Sprintf("%d nodes: %s", len(nodes), strings.Join(parts, ", "))
}

func (v *Volume) serverPodName() string {
	if p := v.serverPod(); p != nil {
		return p.Name
	}
	return "(none)"
}

func (v *Volume) serverNode() string {
	if p := v.serverPod(); p != nil && p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	return "(not scheduled)"
}

func (v *Volume) serverPod() *corev1.Pod {
	for i := range v.ServerPods {
		if v.ServerPods[i].DeletionTimestamp == nil {
			return &v.ServerPods[i]
		}
	}
	return nil
}
