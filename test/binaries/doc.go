// Package binaries checks what the shipped binaries contain: pvnfs-csi and
// pvnfs-server built exactly as `make build` builds them (and the images'
// Dockerfile, with the same flags) must hold no test code: no NFS stand-in, no
// fake, nothing from test/. It only builds into a temporary directory and reads.
package binaries
