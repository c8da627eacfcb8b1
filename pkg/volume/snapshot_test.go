package volume

import (
	"errors"
	"strings"
	"testing"
)

func TestSnapshotKeyFromName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // exact key, when it is predictable
		wantErr error
	}{
		{name: "csi-snapshotter name is kept verbatim", in: "snapshot-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a", want: "snapshot-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a"},
		{name: "label of exactly the maximum is kept", in: strings.Repeat("s", MaxSnapshotKeyLength), want: strings.Repeat("s", MaxSnapshotKeyLength)},
		{name: "one character more is hashed", in: strings.Repeat("s", MaxSnapshotKeyLength+1)},
		{name: "csi-sanity name with dots and underscores", in: "CreateSnapshot-snapshot-1_Snap.2"},
		{name: "128 characters", in: strings.Repeat("n", 128)},
		{name: "only invalid characters", in: "___"},
		{name: "empty", in: "", wantErr: ErrInvalidName},
		{name: "too long", in: strings.Repeat("x", MaxNameLength+1), wantErr: ErrInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SnapshotKeyFromName(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("SnapshotKeyFromName(%q) error = %v, want %v", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("SnapshotKeyFromName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			checkSnapshotKey(t, tc.in, got)
		})
	}
}

// checkSnapshotKey asserts what every key must give, whatever the name: a stable
// key, an ID that parses back to it in any namespace, and a VolumeSnapshot name that
// is a DNS label and maps back to the key.
func checkSnapshotKey(t *testing.T, name, key string) {
	t.Helper()
	if again, _ := SnapshotKeyFromName(name); again != key {
		t.Errorf("SnapshotKeyFromName(%q) is not stable: %q then %q", name, key, again)
	}
	for _, ns := range []string{"pvnfs-system", strings.Repeat("n", 63)} {
		id := FormatSnapshotID(ns, key)
		if len(id) > 128 {
			t.Errorf("snapshot ID %q is %d bytes, more than CSI's 128", id, len(id))
		}
		gotNS, gotKey, err := ParseSnapshotID(id)
		if err != nil || gotNS != ns || gotKey != key {
			t.Errorf("ParseSnapshotID(%q) = %q, %q, %v; want %q, %q", id, gotNS, gotKey, err, ns, key)
		}
	}
	obj := SnapshotObjectName(key)
	if !isDNSLabel(obj) {
		t.Errorf("SnapshotObjectName(%q) = %q is not a DNS label", key, obj)
	}
	if back, err := SnapshotKeyFromObjectName(obj); err != nil || back != key {
		t.Errorf("SnapshotKeyFromObjectName(%q) = %q, %v", obj, back, err)
	}
}

func TestSnapshotKeyFromNameDistinguishesNames(t *testing.T) {
	seen := map[string]string{}
	for _, n := range []string{"Snap", "snap_", "SNAP", "sn.ap", strings.Repeat("a", 128), strings.Repeat("a", 127) + "b"} {
		key, err := SnapshotKeyFromName(n)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[key]; dup {
			t.Errorf("names %q and %q share the key %q", other, n, key)
		}
		seen[key] = n
	}
}

func TestParseSnapshotID(t *testing.T) {
	tests := []struct {
		name       string
		id         string
		ns, key    string
		wantFailed bool
	}{
		{name: "namespace and key", id: "pvnfs-system/snapshot-1", ns: "pvnfs-system", key: "snapshot-1"},
		{name: "empty", id: "", wantFailed: true},
		{name: "no separator (a volume ID)", id: "pvc-1", wantFailed: true},
		{name: "csi-sanity's invented ID", id: "non-existing-snapshot-id", wantFailed: true},
		{name: "empty namespace", id: "/snap", wantFailed: true},
		{name: "empty key", id: "pvnfs-system/", wantFailed: true},
		{name: "second separator", id: "pvnfs-system/a/b", wantFailed: true},
		{name: "uppercase key", id: "pvnfs-system/Snap", wantFailed: true},
		{name: "key too long for an object name", id: "ns/" + strings.Repeat("k", MaxSnapshotKeyLength+1), wantFailed: true},
		{name: "namespace too long", id: strings.Repeat("n", 64) + "/k", wantFailed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns, key, err := ParseSnapshotID(tc.id)
			if tc.wantFailed {
				if !errors.Is(err, ErrInvalidSnapshotID) {
					t.Fatalf("ParseSnapshotID(%q) = %q, %q, %v; want ErrInvalidSnapshotID", tc.id, ns, key, err)
				}
				return
			}
			if err != nil || ns != tc.ns || key != tc.key {
				t.Fatalf("ParseSnapshotID(%q) = %q, %q, %v; want %q, %q", tc.id, ns, key, err, tc.ns, tc.key)
			}
			if back := FormatSnapshotID(ns, key); back != tc.id {
				t.Errorf("FormatSnapshotID(%q, %q) = %q, want %q", ns, key, back, tc.id)
			}
		})
	}
}

