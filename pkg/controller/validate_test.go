package controller

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCapacityFor(t *testing.T) {
	tests := []struct {
		name string
		r    *csi.CapacityRange
		want int64
		code codes.Code
	}{
		{name: "no range", r: nil, want: DefaultCapacity},
		{name: "required", r: &csi.CapacityRange{RequiredBytes: 5 << 30}, want: 5 << 30},
		{name: "limit below default", r: &csi.CapacityRange{LimitBytes: 1 << 20}, want: 1 << 20},
		{name: "limit above default", r: &csi.CapacityRange{LimitBytes: 10 << 30}, want: DefaultCapacity},
		{name: "required equals limit", r: &csi.CapacityRange{RequiredBytes: 2 << 30, LimitBytes: 2 << 30}, want: 2 << 30},
		{name: "required above limit", r: &csi.CapacityRange{RequiredBytes: 3, LimitBytes: 2}, code: codes.OutOfRange},
		{name: "negative", r: &csi.CapacityRange{RequiredBytes: -1}, code: codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := capacityFor(tc.r)
			if status.Code(err) != tc.code || (tc.code == codes.OK && got != tc.want) {
				t.Errorf("capacityFor(%v) = %d, %v; want %d, %v", tc.r, got, err, tc.want, tc.code)
			}
		})
	}
}

func TestCapacityFits(t *testing.T) {
	if !capacityFits(5, nil) || !capacityFits(5, &csi.CapacityRange{RequiredBytes: 5, LimitBytes: 5}) {
		t.Error("an exact fit was refused")
	}
	if capacityFits(4, &csi.CapacityRange{RequiredBytes: 5}) || capacityFits(6, &csi.CapacityRange{LimitBytes: 5}) {
		t.Error("a misfit was accepted")
	}
}

func TestValidateCapabilities(t *testing.T) {
	mount := func(mode csi.VolumeCapability_AccessMode_Mode, fs string) *csi.VolumeCapability {
		return &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	}
	tests := []struct {
		name string
		caps []*csi.VolumeCapability
		ok   bool
	}{
		{name: "RWX mount", caps: []*csi.VolumeCapability{mount(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")}, ok: true},
		{name: "every access mode", caps: []*csi.VolumeCapability{
			mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, ""), mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, ""),
			mount(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, ""), mount(csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER, ""),
			mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, ""), mount(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, "")}, ok: true},
		{name: "fsType nfs", caps: []*csi.VolumeCapability{mount(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "nfs")}, ok: true},
		{name: "fsType ext4", caps: []*csi.VolumeCapability{mount(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "ext4")}},
		{name: "block", caps: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}},
		{name: "no access mode", caps: []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}}},
		{name: "none", caps: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateCapabilities(tc.caps)
			if (err == nil) != tc.ok {
				t.Errorf("validateCapabilities = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && status.Code(err) != codes.InvalidArgument {
				t.Errorf("code %v, want InvalidArgument", status.Code(err))
			}
		})
	}
}

func TestResourceOf(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/namespaces/ns/services/pvnfs-x":       "services",
		"/apis/apps/v1/namespaces/ns/deployments":      "deployments",
		"/apis/storage.k8s.io/v1/storageclasses":       "storageclasses",
		"/api/v1/namespaces/ns":                        "namespaces",
		"/api/v1/namespaces/ns/persistentvolumeclaims": "persistentvolumeclaims",
		"/readyz": "/readyz",
	} {
		if got := resourceOf(path); got != want {
			t.Errorf("resourceOf(%q) = %q, want %q", path, got, want)
		}
	}
}
