package demo

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"

	"github.com/pvnfs/pvnfs/pkg/podutil"
)

// PrintTable prints the replicas (pod, node, whether it sees the plugin, its mount)
// and the volume's objects and mounts, read afresh from the cluster and the nodes.
func (s *Stack) PrintTable(ctx context.Context, res *Result) error {
	v := res.Volume
	if err := s.fillObjects(ctx, v); err != nil {
		return err
	}
	mounts, err := s.NodeMounts(v)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nWordPress: %d replicas on %s share claim %s (ReadWriteMany, class %s).\n",
		len(res.Replicas), spread(res.Replicas), v.Claim, StorageClassName)
	fmt.Fprintf(&b, "MOUNT is the pod's volume, below its node's kubelet directory (%s).\n\n",
		s.rel(filepath.Join(s.Dir, "nodes", "<node>", "kubelet")))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  POD\tNODE\tSEES "+strings.ToUpper(filepath.Base(PluginDir))+"\tMOUNT")
	for _, r := range res.Replicas {
		sees := "yes"
		switch {
		case r.Pod == res.Writer.Pod:
			sees = "installed it"
		case res.Seen[r.Pod] != nil:
			sees = "NO: " + res.Seen[r.Pod].Error()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Pod, r.Node, sees, shortTarget(s.Node(r.Node).KubeletDir(), r.Target))
	}
	_ = tw.Flush()

	fmt.Fprintf(&b, "\nIts own NFS server (namespace %s):\n", DriverNamespace)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  PV\t%s\tdriver nfs.pvnfs.io, bound to claim %s\n", v.PV, v.Claim)
	pvc := v.BackendPVC
	fmt.Fprintf(tw, "  backend PVC\t%s\t%s, %s, class %s\n", pvc.Name, pvc.Status.Phase, accessModes(pvc.Spec.AccessModes),
		deref(pvc.Spec.StorageClassName))
	fmt.Fprintf(tw, "  server Deployment\t%s\t%d/%d ready\n", v.Server.Name, v.Server.Status.ReadyReplicas, deref(v.Server.Spec.Replicas))
	if pod := v.serverPod(); pod != nil {
		state := string(pod.Status.Phase)
		if podutil.Ready(pod) {
			state += ", Ready"
		}
		fmt.Fprintf(tw, "  server pod\t%s\ton %s, %s\n", pod.Name, pod.Spec.NodeName, state)
	}
	fmt.Fprintf(tw, "  Service\t%s\tClusterIP %s, port %s\n", v.Service.Name, v.Service.Spec.ClusterIP, ports(v.Service))
	fmt.Fprintf(tw, "  NFS export\t%s\tstood in by %s\n", v.Export.Source(),
		s.rel(filepath.Join(s.StandInDir, v.Export.Server, v.Export.Share)))
	_ = tw.Flush()

	fmt.Fprintf(&b, "\nMounts of %s in each node's mount table:\n", v.Export.Source())
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, n := range s.Nodes {
		m := mounts[n.Name()]
		fmt.Fprintf(tw, "  %s\t%d NFS mount (staging)\t%d pod bind mounts\n", n.Name(), len(m.NFS), len(m.Pods))
	}
	_ = tw.Flush()
	s.p.Text("%s\n", b.String())
	return nil
}

// shortTarget shows a target path below the kubelet directory with the pod UID and
// the PV name cut to their first characters: pods/1b2c3d4e…/volumes/kubernetes.io~csi/pvc-5f6a7b8c…/mount.
func shortTarget(kubelet, target string) string {
	rel, err := filepath.Rel(kubelet, target)
	if err != nil || strings.HasPrefix(rel, "..") {
		return target
	}
	parts := strings.Split(rel, "/")
	if len(parts) == 6 && parts[0] == "pods" {
		parts[1] = cut(parts[1], 8)
		parts[4] = cut(parts[4], 12)
	}
	return strings.Join(parts, "/")
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func accessModes(modes []corev1.PersistentVolumeAccessMode) string {
	var out []string
	for _, m := range modes {
		out = append(out, string(m))
	}
	return strings.Join(out, ",")
}

func ports(svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		out = append(out, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	return strings.Join(out, ",")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
