package csiserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// Services are the CSI services to serve; a nil one is not registered.
type Services struct {
	Identity   csi.IdentityServer
	Controller csi.ControllerServer
	Node       csi.NodeServer
}

// Server serves CSI on a unix socket.
type Server struct {
	grpc     *grpc.Server
	listener net.Listener
	path     string
	seq      atomic.Uint64
}

// Listen parses endpoint ("unix:///csi/csi.sock", "unix:/csi/csi.sock" or a plain
// path), removes a socket left by a previous run, and listens on it.
func Listen(endpoint string, s Services) (*Server, error) {
	path, err := SocketPath(endpoint)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("creating the socket directory: %w", err)
	}
	// A previous instance that was killed leaves its socket behind; binding fails
	// with "address already in use" until it is removed.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the old socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	srv := &Server{listener: l, path: path}
	srv.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(srv.logAndMap))
	if s.Identity != nil {
		csi.RegisterIdentityServer(srv.grpc, s.Identity)
	}
	if s.Controller != nil {
		csi.RegisterControllerServer(srv.grpc, s.Controller)
	}
	if s.Node != nil {
		csi.RegisterNodeServer(srv.grpc, s.Node)
	}
	return srv, nil
}

// SocketPath returns the filesystem path of a unix endpoint.
func SocketPath(endpoint string) (string, error) {
	if strings.HasPrefix(endpoint, "/") {
		return endpoint, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "unix" {
		return "", fmt.Errorf("--endpoint %q: must be unix:///path/to/csi.sock", endpoint)
	}
	p := u.Path
	if p == "" {
		p = u.Opaque
	}
	if u.Host != "" || !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("--endpoint %q: must be an absolute unix socket path, like unix:///csi/csi.sock", endpoint)
	}
	return p, nil
}

// Serve serves until ctx is done, then stops gracefully, giving in-flight calls up to
// grace to finish.
func (s *Server) Serve(ctx context.Context, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.listener) }()
	klog.InfoS("Serving CSI", "socket", s.path)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.grpc.Stop()
	}
	_ = os.Remove(s.path)
	return nil
}

// logAndMap logs each call and maps the handler's error to a status code.
func (s *Server) logAndMap(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := s.seq.Add(1)
	start := time.Now()
	klog.V(4).InfoS("CSI call", "call", id, "method", info.FullMethod, "request", protosanitizer.StripSecrets(req))
	resp, err := handler(ctx, req)
	err = ToStatus(err)
	if err != nil {
		// Retryable outcomes (a volume still starting, a concurrent call) are routine;
		// log them at V(2) so a healthy cluster's logs are not full of "errors".
		if Retryable(err) {
			klog.V(2).InfoS("CSI call not finished", "call", id, "method", info.FullMethod, "duration", time.Since(start), "status", err)
		} else {
			klog.ErrorS(err, "CSI call failed", "call", id, "method", info.FullMethod, "duration", time.Since(start))
		}
		return resp, err
	}
	klog.V(4).InfoS("CSI call done", "call", id, "method", info.FullMethod, "duration", time.Since(start), "response", protosanitizer.StripSecrets(resp))
	return resp, nil
}
