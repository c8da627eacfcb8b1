// Package identity implements the CSI identity service: who the plugin is, what it
// offers, and whether it is ready. It must not do anything else.
package identity

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Service is the identity service.
type Service struct {
	csi.UnimplementedIdentityServer
	name, version string
	controller    bool
	ready         func(context.Context) error
}

// New returns the identity service. controller says whether this process serves the
// controller service; ready, when not nil, must return nil once the plugin can serve
// (the controller: the Kubernetes API answers and its caches are filled).
func New(name, version string, controller bool, ready func(context.Context) error) *Service {
	return &Service{name: name, version: version, controller: controller, ready: ready}
}

// GetPluginInfo returns the driver name and version.
func (s *Service) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	if s.name == "" {
		return nil, status.Error(codes.Unavailable, "driver name is not configured")
	}
	return &csi.GetPluginInfoResponse{Name: s.name, VendorVersion: s.version}, nil
}

// GetPluginCapabilities offers the controller service when this process runs it.
// pvnfs has no topology: a volume is reachable over the network from every node.
func (s *Service) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	resp := &csi.GetPluginCapabilitiesResponse{}
	if s.controller {
		resp.Capabilities = append(resp.Capabilities,
			&csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
				Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}},
			&csi.PluginCapability{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{
				Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
		)
	}
	return resp, nil
}

// Probe reports readiness. Not ready is an Unavailable-free answer (Ready=false), so
// the CO and liveness probes can tell "starting" from "broken".
func (s *Service) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if s.ready != nil {
		if err := s.ready(ctx); err != nil {
			return &csi.ProbeResponse{Ready: wrapperspb.Bool(false)}, nil
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
