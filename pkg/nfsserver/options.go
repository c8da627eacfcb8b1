package nfsserver

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/ganesha"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/kernel"
)

// Options are pvnfs-server's settings that are not part of the controller contract
// (serverconfig.Config): paths, programs and timings whose defaults fit the
// pvnfs-server image, and which tests change.
type Options struct {
	// BindAddress is the address NFS listens on (Ganesha only); "" means every
	// address of the pod.
	BindAddress string
	// ProcDir is the proc filesystem.
	ProcDir string
	// HealthInterval is how often the health checks run.
	HealthInterval time.Duration
	// CheckTimeout bounds each health check and each statistics read.
	CheckTimeout time.Duration
	// BackendHungAfter is how long a write to the backend volume may stay blocked
	// before the backend check fails (and with it /healthz); a slower write is
	// slow storage, which a restart cannot help.
	BackendHungAfter time.Duration
	// StartTimeout bounds the engine's start.
	StartTimeout time.Duration
	// ShutdownTimeout bounds unexporting and stopping on SIGTERM. It must stay below
	// the pod's terminationGracePeriodSeconds, or the kubelet kills the server
	// before it has unexported.
	ShutdownTimeout time.Duration
	// FailureExitDelay keeps /healthz answering with the cause of a fatal failure
	// for a moment before the server exits, so probes and scrapes record why.
	FailureExitDelay time.Duration
	// TerminationLog receives the error the server exits with, when the file exists
	// (the kubelet creates /dev/termination-log), so kubectl describe shows it.
	TerminationLog string
	// Kernel and Ganesha are the engines' own options.
	Kernel  kernel.Options
	Ganesha ganesha.Options
}

// DefaultOptions returns the settings of the pvnfs-server image.
func DefaultOptions() Options {
	return Options{
		ProcDir:          "/proc",
		HealthInterval:   5 * time.Second,
		CheckTimeout:     3 * time.Second,
		BackendHungAfter: time.Minute,
		StartTimeout:     2 * time.Minute,
		ShutdownTimeout:  20 * time.Second,
		FailureExitDelay: 2 * time.Second,
		TerminationLog:   "/dev/termination-log",
		Kernel:           kernel.DefaultOptions(),
		Ganesha:          ganesha.DefaultOptions(),
	}
}

// AddFlags registers the options as flags with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "IP address NFS listens on (ganesha engine only); empty listens on every address of the pod")
	fs.StringVar(&o.ProcDir, "proc-dir", o.ProcDir, "the proc filesystem (nfsd statistics, helpers' threads and open files)")
	fs.DurationVar(&o.HealthInterval, "health-interval", o.HealthInterval, "how often the health checks behind /healthz and /readyz run")
	fs.DurationVar(&o.CheckTimeout, "check-timeout", o.CheckTimeout, "deadline of each health check (RPC NULL probe, backend write probe, engine checks) and of each statistics read")
	fs.DurationVar(&o.BackendHungAfter, "backend-hung-after", o.BackendHungAfter, "how long a write to the backend volume may stay blocked before /healthz fails; a write still in flight for less is slow storage, not a fault")
	fs.DurationVar(&o.StartTimeout, "start-timeout", o.StartTimeout, "deadline of the NFS server's start")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "deadline of unexporting and stopping on SIGTERM; keep it below the pod's terminationGracePeriodSeconds")
	fs.DurationVar(&o.FailureExitDelay, "failure-exit-delay", o.FailureExitDelay, "after a fatal failure, how long /healthz reports its cause before the server exits")
	fs.StringVar(&o.TerminationLog, "termination-log", o.TerminationLog, "file that receives the error the server exits with, if the file exists (Kubernetes' terminationMessagePath)")
	o.Kernel.AddFlags(fs)
	o.Ganesha.AddFlags(fs)
}

// Validate checks the options, naming the flag at fault.
func (o Options) Validate() error {
	var errs []error
	if o.BindAddress != "" {
		if _, err := netip.ParseAddr(o.BindAddress); err != nil {
			errs = append(errs, fmt.Errorf("--bind-address: %q is not an IP address", o.BindAddress))
		}
	}
	if !filepath.IsAbs(o.ProcDir) {
		errs = append(errs, fmt.Errorf("--proc-dir: %q must be an absolute path", o.ProcDir))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		zero bool
	}{
		{"health-interval", o.HealthInterval, false}, {"check-timeout", o.CheckTimeout, false},
		{"backend-hung-after", o.BackendHungAfter, false},
		{"start-timeout", o.StartTimeout, false}, {"shutdown-timeout", o.ShutdownTimeout, false},
		{"failure-exit-delay", o.FailureExitDelay, true},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			errs = append(errs, fmt.Errorf("--%s: %s must be positive", d.flag, d.v))
		}
	}
	k, g := o.engineOptions()
	errs = append(errs, k.Validate(), g.Validate())
	return errors.Join(errs...)
}

// engineOptions returns the engines' options with the shared settings filled in.
func (o Options) engineOptions() (kernel.Options, ganesha.Options) {
	k, g := o.Kernel, o.Ganesha
	k.ProcDir, g.ProcDir = o.ProcDir, o.ProcDir
	return k, g
}
