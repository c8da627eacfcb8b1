// Package volume defines the formats that must stay stable for the life of a volume:
// the volume ID derived from a CSI volume name, the snapshot ID derived from a CSI
// snapshot name (snapshot.go), the names of the Kubernetes objects that serve a volume
// or hold a snapshot, their labels and annotations, the volume context keys the
// controller hands to the node plugin, and the server's flush endpoint. A volume
// provisioned by one release must be found, served and deleted by every later one, so
// everything here is defined once, with a parse/format pair and tests for both.
//
// It owns no behaviour and talks to nothing: no Kubernetes client, no mounts.
package volume
