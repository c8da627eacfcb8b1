// Package nfsserver is pvnfs-server's behaviour: the lifecycle every NFS engine
// shares. It prepares the backend volume (export directory below the volume root,
// state directory, owner and mode of the export root), starts the engine chosen by
// --engine, serves /healthz, /readyz and /metrics, probes the NFS service with an
// RPC NULL call, and on SIGTERM, or when a helper dies, stops the engine and returns.
//
// What is specific to one NFS server lives in the engine packages (kernel,
// ganesha); this package must not know how an engine configures its server.
package nfsserver
