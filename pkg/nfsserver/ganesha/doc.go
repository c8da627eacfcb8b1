// Package ganesha serves a volume with NFS-Ganesha, the userspace NFS server: it
// generates Ganesha's configuration from the same settings as the kernel engine
// (one NFSv4-only export of the export directory, a stable Filesystem_id, squash,
// minor versions, lease, grace, port, recovery records on the backend volume), runs
// ganesha.nfsd in the foreground and supervises it.
//
// Ganesha publishes its statistics only over D-Bus in the Debian 4.3 build (it has
// no Prometheus endpoint), so the engine also runs a private dbus-daemon whose
// socket lives in the run directory, and reads the counters from it for /metrics
// and the export check for /healthz. Nothing else talks to that bus.
package ganesha
