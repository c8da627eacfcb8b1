// Package rpcprobe checks that an NFS server answers on the network: it sends the ONC
// RPC NULL procedure (RFC 5531) over TCP with record marking and waits for an
// accepted, successful reply before a deadline.
//
// A NULL call exercises the server's listener, its RPC dispatcher and its
// registration of the program and version, which "the process is alive" cannot
// tell. It touches no file and no client state, so it is safe to send every few
// seconds. The package knows nothing of the server it probes.
package rpcprobe
