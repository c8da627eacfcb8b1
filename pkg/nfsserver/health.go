package nfsserver

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
)

// Phases of the server's life, as /healthz and /readyz report them.
const (
	phaseStarting = "starting"
	phaseServing  = "serving"
	phaseStopping = "stopping"
	phaseFailed   = "failed"
)

// Names of the checks the server runs itself, besides the engine's.
const (
	checkRPC     = "nfs-rpc"
	checkBackend = "backend-writable"
)

// health holds what the health loop last found. The HTTP handlers only read it, so
// they answer at once however slow a check is: the kubelet's probe timeout never
// decides the pod's fate.
type health struct {
	mu        sync.Mutex
	phase     string
	failure   error
	checks    []engine.Check
	checkedAt time.Time
}

func newHealth() *health { return &health{phase: phaseStarting} }

func (h *health) setPhase(phase string, failure error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.phase, h.failure = phase, failure
}

func (h *health) setChecks(checks []engine.Check, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks, h.checkedAt = checks, at
}

// snapshot returns the state for the handlers and the metrics.
func (h *health) snapshot() (phase string, checks []engine.Check, at time.Time, failure error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.phase, append([]engine.Check(nil), h.checks...), h.checkedAt, h.failure
}

// healthy: serving, and every check passed. This is the liveness answer: a server
// that stays unhealthy is restarted.
func (h *health) healthy() bool {
	phase, checks, _, _ := h.snapshot()
	if phase != phaseServing || len(checks) == 0 {
		return false
	}
	for _, c := range checks {
		if c.Err != nil {
			return false
		}
	}
	return true
}

// ready: serving, and NFS answers. Readiness leaves out the backend and export
// checks on purpose: clients must reach the server during its grace period to
// reclaim their state, and taking the only endpoint away helps no one.
func (h *health) ready() bool {
	phase, checks, _, _ := h.snapshot()
	if phase != phaseServing {
		return false
	}
	for _, c := range checks {
		if c.Name == checkRPC {
			return c.Err == nil
		}
	}
	return false
}

// report formats the state as /healthz shows it.
func (h *health) report() string {
	phase, checks, at, failure := h.snapshot()
	var b strings.Builder
	fmt.Fprintf(&b, "phase: %s\n", phase)
	if failure != nil {
		fmt.Fprintf(&b, "failure: %v\n", failure)
	}
	if !at.IsZero() {
		fmt.Fprintf(&b, "checked: %s\n", at.UTC().Format(time.RFC3339))
	}
	for _, c := range checks {
		if c.Err != nil {
			fmt.Fprintf(&b, "[-] %s: %v\n", c.Name, c.Err)
		} else {
			fmt.Fprintf(&b, "[+] %s: ok\n", c.Name)
		}
	}
	return b.String()
}

func (h *health) healthzHandler(w http.ResponseWriter, _ *http.Request) {
	respond(w, h.healthy(), h.report())
}

func (h *health) readyzHandler(w http.ResponseWriter, _ *http.Request) {
	respond(w, h.ready(), h.report())
}

func respond(w http.ResponseWriter, ok bool, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, body)
}
