package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/nfsserver"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// TestHelpDocumentsEveryFlag: --help exits 0 and describes every flag the
// controller may pass (serverconfig.Flags) and every server-only flag.
func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out); code != 0 {
		t.Fatalf("--help exit status %d", code)
	}
	help := out.String()

	names := serverconfig.Flags() // every flag the controller may pass

	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o := nfsserver.DefaultOptions()
	o.AddFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })

	for _, name := range names {
		i := strings.Index(help, "  -"+name+" ")
		if i < 0 {
			i = strings.Index(help, "  -"+name+"\n")
		}
		if i < 0 {
			t.Errorf("--help does not list --%s", name)
			continue
		}
		// The flag's description follows on the next, indented line.
		rest := help[i:]
		lines := strings.SplitN(rest, "\n", 3)
		if len(lines) < 2 || len(strings.TrimSpace(lines[1])) < 10 {
			t.Errorf("--%s has no description in --help", name)
		}
	}
	if !strings.Contains(help, "docs/server.md") {
		t.Error("--help does not point to docs/server.md")
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantErr: "flag provided but not defined"},
		{name: "no volume ID", args: []string{}, wantErr: "--volume-id"},
		{name: "bad engine", args: []string{"--volume-id=pvc-1", "--engine=nfsd"}, wantErr: "--engine"},
		{name: "ganesha lease beyond its limit", args: []string{"--volume-id=pvc-1", "--engine=ganesha", "--lease-seconds=300", "--grace-seconds=300"},
			wantErr: "NFS-Ganesha takes at most 120"},
		{name: "arguments", args: []string{"--volume-id=pvc-1", "extra"}, wantErr: "takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(tc.args, &out); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !strings.Contains(out.String(), tc.wantErr) {
				t.Errorf("output %q lacks %q", out.String(), tc.wantErr)
			}
		})
	}
}

// TestControllerArgsParse: what the controller passes is accepted as it is.
func TestControllerArgsParse(t *testing.T) {
	c := serverconfig.Default()
	mode := serverconfig.Mode(0o2775)
	c.VolumeID, c.ExportOwner, c.ExportMode = "pvc-1", &serverconfig.Owner{UID: 33, GID: 33}, &mode
	fs := flag.NewFlagSet("pvnfs-server", flag.ContinueOnError)
	var got serverconfig.Config
	got.AddFlags(fs)
	o := nfsserver.DefaultOptions()
	o.AddFlags(fs)
	if err := fs.Parse(c.Args()); err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("the controller's arguments do not validate: %v", err)
	}
}
