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
	// NFSRootDir is the NFSv4 pseudo-root: a small tmpfs with the export bound
	// at its path, which rpc.mountd and exportfs take as the root of every export
	// path (nfs.conf's [exports] rootdir).
	NFSRootDir string
	// NFSConfFile is the nfs.conf drop-in that sets rootdir; rpc.mountd and
	// exportfs read /etc/nfs.conf.d/*.conf.
	NFSConfFile string
	// Programs run by the engine.
	MountCmd, ExportfsCmd, MountdCmd, NfsdcldCmd string
	// CommandTimeout bounds each mount and exportfs call and each control-file write.
	CommandTimeout time.Duration
	// HelperTimeout bounds the wait for a helper to open its kernel interface.
	HelperTimeout time.Duration
	// TrackingTimeout bounds the wait for nfsdcld to open nfsd's upcall pipe once
	// the threads run. The kernel itself waits one second before it gives up on
	// nfsdcld, so a longer wait only delays the retry.
	TrackingTimeout time.Duration
}

// DefaultOptions returns the settings of the pvnfs-server image.
func DefaultOptions() Options {
	return Options{
		ProcDir:         "/proc",
		NfsdDir:         "/proc/fs/nfsd",
		RPCPipefsDir:    "/var/lib/nfs/rpc_pipefs",
		ExportsFile:     "/etc/exports",
		NFSStateDir:     "/var/lib/nfs",
		NFSRootDir:      "/run/pvnfs/nfsroot",
		NFSConfFile:     "/etc/nfs.conf.d/pvnfs.conf",
		MountCmd:        "mount",
		ExportfsCmd:     "exportfs",
		MountdCmd:       "rpc.mountd",
		NfsdcldCmd:      "nfsdcld",
		CommandTimeout:  30 * time.Second,
		HelperTimeout:   30 * time.Second,
		TrackingTimeout: 3 * time.Second,
	}
}

// AddFlags registers the options as flags with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NfsdDir, "nfsd-dir", o.NfsdDir, "kernel engine: mount point of the nfsd filesystem (exportfs and rpc.mountd expect /proc/fs/nfsd)")
	fs.StringVar(&o.RPCPipefsDir, "rpc-pipefs-dir", o.RPCPipefsDir, "kernel engine: mount point of rpc_pipefs, through which nfsdcld tracks NFSv4 clients")
	fs.StringVar(&o.ExportsFile, "exports-file", o.ExportsFile, "kernel engine: exports(5) file written and loaded with exportfs -r (exportfs reads /etc/exports)")
	fs.StringVar(&o.NFSStateDir, "nfs-state-dir", o.NFSStateDir, "kernel engine: exportfs state directory holding etab, read to check the export is loaded")
	fs.StringVar(&o.NFSRootDir, "nfs-root-dir", o.NFSRootDir, "kernel engine: where the NFSv4 pseudo-root (a tmpfs holding the export) is mounted")
	fs.StringVar(&o.NFSConfFile, "nfs-conf-file", o.NFSConfFile, "kernel engine: nfs.conf drop-in written to make --nfs-root-dir the root of the exports (read by rpc.mountd and exportfs)")
	fs.StringVar(&o.MountCmd, "mount-cmd", o.MountCmd, "kernel engine: mount(8) program, for the nfsd, rpc_pipefs and pseudo-root filesystems and the export's bind mount")
	fs.StringVar(&o.ExportfsCmd, "exportfs-cmd", o.ExportfsCmd, "kernel engine: exportfs(8) program")
	fs.StringVar(&o.MountdCmd, "mountd-cmd", o.MountdCmd, "kernel engine: rpc.mountd(8) program, which answers nfsd's export upcalls")
	fs.StringVar(&o.NfsdcldCmd, "nfsdcld-cmd", o.NfsdcldCmd, "kernel engine: nfsdcld(8) program, which keeps NFSv4 client records in the state directory")
	fs.DurationVar(&o.CommandTimeout, "kernel-command-timeout", o.CommandTimeout, "kernel engine: deadline of each mount, exportfs and nfsd control-file write")
	fs.DurationVar(&o.HelperTimeout, "kernel-helper-timeout", o.HelperTimeout, "kernel engine: how long rpc.mountd and nfsdcld get to connect to the kernel (nfsdcld first opens its database on the backend volume)")
	fs.DurationVar(&o.TrackingTimeout, "kernel-tracking-timeout", o.TrackingTimeout, "kernel engine: how long nfsdcld gets to open nfsd's upcall pipe once the threads run, before they are started again")
}

// Validate checks the options, naming the flag at fault.
func (o Options) Validate() error {
	var errs []error
	for _, p := range []struct{ flag, path string }{
		{"proc-dir", o.ProcDir}, {"nfsd-dir", o.NfsdDir}, {"rpc-pipefs-dir", o.RPCPipefsDir},
		{"exports-file", o.ExportsFile}, {"nfs-state-dir", o.NFSStateDir},
		{"nfs-root-dir", o.NFSRootDir}, {"nfs-conf-file", o.NFSConfFile},
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
	if o.TrackingTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--kernel-tracking-timeout: %s must be positive", o.TrackingTimeout))
	}
	return errors.Join(errs...)
}
