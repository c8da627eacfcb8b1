package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/pvnfs/pvnfs/test/harness"
)

// provisioningTimeout bounds each burst (creating or deleting N volumes): a
// deadline against hangs, never a judgement of speed.
const provisioningTimeout = 10 * time.Minute

// settle is the pause between two runs, so the garbage collector and the
// controllers finish the previous run's work before the next one is timed.
const settle = 3 * time.Second

// Burst is one way of creating and deleting the same N volumes: through pvnfs, or
// the lower bound.
type Burst struct {
	// Create is the time from starting to create each volume to its being ready
	// (pvnfs: the user's PVC Bound; lower bound: backend PVC Bound, server pod
	// Ready, Service endpoint ready); Delete from deleting it to all its objects
	// gone.
	Create, Delete Summary
	// CreateTotal and DeleteTotal are the times until the last of the N was ready or
	// gone, the median over the repetitions.
	CreateTotal, DeleteTotal time.Duration
	// Serving is, for pvnfs, the time from creating the user's PVC to its volume
	// serving (what CreateVolume waits for); PVCreated to csi-provisioner's PV
	// appearing (after CreateVolume's answer); the rest of Create is the PV
	// controller binding the PVC to it.
	Serving, PVCreated Summary
}

// Requests are the API requests of the controller per volume, by verb and
// resource.
type Requests struct {
	PerVolume []RequestCount
	Total     float64
}

// Shown are the requests of at least 0.005 per volume, which the report lists; the
// rest (the informers' periodic watch restarts) only count in the total.
func (r Requests) Shown() []RequestCount {
	var out []RequestCount
	for _, c := range r.PerVolume {
		if c.PerVolume >= 0.005 {
			out = append(out, c)
		}
	}
	return out
}

// RequestCount is one verb and resource.
type RequestCount struct {
	Request   string
	PerVolume float64
}

// SizeResult is the provisioning phase for one N.
type SizeResult struct {
	N, Reps                        int
	Pvnfs, Lower                   Burst
	CreateRequests, DeleteRequests Requests
}

// CreateRatio is pvnfs's total time to Bound over the lower bound's.
func (s SizeResult) CreateRatio() float64 { return ratio(s.Pvnfs.CreateTotal, s.Lower.CreateTotal) }

// DeleteRatio is the same for deletion.
func (s SizeResult) DeleteRatio() float64 { return ratio(s.Pvnfs.DeleteTotal, s.Lower.DeleteTotal) }

// P50Ratio is pvnfs's median time to Bound over the lower bound's.
func (s SizeResult) P50Ratio() float64 { return ratio(s.Pvnfs.Create.P50, s.Lower.Create.P50) }

