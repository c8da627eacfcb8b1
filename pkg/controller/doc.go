// Package controller implements the CSI controller service: for every RWX volume it
// keeps a backend RWO PVC, a server Deployment running pvnfs-server over it, and a
// Service whose ClusterIP the nodes mount, all in one namespace. With EnableSnapshots
// it also takes snapshots of a volume as VolumeSnapshots of its backend PVC (after
// asking the volume's server to flush) and makes volumes from them or from another
// volume through the backend PVC's dataSource (snapshot.go, source.go, flush.go).
//
// Handlers are small named steps (validate → look up → ensure → wait → respond).
// Reads come from informer caches and waits are woken by watch events, so a
// provisioning costs the API server three writes and no polling. The package never
// touches mounts, nfsd or objects outside its namespace (except reading
// StorageClasses and PersistentVolumes, and recording events on the users'
// VolumeSnapshots).
package controller
