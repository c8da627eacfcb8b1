// Package node implements the CSI node service: it mounts each volume's NFS export
// once per node at the staging path (NodeStageVolume) and bind-mounts it into every
// pod's target path (NodePublishVolume), detects stale and hung mounts and mounts
// them again, and reports usage and health (NodeGetVolumeStats).
//
// It keeps no state of its own: every answer is derived from the mount table, so a
// restarted plugin answers as the one before it did. Every mount helper, unmount
// and statfs runs with a deadline.
//
// It owns the policy (mount options, the 4.2 → 4.1 fallback, the unmount ladder,
// what counts as stale); the mechanics (helpers, mountinfo) belong to package
// mounter, which this package reaches only through mounter.Interface. It must not
// talk to the Kubernetes API.
package node
