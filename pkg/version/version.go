// Package version holds the release of the binaries, set at build time with
// -ldflags "-X github.com/pvnfs/pvnfs/pkg/version.Version=v1.2.3".
package version

// Version is the pvnfs release; "dev" for a build without -ldflags.
var Version = "dev"
