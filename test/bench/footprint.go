package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/pvnfs/pvnfs/pkg/csiserver"
	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/test/simnode"
)

// FootprintResult is the controller with many volumes.
type FootprintResult struct {
	Volumes, Workers int
	// Idle is the controller ready with no volume; Loaded with every volume
	// provisioned, once quiet.
	Idle, Loaded procStats
	// HeapInUse is the Go heap in use with every volume (go_memstats_heap_inuse_bytes).
	HeapInUse int64
	// Total is the time to provision every volume; BurstCPU the controller's CPU
	// time meanwhile; QuietCPU its CPU time in the QuietWindow after.
	Total, BurstCPU, QuietCPU, QuietWindow time.Duration
	// Calls are the successful CreateVolume calls' latencies; Retried counts the
	// volumes that needed more than one call.
	Calls   Summary
	Retried int
	// ReadyToReturn is, per volume provisioned by one call, the time from the
	// benchmark's watch seeing the server pod Ready to CreateVolume returning. It is
	// ReadyToEndpoint, from the pod Ready to the Service's endpoint ready (the
	// EndpointSlice controller's work), plus EndpointToReturn, from then to the
	// return (pvnfs's). Negative means the later event was seen first.
	ReadyToReturn, ReadyToEndpoint, EndpointToReturn SignedSummary
	Requests                                         Requests
}

// SignedSummary is a Summary of samples that may be negative.
type SignedSummary struct {
	Count         int
	P50, P95, Max time.Duration
}

func summarizeSigned(ds []time.Duration) SignedSummary {
	s := summarize(ds)
	return SignedSummary(s)
}

// footprintQuiet is how long the controller is left alone with every volume
// before its memory is read, and the window its idle CPU is measured over.
const footprintQuiet = 15 * time.Second

// runFootprint provisions many volumes by calling CreateVolume on a fresh
// controller's socket, as many at once as the chart's csi-provisioner would, and
// reads the controller's /proc.
func (e *env) runFootprint(ctx context.Context) (FootprintResult, error) {
	res := FootprintResult{Volumes: e.opts.footprintVolumes, Workers: e.opts.footprintWorkers, QuietWindow: footprintQuiet}
	if res.Workers == 0 {
		res.Workers = e.chart.Controller.Provisioner.WorkerThreads
	}
	callTimeout, err := time.ParseDuration(e.chart.Controller.Provisioner.Timeout)
	if err != nil {
		return res, fmt.Errorf("%s: controller.provisioner.timeout: %w", chartValuesFile, err)
	}
	retryStart, retryMax := e.retryIntervals()

	d, err := e.startDriver(ctx, footprintNS, false)
	if err != nil {
		return res, err
	}
	defer d.stop()
	o, err := newObserver(ctx, e.observe, footprintNS, "")
	if err != nil {
		return res, err
	}
	defer o.Stop()
	sleep(ctx, settle)
	if res.Idle, err = readProcStats(d.ctl.PID()); err != nil {
		return res, err
	}
	before, err := scrapeMetrics(ctx, d.metricsURL)
	if err != nil {
		return res, err
	}

	e.logf("footprint: provisioning %d volumes, %d CreateVolume calls at a time", res.Volumes, res.Workers)
	outcomes := make([]callOutcome, res.Volumes)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range res.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id := "pvc-" + string(uuid.NewUUID()) // as csi-provisioner names volumes
				o.expectAt(id, "", time.Now())
				out, err := createWithRetries(ctx, d.ctl.Controller, createRequest(id, i), callTimeout, retryStart, retryMax)
				out.id = id
				outcomes[i] = out
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("CreateVolume %s: %w (%v)", id, err, d.alive())
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range res.Volumes {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Total = time.Since(start)
	burst, err := readProcStats(d.ctl.PID())
	if err != nil {
		return res, err
	}
	res.BurstCPU = burst.CPU - res.Idle.CPU
	after, err := scrapeMetrics(ctx, d.metricsURL)
	if err != nil {
		return res, err
	}
	res.Requests = perVolume([]map[string]float64{requestDelta(after.apiRequests(), before.apiRequests())}, res.Volumes)

	var calls, readyLat, endpointLat, servingLat []time.Duration
	for _, out := range outcomes {
		calls = append(calls, out.call)
		if out.attempts > 1 {
			res.Retried++
			continue // its return waited for a retry, not for the server
		}
		r := o.get(out.id)
		if !r.podReady.IsZero() {
			readyLat = append(readyLat, out.returned.Sub(r.podReady))
		}
		if !r.serving.IsZero() {
			servingLat = append(servingLat, out.returned.Sub(r.serving))
		}
		if !r.serving.IsZero() && !r.podReady.IsZero() {
			endpointLat = append(endpointLat, r.serving.Sub(r.podReady))
		}
	}
	res.Calls = summarize(calls)
	res.ReadyToReturn, res.ReadyToEndpoint, res.EndpointToReturn = summarizeSigned(readyLat), summarizeSigned(endpointLat), summarizeSigned(servingLat)

	e.logf("footprint: %d volumes in %s; leaving the controller alone for %s", res.Volumes, res.Total.Round(time.Second), footprintQuiet)
	sleep(ctx, footprintQuiet)
	if res.Loaded, err = readProcStats(d.ctl.PID()); err != nil {
		return res, err
	}
	res.QuietCPU = res.Loaded.CPU - burst.CPU
	quiet, err := scrapeMetrics(ctx, d.metricsURL)
	if err != nil {
		return res, err
	}
	res.HeapInUse = int64(quiet.value("go_memstats_heap_inuse_bytes"))
	return res, nil
}

// retryIntervals are the csi-provisioner's retry delays as the chart sets them.
func (e *env) retryIntervals() (start, limit time.Duration) {
	start, limit = time.Second, 5*time.Minute // the sidecar's defaults
	if d, err := time.ParseDuration(e.chart.Controller.Provisioner.RetryIntervalStart); err == nil {
		start = d
	}
	if d, err := time.ParseDuration(e.chart.Controller.Provisioner.RetryIntervalMax); err == nil {
		limit = d
	}
	return start, limit
}

// createRequest is what csi-provisioner sends for a PVC of the pvnfs class.
func createRequest(name string, i int) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name:          name,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30},
		VolumeCapabilities: []*csi.VolumeCapability{
			simnode.MountCapability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
		Parameters: map[string]string{
			parameters.BackendStorageClass: backendClass,
			parameters.PVCNameKey:          fmt.Sprintf("footprint-%d", i),
			parameters.PVCNamespaceKey:     userNS,
			parameters.PVNameKey:           name,
		},
	}
}

// callOutcome is how one volume's CreateVolume went.
type callOutcome struct {
	id       string
	returned time.Time
	call     time.Duration
	attempts int
}

// createWithRetries calls CreateVolume with the sidecar's deadline and retries
// retryable answers with its exponential backoff, as csi-provisioner does.
func createWithRetries(ctx context.Context, c csi.ControllerClient, req *csi.CreateVolumeRequest, timeout, backoff, limit time.Duration) (callOutcome, error) {
	var out callOutcome
	for {
		out.attempts++
		cctx, cancel := context.WithTimeout(ctx, timeout)
		t0 := time.Now()
		_, err := c.CreateVolume(cctx, req)
		out.returned = time.Now()
		out.call = out.returned.Sub(t0)
		cancel()
		if err == nil {
			return out, nil
		}
		if !csiserver.Retryable(err) || ctx.Err() != nil {
			return out, err
		}
		if status.Code(err) == codes.Canceled {
			return out, err
		}
		sleep(ctx, backoff)
		backoff = min(2*backoff, limit)
	}
}
