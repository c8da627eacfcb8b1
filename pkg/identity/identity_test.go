package identity

import (
	"context"
	"errors"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestIdentity(t *testing.T) {
	ctx := context.Background()
	notReady := errors.New("API not answering")
	var readyErr error = notReady
	s := New("nfs.pvnfs.io", "v1", true, func(context.Context) error { return readyErr })

	info, err := s.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || info.Name != "nfs.pvnfs.io" || info.VendorVersion != "v1" {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	caps, _ := s.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if len(caps.Capabilities) == 0 || caps.Capabilities[0].GetService().GetType() != csi.PluginCapability_Service_CONTROLLER_SERVICE {
		t.Errorf("controller capability missing: %v", caps)
	}
	p, err := s.Probe(ctx, &csi.ProbeRequest{})
	if err != nil || p.Ready.GetValue() {
		t.Errorf("Probe while not ready = %v, %v", p, err)
	}
	readyErr = nil
	if p, _ := s.Probe(ctx, &csi.ProbeRequest{}); !p.Ready.GetValue() {
		t.Error("Probe after ready says not ready")
	}

	node := New("nfs.pvnfs.io", "v1", false, nil)
	caps, _ = node.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if len(caps.Capabilities) != 0 {
		t.Errorf("node-only plugin offers %v", caps.Capabilities)
	}
	if _, err := New("", "v1", false, nil).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); err == nil {
		t.Error("empty name accepted")
	}
}
