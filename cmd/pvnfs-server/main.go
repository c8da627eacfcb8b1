// Command pvnfs-server is PID 1 of a pvnfs volume's NFS server pod: it serves the
// backend volume mounted at --volume-root over NFSv4 with the engine chosen by
// --engine, until SIGTERM. The controller passes the flags of serverconfig.Config;
// the other flags have defaults that fit the pvnfs-server image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/nfsserver"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run parses the flags, wires the real side effects and serves until SIGTERM. It
// returns the exit status: 0 after a clean stop, 1 when serving failed, 2 for bad
// flags.
func run(args []string, stderr io.Writer) int {
	cfg := serverconfig.Default()
	opts := nfsserver.DefaultOptions()
	fs := flag.NewFlagSet("pvnfs-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	opts.AddFlags(fs)
	klog.InitFlags(fs)
	showVersion := fs.Bool("version", false, "print the release and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: pvnfs-server --volume-id=ID [flags]

Serves one pvnfs volume over NFSv4: the directory "export" below --volume-root,
with the NFS server chosen by --engine, until SIGTERM. /healthz, /readyz and
/metrics are served on --health-port. See docs/server.md.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, version.Version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pvnfs-server takes no arguments, got %q\n", fs.Args())
		return 2
	}
	srv, err := nfsserver.New(cfg, opts, nfsserver.Deps{Runner: command.Exec{}})
	if err != nil {
		fmt.Fprintf(stderr, "invalid configuration:\n%v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = srv.Run(ctx)
	klog.Flush()
	if err != nil {
		klog.ErrorS(err, "pvnfs-server exits with an error")
		klog.Flush()
		return 1
	}
	return 0
}
