// Package serverconfig is the contract between the controller and pvnfs-server: the
// settings of one volume's NFS server, the command-line flags that carry them, and
// their derivation from StorageClass parameters. The controller formats them with
// Args, the server parses them with AddFlags, so the two can never disagree.
//
// It holds no behaviour of either side: no Kubernetes objects, no nfsd.
package serverconfig