func TestSnapshotKeyFromObjectName(t *testing.T) {
	for _, name := range []string{"snapshot-1", "pvnfs-", "pvnfs-Snap", "pvnfs-" + strings.Repeat("k", MaxSnapshotKeyLength+1)} {
		if key, err := SnapshotKeyFromObjectName(name); err == nil {
			t.Errorf("SnapshotKeyFromObjectName(%q) = %q, want an error", name, key)
		}
	}
}

func TestContentSource(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		kind, id   string
		wantFailed bool
	}{
		{name: "snapshot", in: "snapshot:pvnfs-system/snapshot-1", kind: SourceSnapshot, id: "pvnfs-system/snapshot-1"},
		{name: "volume", in: "volume:pvc-1", kind: SourceVolume, id: "pvc-1"},
		{name: "no kind", in: "pvc-1", wantFailed: true},
		{name: "unknown kind", in: "backup:pvc-1", wantFailed: true},
		{name: "snapshot with a volume ID", in: "snapshot:pvc-1", wantFailed: true},
		{name: "volume with a snapshot ID", in: "volume:pvnfs-system/snapshot-1", wantFailed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, id, err := ParseContentSource(tc.in)
			if tc.wantFailed {
				if !errors.Is(err, ErrInvalidContentSource) {
					t.Fatalf("ParseContentSource(%q) = %q, %q, %v; want ErrInvalidContentSource", tc.in, kind, id, err)
				}
				return
			}
			if err != nil || kind != tc.kind || id != tc.id {
				t.Fatalf("ParseContentSource(%q) = %q, %q, %v", tc.in, kind, id, err)
			}
			if back := FormatContentSource(kind, id); back != tc.in {
				t.Errorf("FormatContentSource(%q, %q) = %q, want %q", kind, id, back, tc.in)
			}
		})
	}
}

// FuzzSnapshotKeyFromName checks that every name is refused with ErrInvalidName or
// gives a key from which every derived name is valid.
func FuzzSnapshotKeyFromName(f *testing.F) {
	for _, s := range []string{"snapshot-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a", "", "Snap", "a/b", "-", "instantané"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		key, err := SnapshotKeyFromName(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("SnapshotKeyFromName(%q): unexpected error %v", name, err)
			}
			return
		}
		checkSnapshotKey(t, name, key)
	})
}

// FuzzParseSnapshotID checks that ParseSnapshotID accepts only IDs whose parts name
// a namespace and a VolumeSnapshot, and that they format back to the same ID.
func FuzzParseSnapshotID(f *testing.F) {
	for _, s := range []string{"pvnfs-system/snapshot-1", "", "/", "a/b/c", "pvc-1", "A/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		ns, key, err := ParseSnapshotID(id)
		if err != nil {
			if !errors.Is(err, ErrInvalidSnapshotID) {
				t.Fatalf("ParseSnapshotID(%q): unexpected error %v", id, err)
			}
			return
		}
		if !isDNSLabel(ns) || !isDNSLabel(SnapshotObjectName(key)) {
			t.Fatalf("ParseSnapshotID accepted %q: namespace %q, object %q", id, ns, SnapshotObjectName(key))
		}
		if FormatSnapshotID(ns, key) != id {
			t.Fatalf("FormatSnapshotID(ParseSnapshotID(%q)) = %q", id, FormatSnapshotID(ns, key))
		}
	})
}