// runProvisioning runs the provisioning and deletion bursts for every size.
func (e *env) runProvisioning(ctx context.Context, sizes []int) ([]SizeResult, error) {
	if err := e.createStorageClass(ctx); err != nil {
		return nil, err
	}
	d, err := e.startDriver(ctx, driverNS, true)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	viaPvnfs, err := newObserver(ctx, e.observe, driverNS, userNS)
	if err != nil {
		return nil, err
	}
	defer viaPvnfs.Stop()
	direct, err := newObserver(ctx, e.observe, lowerBoundNS, "")
	if err != nil {
		return nil, err
	}
	defer direct.Stop()

	// Warm up both paths (informers, connections, the first scheduling), and take
	// the lower bound's objects from what pvnfs creates.
	e.logf("provisioning: warming up")
	warm, err := e.pvnfsCreate(ctx, viaPvnfs, "warmup", 1)
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w (%v)", err, d.alive())
	}
	tmpl, err := captureTemplates(ctx, e.act, driverNS, warm.ids[0])
	if err != nil {
		return nil, err
	}
	if _, err := e.pvnfsDelete(ctx, viaPvnfs, warm); err != nil {
		return nil, fmt.Errorf("warm-up: %w (%v)", err, d.alive())
	}
	lw, err := e.directCreate(ctx, direct, tmpl, 1)
	if err == nil {
		_, err = e.directDelete(ctx, direct, lw)
	}
	if err != nil {
		return nil, fmt.Errorf("warm-up of the lower bound: %w", err)
	}

	var results []SizeResult
	for _, n := range sizes {
		reps := max(e.opts.minReps, (e.opts.minSamples+n-1)/n)
		res := SizeResult{N: n, Reps: reps}
		var pv, lb burstSamples
		var createReq, deleteReq []map[string]float64
		for rep := range reps {
			// Alternate which goes first, so a drift of the machine's load or the
			// cluster's state over a size's runs weighs on both alike.
			steps := []func() error{
				func() error {
					e.logf("provisioning: N=%d, run %d of %d: lower bound", n, rep+1, reps)
					b, err := e.directRun(ctx, direct, tmpl, n)
					lb.add(b)
					return err
				},
				func() error {
					e.logf("provisioning: N=%d, run %d of %d: pvnfs", n, rep+1, reps)
					b, created, deleted, err := e.pvnfsRun(ctx, d, viaPvnfs, fmt.Sprintf("n%d-r%d", n, rep), n)
					pv.add(b)
					createReq, deleteReq = append(createReq, created), append(deleteReq, deleted)
					return err
				},
			}
			if rep%2 == 1 {
				steps[0], steps[1] = steps[1], steps[0]
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return nil, fmt.Errorf("provisioning %d volumes at once: %w", n, err)
				}
			}
		}
		res.Pvnfs, res.Lower = pv.burst(), lb.burst()
		res.CreateRequests = perVolume(createReq, n*reps)
		res.DeleteRequests = perVolume(deleteReq, n*reps)
		e.logf("provisioning: N=%d: to Bound p50 %s, total %s (lower bound %s, %s): ×%.2f; %.2f requests per volume",
			n, secs(res.Pvnfs.Create.P50), secs(res.Pvnfs.CreateTotal), secs(res.Lower.Create.P50), secs(res.Lower.CreateTotal), res.CreateRatio(), res.CreateRequests.Total)
		results = append(results, res)
	}
	return results, nil
}

// directRun creates and deletes n volumes as the lower bound.
func (e *env) directRun(ctx context.Context, o *observer, tmpl templates, n int) (burst, error) {
	sleep(ctx, settle)
	b, err := e.directCreate(ctx, o, tmpl, n)
	if err != nil {
		return b, fmt.Errorf("lower bound: %w", err)
	}
	sleep(ctx, settle)
	if b, err = e.directDelete(ctx, o, b); err != nil {
		return b, fmt.Errorf("lower bound: %w", err)
	}
	return b, nil
}

// pvnfsRun creates and deletes n volumes through csi-provisioner and returns the
// controller's requests while creating and while deleting.
func (e *env) pvnfsRun(ctx context.Context, d *driver, o *observer, prefix string, n int) (b burst, created, deleted map[string]float64, err error) {
	sleep(ctx, settle)
	before, err := scrapeMetrics(ctx, d.metricsURL)
	if err != nil {
		return b, nil, nil, err
	}
	if b, err = e.pvnfsCreate(ctx, o, prefix, n); err != nil {
		return b, nil, nil, fmt.Errorf("pvnfs: %w (%v)", err, d.alive())
	}
	bound, err := scrapeMetrics(ctx, d.metricsURL)
	if err != nil {
		return b, nil, nil, err
	}
	sleep(ctx, settle)
	deleting, err := scrapeMetrics(ctx, d.metricsURL)
	if err != nil {
		return b, nil, nil, err
	}
	if b, err = e.pvnfsDelete(ctx, o, b); err != nil {
		return b, nil, nil, fmt.Errorf("pvnfs: %w (%v)", err, d.alive())
	}
	gone, err := scrapeMetrics(ctx, d.metricsURL)
	if err != nil {
		return b, nil, nil, err
	}
	return b, requestDelta(bound.apiRequests(), before.apiRequests()), requestDelta(gone.apiRequests(), deleting.apiRequests()), nil
}

