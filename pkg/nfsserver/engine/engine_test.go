package engine

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

func TestNewSettings(t *testing.T) {
	tests := []struct {
		name       string
		mutate     func(c *serverconfig.Config)
		bind       string
		wantMinors []int
		wantErr    string
	}{
		{name: "defaults", wantMinors: []int{1, 2}},
		{name: "versions sorted and deduplicated", mutate: func(c *serverconfig.Config) { c.NFSVersions = []string{"4.2", "4.0", "4.2"} },
			wantMinors: []int{0, 2}},
		{name: "bind address", bind: "::1", wantMinors: []int{1, 2}},
		{name: "bind address must be an IP", bind: "localhost", wantErr: "--bind-address"},
		{name: "invalid config", mutate: func(c *serverconfig.Config) { c.Threads = 0 }, wantErr: "--threads"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := serverconfig.Default()
			c.VolumeID = "pvc-9"
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			s, err := NewSettings(c, tc.bind)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewSettings() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.MinorVersions, tc.wantMinors) {
				t.Errorf("MinorVersions = %v, want %v", s.MinorVersions, tc.wantMinors)
			}
			if s.ExportDir != "/data/export" || s.StateDir != "/data/.pvnfs" || s.ServerName != "pvnfs-pvc-9" ||
				s.FSIDUUID != serverconfig.FSIDUUID("pvc-9") || s.BindAddress != tc.bind {
				t.Errorf("Settings = %+v", s)
			}
			for m := 0; m <= 2; m++ {
				if s.Serves(m) != slices.Contains(tc.wantMinors, m) {
					t.Errorf("Serves(%d) = %v", m, s.Serves(m))
				}
			}
		})
	}
}

func TestStepError(t *testing.T) {
	base := errors.New("exit status 32: mount: unknown filesystem type 'nfsd'.")
	err := Fail("mount the nfsd filesystem", base, "load the nfsd kernel module")
	if got, want := err.Error(), "mount the nfsd filesystem: exit status 32: mount: unknown filesystem type 'nfsd'. To fix: load the nfsd kernel module"; got != want {
		t.Errorf("Error() = %q\nwant      %q", got, want)
	}
	if !errors.Is(err, base) {
		t.Error("StepError does not unwrap to its cause")
	}
	if Fail("x", nil, "y") != nil {
		t.Error("Fail(nil) is not nil")
	}
	wrapped := RunStep("a step", func() error { return base })
	var se *StepError
	if !errors.As(wrapped, &se) || se.Step != "a step" {
		t.Errorf("RunStep() = %v, want a StepError naming the step", wrapped)
	}
	if RunStep("ok", func() error { return nil }) != nil {
		t.Error("RunStep of a successful step failed")
	}
	if kept := RunStep("outer", func() error { return err }); kept != err {
		t.Errorf("RunStep rewrapped a StepError: %v", kept)
	}
}

func TestOperations(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, ""}, {3, "ACCESS"}, {25, "READ"}, {38, "WRITE"}, {53, "SEQUENCE"}, {75, "REMOVEXATTR"}, {76, ""}, {-1, ""}} {
		if got := OperationName(tc.n); got != tc.want {
			t.Errorf("OperationName(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	for in, want := range map[string]string{"OP_READ": "READ", "write": "WRITE", " getattr ": "GETATTR"} {
		if got := NormalizeOperation(in); got != want {
			t.Errorf("NormalizeOperation(%q) = %q, want %q", in, got, want)
		}
	}
}
