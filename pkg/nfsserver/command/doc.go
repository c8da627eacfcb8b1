// Package command runs the programs pvnfs-server depends on: short commands with a
// deadline (mount, exportfs) and long-running helpers it supervises (rpc.mountd,
// nfsdcld, ganesha.nfsd, dbus-daemon).
//
// Every program runs in its own process group, so a deadline or a stop ends the
// program and everything it started, never leaving a hung child behind. Helper
// output is relayed line by line to the server's structured log.
//
// It knows nothing of NFS: which programs to run, and what their exit means, is the
// engines' business.
package command
