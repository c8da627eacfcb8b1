// Package simnode runs simulated Kubernetes nodes for tests and demos. A Node is
// the real pvnfs-csi node plugin (--mode=node, built with the NFS stand-in, see
// package standin and Build) running as its own process in a mount namespace of its own, a
// kubelet-like directory with kubelet's exact path layout, and a CSI gRPC client
// on the plugin's socket. Its helpers act as kubelet would for pods scheduled on
// the node (stage, publish, unpublish, unstage) and look inside the node (files,
// mounts) through /proc/<pid>/root and /proc/<pid>/mountinfo.
//
// The mount namespace belongs to a tiny holder process (sleep), not to the plugin:
// the plugin is started into it with nsenter --mount=/proc/<holder>/ns/mnt. So the
// plugin can be restarted (Restart) or crash (KillPlugin) and come back
// (StartPlugin) with the volumes still mounted, exactly as a node plugin
// restarted by its DaemonSet finds the host's mounts. Close kills every process in
// the namespace, so all of its mounts vanish with it, and removes its directory.
//
// Needs root (mount namespaces), nsenter and sleep. Nothing here is used by the
// plugin itself.
package simnode
