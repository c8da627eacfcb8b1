// Package engine defines what every NFS server implementation behind pvnfs-server
// provides (the Engine interface), the export settings they all derive from the
// same flags (Settings), the statistics they report (Stats), and the error that
// names a failed step and its remedy (StepError).
//
// It holds no implementation: the kernel and ganesha packages implement Engine, and
// package nfsserver runs the lifecycle every engine shares.
package engine
