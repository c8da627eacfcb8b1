package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestNodeFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // substring; "" for valid
		check   func(t *testing.T, o nodeOptions)
	}{
		{name: "defaults", check: func(t *testing.T, o nodeOptions) {
			if o.mountTimeout != time.Minute || o.unmountTimeout != 10*time.Second || o.statTimeout != 5*time.Second {
				t.Errorf("defaults = %+v", o)
			}
		}},
		{name: "all set", args: []string{"--mount-timeout=2s", "--unmount-timeout=1s", "--stat-timeout=500ms"},
			check: func(t *testing.T, o nodeOptions) {
				if o.mountTimeout != 2*time.Second || o.unmountTimeout != time.Second || o.statTimeout != 500*time.Millisecond {
					t.Errorf("parsed = %+v", o)
				}
			}},
		{name: "zero mount timeout", args: []string{"--mount-timeout=0"}, wantErr: "--mount-timeout must be positive"},
		{name: "negative unmount timeout", args: []string{"--unmount-timeout=-1s"}, wantErr: "--unmount-timeout must be positive"},
		{name: "zero stat timeout", args: []string{"--stat-timeout=0s"}, wantErr: "--stat-timeout must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := checkNodeFlags(t, tc.args, tc.wantErr)
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

// checkNodeFlags parses args as node flags and checks that validate fails with
// wantErr in its message ("": succeeds).
func checkNodeFlags(t *testing.T, args []string, wantErr string) nodeOptions {
	t.Helper()
	o := defaultNodeOptions()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := o.validate()
	if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
		t.Fatalf("validate() = %v, want %q", err, wantErr)
	}
	return o
}

func TestNodeFlagsInHelp(t *testing.T) {
	help := helpText(t)
	for _, f := range []string{"-mount-timeout", "-unmount-timeout", "-stat-timeout"} {
		if !strings.Contains(help, f) {
			t.Errorf("--help lacks %s", f)
		}
	}
}

// helpText is what pvnfs-csi --help lists.
func helpText(t *testing.T) string {
	t.Helper()
	o := defaultOptions()
	fs := flag.NewFlagSet("pvnfs-csi", flag.ContinueOnError)
	o.addFlags(fs)
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.PrintDefaults()
	return help.String()
}

func TestCheckHelpers(t *testing.T) {
	tests := []struct {
		name    string
		have    []string
		wantErr []string
	}{
		{name: "all in PATH", have: []string{"mount", "umount", "mount.nfs"}},
		{name: "mount.nfs only in /sbin", have: []string{"mount", "umount", "/sbin/mount.nfs"}},
		{name: "no NFS client", have: []string{"mount", "umount"}, wantErr: []string{"mount.nfs not found", "nfs-common"}},
		{name: "nothing", wantErr: []string{"mount not found", "umount not found", "mount.nfs not found"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookPath := func(name string) (string, error) {
				for _, h := range tc.have {
					if h == name {
						return name, nil
					}
				}
				return "", errors.New("not found")
			}
			err := checkHelpers(lookPath)
			if len(tc.wantErr) == 0 && err != nil {
				t.Fatalf("checkHelpers() = %v", err)
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("checkHelpers() = %v, want it to say %q", err, w)
				}
			}
		})
	}
}
