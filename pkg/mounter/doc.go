// Package mounter is the node's hands on the mount table: it runs the mount and
// unmount helpers and reads /proc/self/mountinfo.
//
// Every helper runs in its own process group with a deadline. When the deadline
// passes the whole group is killed, so one mount.nfs stuck on an unreachable server
// cannot linger and block the mounts after it. The mount table is read from
// mountinfo (parsed by k8s.io/mount-utils), never by stat-ing a mount point, which
// hangs on a dead NFS server. Helpers are called with -c (no canonicalization) for
// the same reason; callers pass canonical paths (see CanonicalPath).
//
// It owns no policy: which mounts to make, when to force or lazily unmount, what a
// stale mount is, belong to package node. It knows nothing of CSI or volumes.
package mounter
