// Package kernel serves a volume with the Linux kernel NFS server (nfsd) from inside
// the server pod: it mounts the nfsd and rpc_pipefs filesystems, configures nfsd
// through the nfsd filesystem (versions, lease, grace, port, threads), writes and
// loads the export, and supervises the two helpers nfsd needs in a container:
// rpc.mountd, which answers the kernel's export upcalls, and nfsdcld, which keeps
// the NFSv4 client records on the backend volume so clients reclaim their state
// after a restart or a move. No rpcbind: NFSv4 does not use it.
//
// nfsd is per network namespace, so each server pod runs its own. Everything the
// package touches (the proc and nfsd filesystems, the exports file, the programs it
// runs) is injected, so its tests run against a temporary directory and a fake
// runner. It does not touch the backend volume beyond its state directory.
package kernel
