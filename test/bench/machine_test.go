package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// TestChartSettings reads the chart's values, which the benchmark runs with.
func TestChartSettings(t *testing.T) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s, err := loadChartSettings(root)
	if err != nil {
		t.Fatal(err)
	}
	args := s.provisionerArgs()
	for _, prefix := range []string{"--extra-create-metadata", "--timeout=", "--worker-threads=", "--kube-api-qps=", "--kube-api-burst=", "--retry-interval-start=", "--retry-interval-max="} {
		if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) }) {
			t.Errorf("csi-provisioner flags %v lack %s", args, prefix)
		}
	}
	ctl := s.controllerArgs()
	if len(ctl) != 2 || !strings.HasPrefix(ctl[0], "--kube-api-qps=") || !strings.HasPrefix(ctl[1], "--kube-api-burst=") {
		t.Errorf("controller flags %v", ctl)
	}
}

func TestMachineFacts(t *testing.T) {
	m := machineFacts()
	if m.CPUs < 1 || m.Kernel == "" || m.Kernel == "unknown" {
		t.Errorf("machineFacts = %+v", m)
	}
}
