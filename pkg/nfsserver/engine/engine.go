package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// Engine is one NFS server implementation for one volume. The shared lifecycle in
// package nfsserver prepares the backend volume, then calls Start once, watches
// Exited, asks Checks and Stats while serving, and calls Stop once (also after a
// failed Start, to clean up what was started).
type Engine interface {
	// Name is the engine's --engine value.
	Name() string
	// Start configures the server, loads the export and starts every helper. It
	// returns once NFS is being served, or with a *StepError.
	Start(ctx context.Context) error
	// Exited is closed when a supervised helper exits without being asked to; the
	// server cannot serve without it, so pvnfs-server exits non-zero and Kubernetes
	// restarts the pod.
	Exited() <-chan struct{}
	// ExitErr says which helper exited and how, once Exited is closed.
	ExitErr() error
	// Checks reports the engine's own health: server threads running, export
	// loaded. The shared RPC probe and backend write probe are not its business.
	Checks(ctx context.Context) []Check
	// Stats reads the server's statistics for /metrics.
	Stats(ctx context.Context) (Stats, error)
	// Stop unexports and stops the server and its helpers before ctx ends.
	Stop(ctx context.Context) error
}

// Check is the result of one health check.
type Check struct {
	// Name identifies the check in /healthz and in metric labels.
	Name string
	// Err is nil when the check passed.
	Err error
}

// Stats are an NFS server's counters since it started. Negative gauges mean "not
// known": the metrics leave them out rather than report a false zero.
type Stats struct {
	// Requests counts NFS RPC requests (for NFSv4: COMPOUNDs) by protocol version:
	// "4" when the server does not tell minor versions apart, else "4.0", "4.1",
	// "4.2".
	Requests map[string]uint64
	// Operations counts NFSv4 operations by their RFC name ("READ", "WRITE", ...).
	Operations map[string]uint64
	// ReadBytes and WrittenBytes count file data read and written by clients.
	ReadBytes, WrittenBytes uint64
	// Threads is the number of server threads.
	Threads int
	// Clients is the number of clients the server knows: NFSv4 client IDs holding
	// state (kernel), client addresses seen (Ganesha).
	Clients int
}

// StepError is a failed start-up or shutdown step: what failed, and what a person
// can do about it. Its message is what the pod's termination message shows.
type StepError struct {
	// Step names the step, e.g. "mount the nfsd filesystem".
	Step string
	// Err is the underlying failure.
	Err error
	// Remedy tells the operator what to do.
	Remedy string
}

// Error implements error.
func (e *StepError) Error() string {
	if e.Remedy == "" {
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("%s: %s. To fix: %s", e.Step, strings.TrimRight(fmt.Sprint(e.Err), ". "), e.Remedy)
}

// Unwrap lets errors.Is and errors.As see the underlying failure.
func (e *StepError) Unwrap() error { return e.Err }

// Fail returns a *StepError; a nil err gives nil.
func Fail(step string, err error, remedy string) error {
	if err == nil {
		return nil
	}
	return &StepError{Step: step, Err: err, Remedy: remedy}
}

// RunStep runs one named step and logs its start, end and duration. An error that
// is not yet a *StepError is wrapped in one naming the step.
func RunStep(step string, fn func() error) error {
	klog.InfoS("Step started", "step", step)
	start := time.Now()
	err := fn()
	if err != nil {
		if _, ok := err.(*StepError); !ok {
			err = &StepError{Step: step, Err: err}
		}
		klog.ErrorS(err, "Step failed", "step", step, "duration", time.Since(start).Round(time.Millisecond))
		return err
	}
	klog.InfoS("Step done", "step", step, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}
