// Package kerneltest stands in for the kernel in tests of the kernel engine: a
// temporary directory laid out like the proc and nfsd filesystems, and a fake
// runner whose mount, exportfs, rpc.mountd and nfsdcld act on it as the real ones
// act on the kernel.
package kerneltest