// burst is one run of N volumes.
type burst struct {
	ids                                 []string
	users                               []string // the users' PVCs, for pvnfs
	create, serving, pvCreated, deletes []time.Duration
	createTotal, deleteTotal            time.Duration
}

// burstSamples pools the runs of one size.
type burstSamples struct {
	create, serving, pvCreated, deletes []time.Duration
	createTotals, deleteTotals          []time.Duration
}

func (s *burstSamples) add(b burst) {
	s.create = append(s.create, b.create...)
	s.serving = append(s.serving, b.serving...)
	s.pvCreated = append(s.pvCreated, b.pvCreated...)
	s.deletes = append(s.deletes, b.deletes...)
	s.createTotals = append(s.createTotals, b.createTotal)
	s.deleteTotals = append(s.deleteTotals, b.deleteTotal)
}

func (s *burstSamples) burst() Burst {
	return Burst{
		Create: summarize(s.create), Delete: summarize(s.deletes), Serving: summarize(s.serving),
		PVCreated:   summarize(s.pvCreated),
		CreateTotal: median(s.createTotals), DeleteTotal: median(s.deleteTotals),
	}
}

// perVolume divides request counts summed over the runs by the volumes.
func perVolume(runs []map[string]float64, volumes int) Requests {
	sum := map[string]float64{}
	for _, r := range runs {
		for k, v := range r {
			sum[k] += v
		}
	}
	var out Requests
	for k, v := range sum {
		out.PerVolume = append(out.PerVolume, RequestCount{Request: k, PerVolume: v / float64(volumes)})
		out.Total += v / float64(volumes)
	}
	sort.Slice(out.PerVolume, func(i, j int) bool { return out.PerVolume[i].Request < out.PerVolume[j].Request })
	return out
}

// parallel runs fn for 0..n-1 at once and returns the errors.
func parallel(n int, fn func(i int) error) error { return pool(n, n, fn) }

