package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

func TestReadProcStatsOfItself(t *testing.T) {
	s, err := readProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.HWM < s.RSS {
		t.Errorf("RSS %d, peak %d", s.RSS, s.HWM)
	}
	// Burn a little CPU: the count must grow.
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
	}
	s2, err := readProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s2.CPU <= s.CPU-time.Millisecond || s2.CPU == 0 {
		t.Errorf("CPU time went from %s to %s", s.CPU, s2.CPU)
	}
	if _, err := readProcStats(0); err == nil {
		t.Error("readProcStats(0) did not fail")
	}
}

func TestScrapeControllerRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# HELP pvnfs_kube_api_requests_total Requests sent to the Kubernetes API server, by HTTP verb and resource.
# TYPE pvnfs_kube_api_requests_total counter
pvnfs_kube_api_requests_total{resource="services",verb="POST"} 3
pvnfs_kube_api_requests_total{resource="deployments",verb="POST"} 3
pvnfs_kube_api_requests_total{resource="pods",verb="WATCH"} 1
# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.2e+07
`)
	}))
	defer srv.Close()
	m, err := scrapeMetrics(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got := m.apiRequests()
	want := map[string]float64{"POST services": 3, "POST deployments": 3, "WATCH pods": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("apiRequests = %v, want %v", got, want)
	}
	if v := m.value("go_memstats_heap_inuse_bytes"); v != 1.2e7 {
		t.Errorf("heap in use = %v", v)
	}
	delta := requestDelta(map[string]float64{"POST services": 5, "WATCH pods": 1}, got)
	if fmt.Sprint(delta) != fmt.Sprint(map[string]float64{"POST services": 2}) {
		t.Errorf("requestDelta = %v", delta)
	}
	per := perVolume([]map[string]float64{{"POST services": 2, "POST deployments": 2}, {"POST services": 2}}, 4)
	if per.Total != 1.5 || len(per.PerVolume) != 2 || per.PerVolume[0].Request != "POST deployments" || per.PerVolume[1].PerVolume != 1 {
		t.Errorf("perVolume = %+v", per)
	}
}
