// Package parameters parses and validates the StorageClass parameters of a pvnfs
// volume into a typed Parameters value with every default resolved. Every error names
// the parameter and what it accepts, because the user reads it in a PVC event.
//
// The NFS server's own settings are described, read and checked by package
// serverconfig (Parameters.Server), the one description the server shares; this
// package owns what shapes the backend PVC and the server pod (resources, placement)
// and the rules of a StorageClass (the grace period follows a raised lease). It also
// parses the parameters of a pvnfs VolumeSnapshotClass (snapshot.go).
//
// It does not touch Kubernetes: checks that need the API (does the backend
// StorageClass exist?) belong to the controller.
package parameters
