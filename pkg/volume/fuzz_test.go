package volume

import (
	"errors"
	"testing"
)

// FuzzIDFromName checks that every name either is refused with ErrInvalidName or
// gives a stable ID that parses and from which every derived name fits a DNS label.
func FuzzIDFromName(f *testing.F) {
	for _, s := range []string{"pvc-0b5e3e4c-9c57-4a1e-8a0b-4e0f2b6f1d2a", "", "Data", "a/b", "-", "données", "sanity-controller-create-volume-1234"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, err := IDFromName(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("IDFromName(%q): unexpected error %v", name, err)
			}
			return
		}
		checkID(t, name, id)
	})
}

// FuzzParseID checks that ParseID never accepts what cannot name an object.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"pvc-1", "", "A", "a-", strings40()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if _, err := ParseID(id); err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("ParseID(%q): unexpected error %v", id, err)
			}
			return
		}
		if !isDNSLabel(ObjectName(id)) {
			t.Fatalf("ParseID accepted %q but %q is not a DNS label", id, ObjectName(id))
		}
	})
}

// FuzzParseContext checks that an accepted context round-trips and yields a mount
// source that cannot smuggle in mount options.
func FuzzParseContext(f *testing.F) {
	f.Add("10.96.0.1", "/data/export", "")
	f.Add("fd00::1", "/data/export", "4.1")
	f.Add("host.example", "/x", "4.2")
	f.Add("10.0.0.1", "/x,ro", "")
	f.Fuzz(func(t *testing.T, server, share, version string) {
		in := map[string]string{ContextServer: server, ContextShare: share}
		if version != "" {
			in[ContextNFSVersion] = version
		}
		c, err := ParseContext(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidContext) {
				t.Fatalf("ParseContext(%v): unexpected error %v", in, err)
			}
			return
		}
		if back, err := ParseContext(c.Map()); err != nil || back != c {
			t.Fatalf("round trip of %+v gave %+v, %v", c, back, err)
		}
		for _, r := range c.Source() {
			if r == ',' || r == 0 || r == '\n' {
				t.Fatalf("source %q carries %q", c.Source(), r)
			}
		}
	})
}

func strings40() string { return "abcdefghijabcdefghijabcdefghijabcdefghij" }
