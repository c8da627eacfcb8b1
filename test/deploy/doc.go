// Package deploy tests what users install: the Helm chart in deploy/charts/pvnfs, the
// plain manifests in deploy/kubernetes generated from it, and the example
// StorageClass. The chart tests need only helm; the tests named ControlPlane run
// against the real local control plane (test/localcluster): they install the chart,
// check that the controller and node pods are scheduled onto the simulated nodes, and
// provision volumes through the real csi-provisioner sidecar and the real pvnfs-csi
// binary, both running as local processes with the chart's ServiceAccount token, so
// the chart's RBAC is what they are allowed to do.
//
// The package only reads deploy/; it never writes the repository.
package deploy
