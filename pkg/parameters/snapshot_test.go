package parameters

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSnapshot(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		want    SnapshotParameters
		wantErr string // a part of the error; "" for success
	}{
		{name: "no parameters: the backend driver's default class", in: nil},
		{name: "backend class named", in: map[string]string{BackendSnapshotClass: " csi-ebs-snapclass "}, want: SnapshotParameters{BackendSnapshotClass: "csi-ebs-snapclass"}},
		{name: "the csi-snapshotter's keys are ignored", in: map[string]string{VolumeSnapshotNameKey: "nightly", VolumeSnapshotNamespaceKey: "shop",
			VolumeSnapshotContentNameKey: "snapcontent-1"}},
		{name: "invalid class name names the parameter", in: map[string]string{BackendSnapshotClass: "Fast_SSD"},
			wantErr: `parameter "backendSnapshotClass": value "Fast_SSD" is not accepted: must be the name of a VolumeSnapshotClass`},
		{name: "a StorageClass parameter is not a snapshot parameter", in: map[string]string{BackendStorageClass: "rwo"},
			wantErr: `parameter "backendStorageClass": unknown VolumeSnapshotClass parameter; accepted parameters are backendSnapshotClass`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSnapshot(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseSnapshot(%v) = %v, want an ErrInvalid containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSnapshot(%v) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}
