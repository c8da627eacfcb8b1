// Package localcluster starts and stops a real Kubernetes control plane on loopback
// for tests, the demo and the benchmarks: etcd, kube-apiserver, kube-controller-
// manager and kube-scheduler as real processes, kwok simulating nodes and the pods
// scheduled onto them, and a small provisioner for the backend ReadWriteOnce
// StorageClass. Everything Kubernetes does here is real (admission, scheduling,
// Deployment rollouts, garbage collection, PV binding, node lifecycle); only kubelets
// and containers are simulated.
//
// The binaries come from test/tools/install.sh, which builds them once into a cache
// outside the repository.
package localcluster