// pool runs fn for 0..n-1 on the given number of workers, each taking the next
// index when it is done with one, and returns the errors.
func pool(n, workers int, fn func(i int) error) error {
	next := make(chan int)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// pvnfsCreate creates n RWX PVCs at once and waits until all are Bound.
func (e *env) pvnfsCreate(ctx context.Context, o *observer, prefix string, n int) (burst, error) {
	ctx, cancel := context.WithTimeout(ctx, provisioningTimeout)
	defer cancel()
	b := burst{ids: make([]string, n), users: make([]string, n)}
	start := time.Now()
	err := parallel(n, func(i int) error {
		name := fmt.Sprintf("%s-%d", prefix, i)
		t0 := time.Now()
		pvc, err := e.act.CoreV1().PersistentVolumeClaims(userNS).Create(ctx, harness.RWXClaim(userNS, name, pvnfsClass, "1Gi"), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating PVC %s: %w", name, err)
		}
		// csi-provisioner names the volume pvc-<UID>, which pvnfs keeps as its ID.
		b.ids[i], b.users[i] = "pvc-"+string(pvc.UID), name
		o.expectAt(b.ids[i], name, t0)
		return nil
	})
	if err != nil {
		return b, err
	}
	if err := o.waitFor(ctx, "Bound", b.ids, func(r record) bool { return !r.bound.IsZero() }); err != nil {
		return b, err
	}
	var last time.Time
	for _, id := range b.ids {
		r := o.get(id)
		b.create = append(b.create, r.bound.Sub(r.created))
		if !r.serving.IsZero() {
			b.serving = append(b.serving, r.serving.Sub(r.created))
		}
		if !r.pvCreated.IsZero() {
			b.pvCreated = append(b.pvCreated, r.pvCreated.Sub(r.created))
		}
		if r.bound.After(last) {
			last = r.bound
		}
	}
	b.createTotal = last.Sub(start)
	return b, nil
}

// pvnfsDelete deletes the burst's PVCs at once and waits until their PVs and all
// objects of their volumes are gone.
func (e *env) pvnfsDelete(ctx context.Context, o *observer, b burst) (burst, error) {
	ctx, cancel := context.WithTimeout(ctx, provisioningTimeout)
	defer cancel()
	start := time.Now()
	err := parallel(len(b.ids), func(i int) error {
		o.deletingAt(b.ids[i], time.Now())
		if err := e.act.CoreV1().PersistentVolumeClaims(userNS).Delete(ctx, b.users[i], metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("deleting PVC %s: %w", b.users[i], err)
		}
		return nil
	})
	if err != nil {
		return b, err
	}
	return b, e.waitGone(ctx, o, &b, start)
}

// directCreate is the lower bound: it creates n volumes' objects itself and waits
// until all serve. As many volumes are in flight as csi-provisioner gives pvnfs
// (its --worker-threads); each worker creates a volume's Service, backend PVC and
// Deployment one after the other, as CreateVolume does, and starts its next volume
// at once (pvnfs's CreateVolume holds the worker until the server serves). Every
// volume counts from the start of the burst, as pvnfs's PVCs do.
func (e *env) directCreate(ctx context.Context, o *observer, t templates, n int) (burst, error) {
	ctx, cancel := context.WithTimeout(ctx, provisioningTimeout)
	defer cancel()
	b := burst{ids: make([]string, n)}
	start := time.Now()
	for i := range b.ids {
		b.ids[i] = "pvc-" + string(uuid.NewUUID()) // the same form and length as pvnfs's IDs
		o.expectAt(b.ids[i], "", start)
	}
	err := pool(n, e.lowerWorkers(), func(i int) error {
		return t.createDirect(ctx, e.act, b.ids[i], lowerBoundNS)
	})
	if err != nil {
		return b, err
	}
	if err := o.waitFor(ctx, "serving", b.ids, func(r record) bool { return !r.serving.IsZero() }); err != nil {
		return b, err
	}
	var last time.Time
	for _, id := range b.ids {
		r := o.get(id)
		b.create = append(b.create, r.serving.Sub(r.created))
		if r.serving.After(last) {
			last = r.serving
		}
	}
	b.createTotal = last.Sub(start)
	return b, nil
}

// lowerWorkers is how many volumes the lower bound has in flight.
func (e *env) lowerWorkers() int {
	if e.opts.lowerWorkers > 0 {
		return e.opts.lowerWorkers
	}
	return e.chart.Controller.Provisioner.WorkerThreads
}

// directDelete deletes the lower bound's objects, as many volumes at a time as
// csi-provisioner deletes for pvnfs, and waits until all are gone.
func (e *env) directDelete(ctx context.Context, o *observer, b burst) (burst, error) {
	ctx, cancel := context.WithTimeout(ctx, provisioningTimeout)
	defer cancel()
	start := time.Now()
	for _, id := range b.ids {
		o.deletingAt(id, start)
	}
	err := pool(len(b.ids), e.lowerWorkers(), func(i int) error {
		return deleteDirect(ctx, e.act, b.ids[i], lowerBoundNS)
	})
	if err != nil {
		return b, err
	}
	return b, e.waitGone(ctx, o, &b, start)
}

// waitGone waits until every volume of the burst is gone and records the times.
func (e *env) waitGone(ctx context.Context, o *observer, b *burst, start time.Time) error {
	if err := o.waitFor(ctx, "gone", b.ids, func(r record) bool { return !r.gone.IsZero() }); err != nil {
		return err
	}
	var last time.Time
	for _, id := range b.ids {
		r := o.get(id)
		b.deletes = append(b.deletes, r.gone.Sub(r.deleting))
		if r.gone.After(last) {
			last = r.gone
		}
	}
	b.deleteTotal = last.Sub(start)
	o.forget(b.ids)
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
