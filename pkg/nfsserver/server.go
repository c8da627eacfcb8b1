package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/ganesha"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/kernel"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/rpcprobe"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/version"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Deps are the server's side effects; main passes the real ones.
type Deps struct {
	// Runner runs the engine's programs.
	Runner command.Runner
	// Listen opens the health port; nil means net.Listen.
	Listen func(network, address string) (net.Listener, error)
	// Engine replaces the engine chosen by --engine (for tests); nil means the real one.
	Engine engine.Engine
}

// Server is one volume's NFS server: the shared lifecycle around an engine.
type Server struct {
	cfg      serverconfig.Config
	opts     Options
	settings engine.Settings
	engine   engine.Engine
	listen   func(network, address string) (net.Listener, error)
	health   *health
	prober   *writeProber
	rpcAddr  string
}

// New validates the configuration (engine.NewSettings) and the options, and builds
// the server and its engine. It starts nothing.
func New(cfg serverconfig.Config, opts Options, deps Deps) (*Server, error) {
	s, err := engine.NewSettings(cfg, opts.BindAddress)
	if err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	eng := deps.Engine
	if eng == nil {
		if deps.Runner == nil {
			return nil, errors.New("nfsserver: no command runner")
		}
		k, g := opts.engineOptions()
		switch cfg.Engine {
		case serverconfig.EngineKernel:
			eng, err = kernel.New(s, k, deps.Runner)
		case serverconfig.EngineGanesha:
			eng, err = ganesha.New(s, g, deps.Runner)
		default: // Validate refused it; a new engine needs a case here
			err = fmt.Errorf("--engine: %q is not %q or %q", cfg.Engine, serverconfig.EngineKernel, serverconfig.EngineGanesha)
		}
		if err != nil {
			return nil, err
		}
	}
	listen := deps.Listen
	if listen == nil {
		listen = net.Listen
	}
	host := opts.BindAddress
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return &Server{
		cfg: cfg, opts: opts, settings: s, engine: eng, listen: listen,
		health:  newHealth(),
		prober:  newWriteProber(cfg.StateDir(), opts.BackendHungAfter),
		rpcAddr: net.JoinHostPort(host, strconv.Itoa(cfg.NFSPort)),
	}, nil
}

// Run serves until ctx ends (SIGTERM), then unexports and stops, returning nil once
// everything stopped in time. It returns an error, naming the step and the remedy,
// when the server cannot start or a helper dies: the container then exits non-zero
// and Kubernetes restarts it.
func (s *Server) Run(ctx context.Context) error {
	klog.InfoS("Starting pvnfs-server", "version", version.Version, "volumeID", s.cfg.VolumeID,
		"engine", s.engine.Name(), "volumeRoot", s.cfg.VolumeRoot, "exportDir", s.settings.ExportDir,
		"stateDir", s.settings.StateDir, "nfsVersions", s.cfg.NFSVersions, "sync", s.cfg.Sync,
		"rootSquash", s.cfg.RootSquash, "threads", s.cfg.Threads, "leaseSeconds", s.cfg.LeaseSeconds,
		"graceSeconds", s.cfg.GraceSeconds, "nfsPort", s.cfg.NFSPort, "healthPort", s.cfg.HealthPort)

	var stopHTTP func()
	if err := engine.RunStep("open the health port", func() error {
		var err error
		stopHTTP, err = s.serveHTTP()
		return engine.Fail("open the health port", err, fmt.Sprintf("another process in the pod uses port %d: change --health-port", s.cfg.HealthPort))
	}); err != nil {
		return err
	}
	defer stopHTTP()

	if err := engine.RunStep("prepare the backend volume", func() error {
		pctx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout*4)
		defer cancel()
		return prepareVolume(pctx, s.cfg)
	}); err != nil {
		return s.fail(ctx, err, false)
	}

	startCtx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	err := s.engine.Start(startCtx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			klog.InfoS("Stop requested during start")
			return s.shutdown()
		}
		return s.fail(ctx, err, true)
	}

	s.runChecks(ctx)
	s.health.setPhase(phaseServing, nil)
	klog.InfoS("Serving NFS", "export", s.settings.ExportDir, "port", s.cfg.NFSPort, "healthy", s.health.healthy())

	// The checks run in their own goroutine, so that a slow check never delays
	// the reaction to SIGTERM or to a dead helper.
	checksCtx, stopChecks := context.WithCancel(ctx)
	checksDone := make(chan struct{})
	go func() {
		defer close(checksDone)
		s.healthLoop(checksCtx)
	}()
	var exitErr error
	select {
	case <-ctx.Done():
		klog.InfoS("Stop requested")
	case <-s.engine.Exited():
		if exitErr = s.engine.ExitErr(); exitErr == nil {
			exitErr = errors.New("a helper of the NFS server exited")
		}
	}
	// No check may run into the shutdown and report its errors as news.
	stopChecks()
	<-checksDone
	if exitErr != nil {
		return s.fail(ctx, exitErr, true)
	}
	return s.shutdown()
}

