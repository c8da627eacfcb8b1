// Package controller implements the CSI controller service: for every RWX volume it
// keeps a backend RWO PVC, a server Deployment running pvnfs-server over it, and a
// Service whose ClusterIP the nodes mount, all in one namespace.
//
// Handlers are small named steps (validate → look up → ensure → wait → respond).
// Reads come from informer caches and waits are woken by watch events, so a
// provisioning costs the API server three writes and no polling. The package never
// touches mounts, nfsd or objects outside its namespace (except reading
// StorageClasses).
package controller
