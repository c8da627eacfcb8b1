package nfsserver

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/version"
)

// descs are the metrics' descriptions. Every metric is per server, i.e. per volume:
// the scrape target's labels say which volume.
type descs struct {
	info, ready, healthy, check, statsUp, requests, ops, read, written, threads, clients *prometheus.Desc
}

func newDescs() descs {
	return descs{
		info: prometheus.NewDesc("pvnfs_server_info",
			"Constant 1, labelled with the server's engine, volume and release.", []string{"engine", "volume_id", "version"}, nil),
		ready: prometheus.NewDesc("pvnfs_server_ready",
			"1 when the server is serving and answers NFS RPC calls (/readyz).", nil, nil),
		healthy: prometheus.NewDesc("pvnfs_server_healthy",
			"1 when every health check passes (/healthz).", nil, nil),
		check: prometheus.NewDesc("pvnfs_server_health_check",
			"1 when the named health check passed on its last run.", []string{"check"}, nil),
		statsUp: prometheus.NewDesc("pvnfs_nfs_stats_up",
			"1 when the NFS server's statistics could be read for this scrape.", nil, nil),
		requests: prometheus.NewDesc("pvnfs_nfs_requests_total",
			"NFS requests (NFSv4 COMPOUNDs) served, by NFS version; the kernel engine reports all minor versions as \"4\".", []string{"version"}, nil),
		ops: prometheus.NewDesc("pvnfs_nfs_operations_total",
			"NFSv4 operations served, by operation.", []string{"operation"}, nil),
		read: prometheus.NewDesc("pvnfs_nfs_read_bytes_total",
			"File data read by clients, in bytes.", nil, nil),
		written: prometheus.NewDesc("pvnfs_nfs_written_bytes_total",
			"File data written by clients, in bytes.", nil, nil),
		threads: prometheus.NewDesc("pvnfs_nfs_threads",
			"Threads of the NFS server: nfsd threads (kernel), threads of ganesha.nfsd (ganesha).", nil, nil),
		clients: prometheus.NewDesc("pvnfs_nfs_clients",
			"NFS clients the server knows: NFSv4 client IDs holding state (kernel), client addresses (ganesha).", nil, nil),
	}
}

// nfsCollector reads the engine's statistics at each scrape, so /metrics is never
// staler than the scrape interval, and reports the health state alongside.
type nfsCollector struct {
	engine   engine.Engine
	volumeID string
	health   *health
	timeout  time.Duration
	d        descs
}

// Describe implements prometheus.Collector.
func (c *nfsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.d.info, c.d.ready, c.d.healthy, c.d.check, c.d.statsUp,
		c.d.requests, c.d.ops, c.d.read, c.d.written, c.d.threads, c.d.clients} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one statistics read per scrape.
func (c *nfsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.d.info, prometheus.GaugeValue, 1, c.engine.Name(), c.volumeID, version.Version)
	ch <- prometheus.MustNewConstMetric(c.d.ready, prometheus.GaugeValue, boolValue(c.health.ready()))
	ch <- prometheus.MustNewConstMetric(c.d.healthy, prometheus.GaugeValue, boolValue(c.health.healthy()))
	_, checks, _, _ := c.health.snapshot()
	for _, chk := range checks {
		ch <- prometheus.MustNewConstMetric(c.d.check, prometheus.GaugeValue, boolValue(chk.Err == nil), chk.Name)
	}

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.engine.Stats(ctx)
	if err != nil {
		klog.V(2).InfoS("NFS statistics not available", "err", err)
		ch <- prometheus.MustNewConstMetric(c.d.statsUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.d.statsUp, prometheus.GaugeValue, 1)
	for v, n := range st.Requests {
		ch <- prometheus.MustNewConstMetric(c.d.requests, prometheus.CounterValue, float64(n), v)
	}
	for op, n := range st.Operations {
		ch <- prometheus.MustNewConstMetric(c.d.ops, prometheus.CounterValue, float64(n), op)
	}
	ch <- prometheus.MustNewConstMetric(c.d.read, prometheus.CounterValue, float64(st.ReadBytes))
	ch <- prometheus.MustNewConstMetric(c.d.written, prometheus.CounterValue, float64(st.WrittenBytes))
	if st.Threads >= 0 {
		ch <- prometheus.MustNewConstMetric(c.d.threads, prometheus.GaugeValue, float64(st.Threads))
	}
	if st.Clients >= 0 {
		ch <- prometheus.MustNewConstMetric(c.d.clients, prometheus.GaugeValue, float64(st.Clients))
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newRegistry returns the server's own registry (never the global one): the NFS
// collector plus the Go runtime and process metrics of pvnfs-server itself.
func newRegistry(c *nfsCollector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}
