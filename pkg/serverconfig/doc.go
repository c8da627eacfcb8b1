// Package serverconfig is the contract between the controller and pvnfs-server: the
// one typed description of a volume's NFS server settings (Config), each setting
// described once with its pvnfs-server flag, its StorageClass parameter when it has
// one, and the rule its value follows. The controller reads StorageClass values into
// it (SetParameter, through package parameters) and formats it as the server's
// arguments (Args); the server reads them back with the inverse (AddFlags); both
// check it with Validate. So the two sides cannot disagree, and a setting added to
// the list reaches all of them.
//
// It is part of pvnfs-server, a small program in every volume's pod: it must import
// no Kubernetes API package and nothing of the controller (cmd/pvnfs-server's tests
// check the server's dependencies). Pod-shape concerns (resources, placement,
// probes, security context) belong to the controller's object builders.
package serverconfig
