package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Flusher asks a volume's server pod to write the backend filesystem's dirty data to
// stable storage, and returns once it has.
type Flusher interface {
	Flush(ctx context.Context, pod *corev1.Pod) error
}

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// HTTPFlusher POSTs to the server pod's flush endpoint (volume.FlushPath) on its
// health port, at the pod's IP.
type HTTPFlusher struct {
	client *http.Client
}

// NewHTTPFlusher returns a Flusher dialing with dial; nil dials TCP.
func NewHTTPFlusher(dial DialFunc) *HTTPFlusher {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	return &HTTPFlusher{client: &http.Client{Transport: &http.Transport{
		DialContext: dial,
		// One request per flush, minutes apart: nothing to keep open.
		DisableKeepAlives: true,
		Proxy:             nil,
	}}}
}

// flushMargin is the part of the caller's deadline kept back from the server, so the
// server's own timeout answer arrives before the caller gives up.
const flushMargin = 2 * time.Second

// Flush implements Flusher.
func (f *HTTPFlusher) Flush(ctx context.Context, pod *corev1.Pod) error {
	port, err := healthPort(pod)
	if err != nil {
		return err
	}
	if pod.Status.PodIP == "" {
		return fmt.Errorf("server pod %s has no IP yet", pod.Name)
	}
	wait := volume.MaxFlushTimeout
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d) - flushMargin
		if wait < time.Second {
			return fmt.Errorf("no time left to flush server pod %s", pod.Name)
		}
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port))), Path: volume.FlushPath,
		RawQuery: url.Values{volume.FlushTimeoutParam: {wait.Round(time.Second).String()}}.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("asking server pod %s to flush (POST %s): %w", pod.Name, u.String(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("server pod %s did not flush (POST %s: %s): %s", pod.Name, u.String(), resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// healthPort is the server container's health port, where the flush endpoint is.
func healthPort(pod *corev1.Pod) (int32, error) {
	for _, c := range pod.Spec.Containers {
		if c.Name != volume.ServerContainerName {
			continue
		}
		for _, p := range c.Ports {
			if p.Name == volume.HealthPortName {
				return p.ContainerPort, nil
			}
		}
	}
	return 0, fmt.Errorf("server pod %s has no container %q with a port %q", pod.Name, volume.ServerContainerName, volume.HealthPortName)
}

// flushServers asks every running server pod of the volume to flush, before a backend
// snapshot or clone of its backend PVC is taken, so that every write a server
// acknowledged is in it. A volume without a running server has nothing cached to
// flush. A server that cannot be reached fails the call (Unavailable, retried): a
// snapshot that silently missed acknowledged writes would be worse than a late one.
func (s *Service) flushServers(ctx context.Context, id string) error {
	st := s.cache.lookup(s.cfg.Namespace, id)
	flushed := 0
	for _, p := range st.pods {
		if p.Status.Phase != corev1.PodRunning {
			continue // not started: it has acknowledged nothing
		}
		start := time.Now()
		if err := s.flusher.Flush(ctx, p); err != nil {
			return status.Errorf(codes.Unavailable, "volume %s: %v; the snapshot is taken once the server has flushed its acknowledged writes (the call will be retried)", id, err)
		}
		flushed++
		klog.V(2).InfoS("Server flushed the backend volume", "volumeID", id, "pod", p.Name, "duration", time.Since(start).Round(time.Millisecond))
	}
	if flushed == 0 {
		klog.V(2).InfoS("No server pod runs; nothing to flush", "volumeID", id)
	}
	return nil
}
