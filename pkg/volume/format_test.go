package volume

import (
	"errors"
	"strings"
	"testing"
)

func TestIDFromName(t *testing.T) {
	long := strings.Repeat("a", 128)
	tests := []struct {
		name    string
		in      string
		want    string // exact ID, when it is predictable
		wantErr error
	}{
		{name: "provisioner name is kept verbatim", in: "pvc-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a", want: "pvc-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a"},
		{name: "short DNS label is kept verbatim", in: "data", want: "data"},
		{name: "label of exactly 40 characters is kept", in: strings.Repeat("b", 40), want: strings.Repeat("b", 40)},
		{name: "label of 41 characters is hashed", in: strings.Repeat("b", 41)},
		{name: "uppercase is hashed, not merely lowercased", in: "Data"},
		{name: "csi-sanity style name with dots and underscores", in: "sanity-node-full_Volume.1"},
		{name: "128 characters", in: long},
		{name: "only invalid characters", in: "!!!___"},
		{name: "unicode", in: "données-partagées"},
		{name: "empty name", in: "", wantErr: ErrInvalidName},
		{name: "too long", in: strings.Repeat("x", MaxNameLength+1), wantErr: ErrInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := IDFromName(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("IDFromName(%q) error = %v, want %v", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("IDFromName(%q): %v", tc.in, err)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("IDFromName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			checkID(t, tc.in, got)
			again, _ := IDFromName(tc.in)
			if again != got {
				t.Errorf("IDFromName(%q) is not stable: %q then %q", tc.in, got, again)
			}
		})
	}
}

// checkID asserts the properties every ID must have, whatever the name.
func checkID(t *testing.T, name, id string) {
	t.Helper()
	if _, err := ParseID(id); err != nil {
		t.Errorf("ParseID(IDFromName(%q) = %q): %v", name, id, err)
	}
	if n := len(ObjectName(id)); n > 63 {
		t.Errorf("ObjectName(%q) is %d characters, more than a DNS label holds", id, n)
	}
	// The Deployment controller names pods "<deployment>-<rs hash, ≤10>-<5>".
	if n := len(ObjectName(id)) + 1 + 10 + 1 + 5; n > 63 {
		t.Errorf("server pod names for %q would be %d characters", id, n)
	}
	back, err := IDFromObjectName(ObjectName(id))
	if err != nil || back != id {
		t.Errorf("IDFromObjectName(ObjectName(%q)) = %q, %v", id, back, err)
	}
}

func TestIDFromNameDistinguishesNames(t *testing.T) {
	// Names that sanitize to the same prefix must still get different IDs.
	names := []string{"Data", "data_", "DATA", "da-ta", "da.ta", "da_ta", strings.Repeat("a", 128), strings.Repeat("a", 127) + "b"}
	seen := map[string]string{}
	for _, n := range names {
		id, err := IDFromName(n)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := seen[id]; ok {
			t.Errorf("names %q and %q both map to %q", prev, n, id)
		}
		seen[id] = n
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{name: "provisioner ID", in: "pvc-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a", ok: true},
		{name: "hashed ID", in: "sanity-node-full-volume-1-0123456789", ok: true},
		{name: "empty", in: ""},
		{name: "uppercase", in: "PVC-1"},
		{name: "leading dash", in: "-a"},
		{name: "trailing dash", in: "a-"},
		{name: "slash", in: "a/b"},
		{name: "too long", in: strings.Repeat("a", MaxIDLength+1)},
		{name: "csi-sanity fake ID", in: "fake-volume-id-that-does-not-exist-0123456789-abcdefghij"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseID(tc.in)
			if tc.ok && err != nil {
				t.Errorf("ParseID(%q): %v", tc.in, err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidID) {
				t.Errorf("ParseID(%q) error = %v, want ErrInvalidID", tc.in, err)
			}
		})
	}
}

func TestIDFromObjectName(t *testing.T) {
	if _, err := IDFromObjectName("other-x"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("foreign object name accepted: %v", err)
	}
	if id, err := IDFromObjectName("pvnfs-abc"); err != nil || id != "abc" {
		t.Errorf(`IDFromObjectName("pvnfs-abc") = %q, %v`, id, err)
	}
}

func TestLabels(t *testing.T) {
	l := Labels("v1", ComponentServer)
	for k, v := range Selector("v1") {
		if l[k] != v {
			t.Errorf("Labels lacks selector label %s=%s: %v", k, v, l)
		}
	}
	if l[LabelInstance] != "pvnfs-v1" {
		t.Errorf("instance label = %q", l[LabelInstance])
	}
}

func TestContext(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		want    Context
		source  string
		wantErr bool
	}{
		{name: "IPv4 without version", in: map[string]string{"server": "10.96.0.10", "share": "/data/export"},
			want: Context{Server: "10.96.0.10", Share: "/data/export"}, source: "10.96.0.10:/data/export"},
		{name: "IPv6 with version", in: map[string]string{"server": "fd00::a", "share": "/data/export", "nfsVersion": "4.1"},
			want: Context{Server: "fd00::a", Share: "/data/export", NFSVersion: "4.1"}, source: "[fd00::a]:/data/export"},
		{name: "CO keys are ignored", in: map[string]string{"server": "10.0.0.1", "share": "/x", "csi.storage.k8s.io/pod.name": "p"},
			want: Context{Server: "10.0.0.1", Share: "/x"}, source: "10.0.0.1:/x"},
		{name: "missing server", in: map[string]string{"share": "/x"}, wantErr: true},
		{name: "DNS name instead of ClusterIP", in: map[string]string{"server": "pvnfs-x.pvnfs-system.svc", "share": "/x"}, wantErr: true},
		{name: "IPv6 zone", in: map[string]string{"server": "fe80::1%eth0", "share": "/x"}, wantErr: true},
		{name: "relative share", in: map[string]string{"server": "10.0.0.1", "share": "x"}, wantErr: true},
		{name: "share escaping with ..", in: map[string]string{"server": "10.0.0.1", "share": "/data/../etc"}, wantErr: true},
		{name: "share with comma (mount option injection)", in: map[string]string{"server": "10.0.0.1", "share": "/x,ro"}, wantErr: true},
		{name: "NFS 3", in: map[string]string{"server": "10.0.0.1", "share": "/x", "nfsVersion": "3"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseContext(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidContext) {
					t.Fatalf("ParseContext(%v) error = %v, want ErrInvalidContext", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseContext(%v): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseContext = %+v, want %+v", got, tc.want)
			}
			if s := got.Source(); s != tc.source {
				t.Errorf("Source() = %q, want %q", s, tc.source)
			}
			back, err := ParseContext(got.Map())
			if err != nil || back != got {
				t.Errorf("ParseContext(Map()) = %+v, %v; want %+v", back, err, got)
			}
		})
	}
}
