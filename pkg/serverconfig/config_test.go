package serverconfig

import (
	"strings"
	"testing"
)

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
		{name: "owner", mutate: func(c *Config) { c.ExportOwner = &Owner{UID: -1} }, wantErr: "--export-owner"},
		{name: "owner beyond the kernel's IDs", mutate: func(c *Config) { c.ExportOwner = &Owner{UID: 1 << 32} }, wantErr: "--export-owner"},
		{name: "mode", mutate: func(c *Config) { m := Mode(0o10000); c.ExportMode = &m }, wantErr: "--export-mode"},
		{name: "ganesha lease", mutate: func(c *Config) { c.Engine, c.LeaseSeconds, c.GraceSeconds = EngineGanesha, 121, 121 },
			wantErr: "--lease-seconds=121: NFS-Ganesha takes at most 120"},
		{name: "ganesha grace", mutate: func(c *Config) { c.Engine, c.GraceSeconds = EngineGanesha, 181 },
			wantErr: "--grace-seconds=181: NFS-Ganesha takes at most 180"},
		{name: "kernel lease", mutate: func(c *Config) { c.LeaseSeconds, c.GraceSeconds = 3600, 3600 }},
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
