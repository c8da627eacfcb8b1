package demo

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Banner says what the demo is, and plainly what in it is simulated.
func Banner(p *Progress) {
	p.Text(`pvnfs demo: ReadWriteMany volumes, each served by its own NFS server, all on this machine.

  Real:      the Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
             kube-scheduler), the pvnfs-csi controller and node plugins, the csi-provisioner
             sidecar, and every mount, bind mount and mount namespace you will see.
  Simulated: the 3 nodes and their pods (kwok: no container runs), kubelet's volume calls
             (test/kubeletsim), and the NFS leg: this kernel has no NFS, so each node's NFS
             mount of a volume is a bind mount of a local directory standing for the
             volume's NFS export.
  On a real cluster, install pvnfs with docs/install.md.

`)
}

// Conclusion explains the result and, when the demo keeps running, how to look
// around and how to end it.
func Conclusion(p *Progress, s *Stack, res *Result, keepRunning bool) {
	others := len(res.Replicas) - 1
	p.Text("Done in %.1fs. The plugin installed through %s is in all %d other replicas: they share one volume.\n",
		p.Elapsed().Seconds(), res.Writer.Pod, others)
	p.Text("With a ReadWriteOnce volume per replica, those %d would not have it, and WordPress would\n"+
		"serve the plugin on one request in %d.\n", others, len(res.Replicas))
	p.Text("Nodes and pods were simulated and the NFS leg stood in by bind mounts; on a real cluster,\n" +
		"see docs/install.md (and test/e2e for the same story on kind). docs/demo.md explains this run.\n\n")
	if !keepRunning {
		return
	}
	kubectl := s.Tools.Kubectl
	var b strings.Builder
	fmt.Fprintf(&b, "Everything keeps running; look around from another shell:\n")
	fmt.Fprintf(&b, "  export KUBECONFIG=%s\n", s.Cluster.Kubeconfig)
	fmt.Fprintf(&b, "  %s -n %s get pods -o wide\n", kubectl, WordPressNamespace)
	fmt.Fprintf(&b, "  %s -n %s get deploy,pods,svc,pvc -l %s=%s\n", kubectl, DriverNamespace, "pvnfs.io/volume-id", res.Volume.Handle)
	n := s.Nodes[0]
	fmt.Fprintf(&b, "  nsenter -t %d -m findmnt -l -o TARGET,SOURCE,OPTIONS | grep %s   # %s's mounts\n",
		n.HolderPID(), filepath.Base(s.Dir), n.Name())
	fmt.Fprintf(&b, "  ls %s   # the volume's files, as its NFS server would serve them\n",
		s.rel(filepath.Join(s.StandInDir, res.Volume.Export.Server, res.Volume.Export.Share, PluginDir)))
	fmt.Fprintf(&b, "Press Ctrl-C here, or run `make demo-down` from another shell, to remove everything.\n")
	p.Text("%s", b.String())
}
