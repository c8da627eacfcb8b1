package kernel

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"
)

// Options are the kernel engine's server-only settings: where the kernel's
// interfaces are and which programs to run. The defaults are the paths of the
// pvnfs-server image; tests point them at a temporary directory.
type Options struct {
	// ProcDir is the proc filesystem (net/rpc/nfsd statistics, helpers' open files).
	// It is set from the shared --proc-dir.
	ProcDir string
	// NfsdDir is where the nfsd filesystem is mounted. exportfs and rpc.mountd only
	// look for it at /proc/fs/nfsd, so only tests change it.
	NfsdDir string
	// RPCPipefsDir is where rpc_pipefs is mounted, for nfsdcld's upcall pipe.
	RPCPipefsDir string
	// ExportsFile is the exports(5) file exportfs -r loads: /etc/exports in the image.
	ExportsFile string
	// NFSStateDir holds exportfs's etab, read to check that the export is loaded.
	NFSStateDir string
	// Programs run by the engine.
	MountCmd, ExportfsCmd, MountdCmd, NfsdcldCmd string
	// CommandTimeout bounds each mount and exportfs call and each control-file write.
	CommandTimeout time.Duration
	// HelperTimeout bounds the wait for a helper to open its kernel interface.
	HelperTimeout time.Duration
}

// DefaultOptions returns the settings of the pvnfs-server image.
func DefaultOptions() Options {
	return Options{
		ProcDir:        "/proc",
		NfsdDir:        "/proc/fs/nfsd",
		RPCPipefsDir:   "/var/lib/nfs/rpc_pipefs",
		ExportsFile:    "/etc/exports",
		NFSStateDir:    "/var/lib/nfs",
		MountCmd:       "mount",
		ExportfsCmd:    "exportfs",
		MountdCmd:      "rpc.mountd",
		NfsdcldCmd:     "nfsdcld",
		CommandTimeout: 30 * time.Second,
		HelperTimeout:  10 * time.Second,
	}
}

// AddFlags registers the options as flags with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NfsdDir, "nfsd-dir", o.NfsdDir, "kernel engine: mount point of the nfsd filesystem (exportfs and rpc.mountd expect /proc/fs/nfsd)")
	fs.StringVar(&o.RPCPipefsDir, "rpc-pipefs-dir", o.RPCPipefsDir, "kernel engine: mount point of rpc_pipefs, through which nfsdcld tracks NFSv4 clients")
	fs.StringVar(&o.ExportsFile, "exports-file", o.ExportsFile, "kernel engine: exports(5) file written and loaded with exportfs -r (exportfs reads /etc/exports)")
	fs.StringVar(&o.NFSStateDir, "nfs-state-dir", o.NFSStateDir, "kernel engine: exportfs state directory holding etab, read to check the export is loaded")
	fs.StringVar(&o.MountCmd, "mount-cmd", o.MountCmd, "kernel engine: mount(8) program, for the nfsd and rpc_pipefs filesystems")
	fs.StringVar(&o.ExportfsCmd, "exportfs-cmd", o.ExportfsCmd, "kernel engine: exportfs(8) program")
	fs.StringVar(&o.MountdCmd, "mountd-cmd", o.MountdCmd, "kernel engine: rpc.mountd(8) program, which answers nfsd's export upcalls")
	fs.StringVar(&o.NfsdcldCmd, "nfsdcld-cmd", o.NfsdcldCmd, "kernel engine: nfsdcld(8) program, which keeps NFSv4 client records in the state directory")
	fs.DurationVar(&o.CommandTimeout, "kernel-command-timeout", o.CommandTimeout, "kernel engine: deadline of each mount, exportfs and nfsd control-file write")
	fs.DurationVar(&o.HelperTimeout, "kernel-helper-timeout", o.HelperTimeout, "kernel engine: how long rpc.mountd and nfsdcld get to connect to the kernel")
}

// Validate checks the options, naming the flag at fault.
func (o Options) Validate() error {
	var errs []error
	for _, p := range []struct{ flag, path string }{
		{"proc-dir", o.ProcDir}, {"nfsd-dir", o.NfsdDir}, {"rpc-pipefs-dir", o.RPCPipefsDir},
		{"exports-file", o.ExportsFile}, {"nfs-state-dir", o.NFSStateDir},
	} {
		if !filepath.IsAbs(p.path) {
			errs = append(errs, fmt.Errorf("--%s: %q must be an absolute path", p.flag, p.path))
		}
	}
	for _, c := range []struct{ flag, cmd string }{
		{"mount-cmd", o.MountCmd}, {"exportfs-cmd", o.ExportfsCmd}, {"mountd-cmd", o.MountdCmd}, {"nfsdcld-cmd", o.NfsdcldCmd},
	} {
		if c.cmd == "" {
			errs = append(errs, fmt.Errorf("--%s: a program is needed", c.flag))
		}
	}
	if o.CommandTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--kernel-command-timeout: %s must be positive", o.CommandTimeout))
	}
	if o.HelperTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--kernel-helper-timeout: %s must be positive", o.HelperTimeout))
	}
	return errors.Join(errs...)
}
