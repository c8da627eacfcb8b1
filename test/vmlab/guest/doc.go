// Package guest holds the VM lab's fixtures, which run inside the lab's guest
// (test/vmlab): a cluster network on a bridge, network namespaces standing for
// nodes and pod sandboxes, a kube-proxy-like DNAT from a ClusterIP to the server
// pod, loop-backed ext4 backend volumes, server pods started the way a container
// runtime starts them (their own mount, UTS, PID and IPC namespaces, the image as
// the read-only lower layer of an overlayfs root, the pod spec's privileges), and
// applications as processes that record every error they see.
//
// The tests themselves are in this directory's _test.go files, built only with
// the vmlab tag: they need the guest's kernel and run only there. The fixtures
// touch the namespaces, mounts and devices of the machine they run on, so they
// refuse to run outside the guest.
package guest
