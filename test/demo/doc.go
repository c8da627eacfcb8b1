// Package demo is pvnfs's story on one machine: a local control plane with three
// simulated nodes, the real driver (pvnfs-csi as a controller process and one node
// plugin per node, each in its own mount namespace), the real csi-provisioner
// sidecar, a simulated kubelet for volumes, and the WordPress example scaled out on
// one ReadWriteMany volume, with a plugin installed through one replica and read
// through all the others.
//
// The program `make demo` runs (cmd/pvnfs-demo) and its end-to-end test
// (TestControlPlaneAndNFSStandInWordPressDemo) call the same functions here (Up,
// WordPress, Stack.Down), so the two cannot drift apart. The package also owns the
// demo's state directory: a lock held while a demo runs, the processes it started
// and the etcd directory it made, so that `make demo-down` from another shell (Stop)
// can end a demo and clean up after one that was killed.
//
// Everything runs on this machine. Real: the Kubernetes control plane, the driver's
// gRPC services, csi-provisioner, mounts and mount namespaces. Simulated: nodes and
// pods (kwok; no container runs), kubelet's volume calls (test/kubeletsim), and the
// NFS leg of each node's mount, which is a bind mount of a directory standing for
// the volume's NFS export (test/standin). It must never be pointed at a real
// cluster.
package demo
