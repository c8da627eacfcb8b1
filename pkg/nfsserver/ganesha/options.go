package ganesha

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Options are the Ganesha engine's server-only settings.
type Options struct {
	// GaneshaCmd and DBusDaemonCmd are the programs run.
	GaneshaCmd, DBusDaemonCmd string
	// RunDir holds the generated configurations, the D-Bus socket and Ganesha's
	// pid file. It is scratch space, rewritten at every start.
	RunDir string
	// LogLevel is Ganesha's log level (NIV_EVENT, NIV_INFO, NIV_DEBUG, ...).
	LogLevel string
	// ProcDir is the proc filesystem, where Ganesha's thread count is read. It is
	// set from the shared --proc-dir.
	ProcDir string
	// CallTimeout bounds each D-Bus call and the wait for dbus-daemon's socket.
	CallTimeout time.Duration
	// MountTable is where Ganesha's VFS backend reads the mount table to find the
	// filesystem of the export: /etc/mtab, hard-coded in Ganesha.
	MountTable string
}

// DefaultOptions returns the settings of the pvnfs-server image.
func DefaultOptions() Options {
	return Options{
		GaneshaCmd:    "ganesha.nfsd",
		DBusDaemonCmd: "dbus-daemon",
		RunDir:        "/run/pvnfs",
		LogLevel:      "NIV_EVENT",
		ProcDir:       "/proc",
		CallTimeout:   5 * time.Second,
		MountTable:    "/etc/mtab",
	}
}

// AddFlags registers the options as flags with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.GaneshaCmd, "ganesha-cmd", o.GaneshaCmd, "ganesha engine: the ganesha.nfsd program")
	fs.StringVar(&o.DBusDaemonCmd, "dbus-daemon-cmd", o.DBusDaemonCmd, "ganesha engine: the dbus-daemon program of the private bus Ganesha publishes its statistics on")
	fs.StringVar(&o.RunDir, "run-dir", o.RunDir, "ganesha engine: scratch directory for the generated ganesha.conf and dbus.conf, the D-Bus socket and the pid file")
	fs.StringVar(&o.LogLevel, "ganesha-log-level", o.LogLevel, "ganesha engine: Ganesha's log level (NIV_CRIT, NIV_MAJ, NIV_WARN, NIV_EVENT, NIV_INFO, NIV_DEBUG, NIV_FULL_DEBUG)")
	fs.DurationVar(&o.CallTimeout, "ganesha-call-timeout", o.CallTimeout, "ganesha engine: deadline of each D-Bus call to Ganesha")
	fs.StringVar(&o.MountTable, "ganesha-mount-table", o.MountTable, "ganesha engine: the mount table Ganesha reads (it always reads /etc/mtab; checked at start)")
}

// Validate checks the options, naming the flag at fault.
func (o Options) Validate() error {
	var errs []error
	if o.GaneshaCmd == "" {
		errs = append(errs, errors.New("--ganesha-cmd: a program is needed"))
	}
	if o.DBusDaemonCmd == "" {
		errs = append(errs, errors.New("--dbus-daemon-cmd: a program is needed"))
	}
	if !filepath.IsAbs(o.RunDir) || strings.ContainsAny(o.RunDir, "\"<>&\n") {
		errs = append(errs, fmt.Errorf("--run-dir: %q must be an absolute path without quotes or markup", o.RunDir))
	} else if len(filepath.Join(o.RunDir, socketName)) > 100 {
		// A unix socket path is limited to 108 bytes.
		errs = append(errs, fmt.Errorf("--run-dir: %q is too long for a unix socket path", o.RunDir))
	}
	switch o.LogLevel {
	case "NIV_NULL", "NIV_FATAL", "NIV_CRIT", "NIV_MAJ", "NIV_WARN", "NIV_EVENT", "NIV_INFO", "NIV_DEBUG", "NIV_MID_DEBUG", "NIV_FULL_DEBUG":
	default:
		errs = append(errs, fmt.Errorf("--ganesha-log-level: %q is not a Ganesha log level such as NIV_EVENT", o.LogLevel))
	}
	if o.CallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--ganesha-call-timeout: %s must be positive", o.CallTimeout))
	}
	return errors.Join(errs...)
}
