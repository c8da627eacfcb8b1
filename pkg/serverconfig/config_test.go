package serverconfig

import (
	"flag"
	"reflect"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/parameters"
)

// TestArgsRoundTrip proves the controller's Args and the server's AddFlags agree:
// whatever the controller derives from parameters, the server parses back unchanged.
func TestArgsRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		params  map[string]string
		clients []string
	}{
		{name: "defaults"},
		{name: "export restricted to the nodes' networks", clients: []string{"10.0.0.0/16", "fd00:10::/64"}},
		{name: "everything set", params: map[string]string{
			parameters.ExportSync: "false", parameters.RootSquash: "true", parameters.ExportOwner: "33:33",
			parameters.ExportMode: "2775", parameters.NFSThreads: "32", parameters.LeaseSeconds: "15",
			parameters.GraceSeconds: "20", parameters.ServerEngine: "ganesha"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parameters.Parse(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			want := FromParameters("pvc-1", p)
			want.Clients = tc.clients
			if err := want.Validate(); err != nil {
				t.Fatalf("derived config invalid: %v", err)
			}
			var got Config
			fs := flag.NewFlagSet("pvnfs-server", flag.ContinueOnError)
			got.AddFlags(fs)
			if err := fs.Parse(want.Args()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parsed %+v\nwant   %+v", got, want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Default()
	ok.VolumeID = "pvc-1"
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string
	}{
		{name: "valid", mutate: func(c *Config) {}},
		{name: "no volume ID", mutate: func(c *Config) { c.VolumeID = "" }, wantErr: "--volume-id"},
		{name: "engine", mutate: func(c *Config) { c.Engine = "nfsd" }, wantErr: "--engine"},
		{name: "relative root", mutate: func(c *Config) { c.VolumeRoot = "data" }, wantErr: "--volume-root"},
		{name: "root is /", mutate: func(c *Config) { c.VolumeRoot = "/" }, wantErr: "--volume-root"},
		{name: "NFS 3", mutate: func(c *Config) { c.NFSVersions = []string{"3"} }, wantErr: "--nfs-versions"},
		{name: "no versions", mutate: func(c *Config) { c.NFSVersions = nil }, wantErr: "--nfs-versions"},
		{name: "owner", mutate: func(c *Config) { c.ExportOwner = "root" }, wantErr: "--export-owner"},
		{name: "mode", mutate: func(c *Config) { c.ExportMode = "888" }, wantErr: "--export-mode"},
		{name: "threads", mutate: func(c *Config) { c.Threads = 0 }, wantErr: "--threads"},
		{name: "lease", mutate: func(c *Config) { c.LeaseSeconds = 1 }, wantErr: "--lease-seconds"},
		{name: "grace", mutate: func(c *Config) { c.GraceSeconds = 4000 }, wantErr: "--grace-seconds"},
		{name: "port", mutate: func(c *Config) { c.NFSPort = 70000 }, wantErr: "--nfs-port"},
		{name: "same ports", mutate: func(c *Config) { c.HealthPort = c.NFSPort }, wantErr: "--health-port"},
		{name: "clients", mutate: func(c *Config) { c.Clients = []string{"10.0.0.0/8", "192.168.1.7/32", "fd00::/8"} }},
		{name: "client not a network", mutate: func(c *Config) { c.Clients = []string{"10.0.0.0/8", "node-a"} }, wantErr: `--clients: "node-a" is not a network in CIDR notation`},
		{name: "client address without length", mutate: func(c *Config) { c.Clients = []string{"10.0.0.7"} }, wantErr: "--clients"},
		{name: "client with host bits", mutate: func(c *Config) { c.Clients = []string{"10.0.0.7/16"} }, wantErr: "did you mean 10.0.0.0/16?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.NFSVersions = append([]string(nil), ok.NFSVersions...)
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestArgsWithoutClientsUnchanged: a controller without --nfs-clients builds the
// same arguments as before the setting existed, so it does not mark every existing
// server outdated.
func TestArgsWithoutClientsUnchanged(t *testing.T) {
	c := Default()
	c.VolumeID = "pvc-1"
	if args := strings.Join(c.Args(), " "); strings.Contains(args, "--"+FlagClients) {
		t.Errorf("args without clients: %s", args)
	}
	c.Clients = []string{"10.0.0.0/16", "10.1.0.0/16"}
	if args := strings.Join(c.Args(), " "); !strings.HasSuffix(args, " --clients=10.0.0.0/16,10.1.0.0/16") {
		t.Errorf("args with clients: %s", args)
	}
}

func TestPaths(t *testing.T) {
	c := Default()
	if c.ExportDir() != "/data/export" || c.StateDir() != "/data/.pvnfs" {
		t.Errorf("ExportDir %s StateDir %s", c.ExportDir(), c.StateDir())
	}
	c.VolumeRoot = "/tmp/x/"
	if c.ExportDir() != "/tmp/x/export" {
		t.Error(c.ExportDir())
	}
}

func TestFSID(t *testing.T) {
	a, b := FSIDUUID("pvc-1"), FSIDUUID("pvc-2")
	if a == b || a != FSIDUUID("pvc-1") {
		t.Errorf("FSID not stable and distinct: %s %s", a, b)
	}
	if len(a) != 36 || strings.Count(a, "-") != 4 {
		t.Errorf("FSIDUUID = %q, not UUID-shaped", a)
	}
	maj, min := FSIDMajorMinor("pvc-1")
	maj2, min2 := FSIDMajorMinor("pvc-1")
	if maj != maj2 || min != min2 || (maj == 0 && min == 0) {
		t.Errorf("FSIDMajorMinor unstable: %d.%d %d.%d", maj, min, maj2, min2)
	}
}
