package mounter

import (
	"context"
	"time"

	"github.com/pvnfs/pvnfs/pkg/procgroup"
)

// Runner runs a mount helper to completion, or until ctx is done. It exists so that
// tests can see and replace every helper the node runs.
type Runner interface {
	// Run runs name with args and returns its combined output. A helper that exits
	// non-zero, cannot start or is killed returns a *HelperError.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// HelperError is a mount helper that did not succeed (see procgroup.Error).
type HelperError = procgroup.Error

// ExecRunner runs helpers as child processes with procgroup: each in a new process
// group, killed whole with SIGKILL when ctx is done. Killing only the direct child
// is not enough: mount(8) forks mount.nfs, and a surviving mount.nfs keeps retrying
// against the dead server, holding the mount point busy.
type ExecRunner struct {
	// DefaultTimeout bounds a helper whose ctx has no deadline: nothing the node
	// runs may block forever.
	DefaultTimeout time.Duration
	// KillGrace is how long Run waits for a killed group to be reaped.
	KillGrace time.Duration
}

// NewExecRunner returns an ExecRunner with production defaults.
func NewExecRunner() *ExecRunner {
	return &ExecRunner{DefaultTimeout: procgroup.DefaultTimeout, KillGrace: procgroup.DefaultKillGrace}
}

// Run implements Runner. Helpers run with LC_ALL=C: callers classify some of their
// messages (mount.nfs's "Protocol not supported", umount's "not mounted").
func (r *ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return procgroup.Run(ctx, procgroup.Options{DefaultTimeout: r.DefaultTimeout, KillGrace: r.KillGrace, Env: []string{"LC_ALL=C"}}, name, args...)
}
