// Package snapshots proves snapshots, restores and clones of pvnfs volumes end to end
// on a real local control plane: the user's VolumeSnapshot goes through the real
// snapshot-controller and pvnfs's csi-snapshotter to the pvnfs controller, which
// flushes the volume's server and takes a backend VolumeSnapshot, which goes through
// the snapshot-controller again and the backend driver's own csi-snapshotter to a
// backend CSI driver that really copies (test/dircsi). Restores and clones go through
// the real csi-provisioner of both drivers. Pods read and write through the real
// node plugins (only the NFS leg is a bind mount of the backend volume's directory),
// so the test checks the very bytes a pod wrote.
package snapshots
