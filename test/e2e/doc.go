// Package e2e is pvnfs's end-to-end suite for a real multi-node cluster: kind, with
// real kubelets, containers, NFS servers and NFS mounts. It builds and loads the
// images, installs the chart, runs the WordPress example scaled out over the nodes
// through kubectl, checks that every replica sees what one wrote and that each node
// mounts the volume once, deletes the volume's server pod and checks that writes
// resume, and removes everything.
//
// It needs docker, kind, kubectl and helm, and a kernel with the NFS client (and,
// for the kernel server engine, nfsd) modules, so its tests carry the build tag
// "e2e" and are not part of `go test ./...` or `make test`. Run it with
// `go test -tags e2e -v -timeout 60m ./test/e2e/` (README.md; the CI workflow
// .github/workflows/e2e-kind.yml runs it on a hosted runner).
package e2e
