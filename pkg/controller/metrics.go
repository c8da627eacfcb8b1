package controller

import (
	"net/http"
	"strings"

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