// healthLoop runs the checks every HealthInterval until ctx ends.
func (s *Server) healthLoop(ctx context.Context) {
	tick := time.NewTicker(s.opts.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.runChecks(ctx)
		}
	}
}

// serveHTTP opens the health port at once, so /healthz explains a slow or failed
// start instead of refusing connections.
func (s *Server) serveHTTP() (func(), error) {
	ln, err := s.listen("tcp", net.JoinHostPort("", strconv.Itoa(s.cfg.HealthPort)))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.health.healthzHandler)
	mux.HandleFunc("/readyz", s.health.readyzHandler)
	// Before a backend snapshot or clone, the controller asks for a flush (flush.go).
	mux.Handle(volume.FlushPath, NewFlushHandler(s.cfg.VolumeRoot))
	reg := newRegistry(&nfsCollector{engine: s.engine, volumeID: s.cfg.VolumeID, health: s.health,
		timeout: s.opts.CheckTimeout, d: newDescs()})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Timeout: 2 * s.opts.CheckTimeout}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      2*s.opts.CheckTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Health server stopped")
		}
	}()
	klog.InfoS("Serving /healthz, /readyz, /metrics and "+volume.FlushPath, "address", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// runChecks runs every health check, each with its own deadline, and records the
// results for the handlers.
func (s *Server) runChecks(ctx context.Context) {
	check := func(name string, fn func(context.Context) error) engine.Check {
		cctx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout)
		defer cancel()
		return engine.Check{Name: name, Err: fn(cctx)}
	}
	checks := []engine.Check{
		check(checkRPC, func(ctx context.Context) error {
			return rpcprobe.Null(ctx, s.rpcAddr, rpcprobe.ProgramNFS, rpcprobe.VersionNFS4)
		}),
		check(checkBackend, s.prober.probe),
	}
	ectx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout)
	checks = append(checks, s.engine.Checks(ectx)...)
	cancel()
	for _, c := range checks {
		if c.Err != nil {
			klog.ErrorS(c.Err, "Health check failed", "check", c.Name)
		} else {
			klog.V(4).InfoS("Health check passed", "check", c.Name)
		}
	}
	s.health.setChecks(checks, time.Now())
}

// fail reports a fatal failure on /healthz for FailureExitDelay, stops whatever
// runs, and returns err for the exit status.
func (s *Server) fail(ctx context.Context, err error, stopEngine bool) error {
	klog.ErrorS(err, "pvnfs-server cannot serve; exiting so that Kubernetes restarts it")
	s.health.setPhase(phaseFailed, err)
	s.writeTerminationLog(err)
	if s.opts.FailureExitDelay > 0 {
		t := time.NewTimer(s.opts.FailureExitDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if stopEngine {
		stopCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		if serr := s.engine.Stop(stopCtx); serr != nil {
			klog.ErrorS(serr, "Cleanup after the failure was incomplete")
		}
	}
	return err
}

// shutdown unexports and stops within ShutdownTimeout.
func (s *Server) shutdown() error {
	s.health.setPhase(phaseStopping, nil)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.engine.Stop(ctx); err != nil {
		err = fmt.Errorf("stop: %w", err)
		s.writeTerminationLog(err)
		return err
	}
	klog.InfoS("Stopped", "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// writeTerminationLog leaves the error where Kubernetes shows it as the container's
// termination message. The kubelet creates the file; outside a pod there is none,
// and nothing is written.
func (s *Server) writeTerminationLog(err error) {
	if s.opts.TerminationLog == "" {
		return
	}
	f, ferr := os.OpenFile(s.opts.TerminationLog, os.O_WRONLY|os.O_TRUNC, 0)
	if ferr != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(err.Error() + "\n")
}
