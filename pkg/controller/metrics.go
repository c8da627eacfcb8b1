package controller

import (
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

// InstrumentClient counts every request the client sends to the API server by verb
// and resource, as pvnfs_kube_api_requests_total. The API cost of a provisioning is
// a design goal (three writes), and this is how it is measured and watched.
func InstrumentClient(cfg *rest.Config, reg prometheus.Registerer) *prometheus.CounterVec {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pvnfs_kube_api_requests_total",
		Help: "Requests sent to the Kubernetes API server, by HTTP verb and resource.",
	}, []string{"verb", "resource"})
	if reg != nil {
		reg.MustRegister(requests)
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			verb := r.Method
			if r.URL.Query().Get("watch") == "true" {
				verb = "WATCH"
			}
			requests.WithLabelValues(verb, resourceOf(r.URL.Path)).Inc()
			return rt.RoundTrip(r)
		})
	})
	return requests
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// resourceOf extracts the resource from an API path such as
// /api/v1/namespaces/ns/services/name or /apis/apps/v1/namespaces/ns/deployments.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return path
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		if len(parts) == 2 {
			return "namespaces"
		}
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return ""
	}
	return parts[0]
}

// metrics are the controller's own metrics. The reconciler reports through them
// while it runs (only in the leader replica).
type metrics struct {
	actions *prometheus.CounterVec

	mu sync.Mutex
	r  *reconciler
}

// newMetrics registers the controller's metrics with reg (nil: not exported).
func newMetrics(reg prometheus.Registerer, s *Service) *metrics {
	m := &metrics{actions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pvnfs_reconcile_actions_total",
		Help: "Repairs and reports of the reconciler, by action: service_recreated, deployment_recreated, deployment_corrected, orphan_reported, orphan_deleted, repair_failed.",
	}, []string{"action"})}
	if reg == nil {
		return m
	}
	volumes := func(ready bool) func() float64 {
		return func() float64 {
			n := 0
			for _, id := range s.volumeIDs() {
				if s.cache.lookup(s.cfg.Namespace, id).ready() == ready {
					n++
				}
			}
			return float64(n)
		}
	}
	reg.MustRegister(m.actions,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pvnfs_volumes", Help: "Volumes whose NFS server serves (state=ready) or not (state=not_ready).",
			ConstLabels: prometheus.Labels{"state": "ready"}}, volumes(true)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pvnfs_volumes", Help: "Volumes whose NFS server serves (state=ready) or not (state=not_ready).",
			ConstLabels: prometheus.Labels{"state": "not_ready"}}, volumes(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pvnfs_orphaned_volumes",
			Help: "Volumes no PersistentVolume refers to, as last seen by the reconciler (0 in a replica that is not the leader)."},
			func() float64 { o, _ := m.counts(); return float64(o) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pvnfs_outdated_servers",
			Help: "Server Deployments built by another pvnfs version or --server-image, waiting to be rolled: by the reconciler (--max-server-rollouts) or, when it does not roll them or they are pinned, by the operator (0 in a replica that is not the leader)."},
			func() float64 { _, o := m.counts(); return float64(o) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pvnfs_server_rolls_in_progress",
			Help: "Servers the reconciler is rolling to the current template whose new server is not Ready yet (0 in a replica that is not the leader)."},
			func() float64 { return float64(m.rolls()) }),
	)
	return m
}

func (m *metrics) action(name string) { m.actions.WithLabelValues(name).Inc() }

func (m *metrics) setReconciler(r *reconciler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.r = r
}

// looks returns how many times the reconciler running in this replica has finished
// looking at a volume (0 where none runs).
func (m *metrics) looks(id string) int {
	m.mu.Lock()
	r := m.r
	m.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.lookCount(id)
}

func (m *metrics) rolls() int {
	m.mu.Lock()
	r := m.r
	m.mu.Unlock()
	if r == nil {
		return 0
	}
	return r.rollCount()
}

func (m *metrics) counts() (orphans, outdated int) {
	m.mu.Lock()
	r := m.r
	m.mu.Unlock()
	if r == nil {
		return 0, 0
	}
	return r.counts()
}
