package nfsserver_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/ganesha"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/kernel"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// TestExportSettingsBothEngines is the one table for what clients see of an export,
// whichever engine serves it: each case states the flags and what the kernel's
// exports line and versions request, and Ganesha's configuration, must say. The
// fsid is the contract's (serverconfig.FSID), never recomputed here.
func TestExportSettingsBothEngines(t *testing.T) {
	uuid := serverconfig.FSIDUUID
	majmin := func(id string) string {
		maj, min := serverconfig.FSIDMajorMinor(id)
		return fmt.Sprintf("%d.%d", maj, min)
	}
	tests := []struct {
		name   string
		mutate func(c *serverconfig.Config)
		// kernelOptions are the exports(5) options, in order; kernelVersions what
		// nfsd's versions file is told.
		kernelOptions  string
		kernelVersions string
		// kernelClients are the exports line's client specs, each followed by the
		// options; "" means "*".
		kernelClients []string
		// ganesha are lines ganesha.conf must have; ganeshaNot lines it must not.
		ganesha    []string
		ganeshaNot []string
	}{
		{
			name:           "defaults: sync, no root squash, NFS 4.1 and 4.2",
			kernelOptions:  "rw,sync,no_subtree_check,insecure,no_root_squash,fsid=" + uuid("pvc-a") + ",sec=sys",
			kernelVersions: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			ganeshaNot:     []string{"CLIENT", "Access_Type = None;"},
			ganesha: []string{`Path = "/data/export";`, `Pseudo = "/data/export";`, "Access_Type = RW;",
				"Squash = No_Root_Squash;", "Filesystem_id = " + majmin("pvc-a") + ";", "Minor_Versions = 1, 2;", "Protocols = 4;"},
		},
		{
			name:           "export restricted to the nodes' networks",
			mutate:         func(c *serverconfig.Config) { c.Clients = []string{"10.0.0.0/16", "fd00:10::/64"} },
			kernelOptions:  "rw,sync,no_subtree_check,insecure,no_root_squash,fsid=" + uuid("pvc-a") + ",sec=sys",
			kernelVersions: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			kernelClients:  []string{"10.0.0.0/16", "fd00:10::/64"},
			ganesha:        []string{"Access_Type = None;", "CLIENT {", "Clients = 10.0.0.0/16, fd00:10::/64;", "Access_Type = RW;"},
		},
		{
			name:           "root squash",
			mutate:         func(c *serverconfig.Config) { c.RootSquash = true },
			kernelOptions:  "rw,sync,no_subtree_check,insecure,root_squash,fsid=" + uuid("pvc-a") + ",sec=sys",
			kernelVersions: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			ganesha:        []string{"Squash = Root_Squash;"},
			ganeshaNot:     []string{"Squash = No_Root_Squash;"},
		},
		{
			// Ganesha has no async mode: its configuration does not change, and the
			// engine warns at start.
			name:           "async",
			mutate:         func(c *serverconfig.Config) { c.Sync = false },
			kernelOptions:  "rw,async,no_subtree_check,insecure,no_root_squash,fsid=" + uuid("pvc-a") + ",sec=sys",
			kernelVersions: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			ganeshaNot:     []string{"NFS_Commit", "async"},
		},
		{
			name:           "NFS 4.0 added, as the userspace test client needs",
			mutate:         func(c *serverconfig.Config) { c.NFSVersions = []string{"4.2", "4.0", "4.1"} },
			kernelOptions:  "rw,sync,no_subtree_check,insecure,no_root_squash,fsid=" + uuid("pvc-a") + ",sec=sys",
			kernelVersions: "-2 -3 +4 +4.0 +4.1 +4.2\n",
			ganesha:        []string{"Minor_Versions = 0, 1, 2;"},
		},
		{
			name:           "NFS 4.1 only",
			mutate:         func(c *serverconfig.Config) { c.NFSVersions = []string{"4.1"} },
			kernelOptions:  "rw,sync,no_subtree_check,insecure,no_root_squash,fsid=" + uuid("pvc-a") + ",sec=sys",
			kernelVersions: "-2 -3 +4 -4.0 +4.1 -4.2\n",
			ganesha:        []string{"Minor_Versions = 1;"},
		},
		{
			name:           "another volume has another fsid",
			mutate:         func(c *serverconfig.Config) { c.VolumeID = "pvc-b" },
			kernelOptions:  "rw,sync,no_subtree_check,insecure,no_root_squash,fsid=" + uuid("pvc-b") + ",sec=sys",
			kernelVersions: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			ganesha:        []string{"Filesystem_id = " + majmin("pvc-b") + ";", `Server_Scope = "pvnfs-pvc-b";`},
			ganeshaNot:     []string{"Filesystem_id = " + majmin("pvc-a") + ";"},
		},
		{
			name:           "another volume root moves the export and the path clients mount",
			mutate:         func(c *serverconfig.Config) { c.VolumeRoot = "/srv/vol" },
			kernelOptions:  "rw,sync,no_subtree_check,insecure,no_root_squash,fsid=" + uuid("pvc-a") + ",sec=sys",
			kernelVersions: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			ganesha:        []string{`Path = "/srv/vol/export";`, `Pseudo = "/srv/vol/export";`, `RecoveryRoot = "/srv/vol/.pvnfs/ganesha";`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := serverconfig.Default()
			c.VolumeID = "pvc-a"
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			s, err := engine.NewSettings(c, "")
			if err != nil {
				t.Fatal(err)
			}
			exports := string(kernel.ExportsFile(s))
			clients := tc.kernelClients
			if clients == nil {
				clients = []string{"*"}
			}
			var specs []string
			for _, cl := range clients {
				specs = append(specs, cl+"("+tc.kernelOptions+")")
			}
			wantLine := "\n" + c.ExportDir() + " " + strings.Join(specs, " ") + "\n"
			if !strings.HasSuffix(exports, wantLine) {
				t.Errorf("kernel exports file:\n%s\nwant it to end with%s", exports, wantLine)
			}
			if got := kernel.VersionsRequest(s); got != tc.kernelVersions {
				t.Errorf("kernel versions = %q, want %q", got, tc.kernelVersions)
			}
			conf := string(ganesha.Config(s, "/run/pvnfs"))
			lines := map[string]bool{}
			for _, l := range strings.Split(conf, "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, want := range tc.ganesha {
				if !lines[want] {
					t.Errorf("ganesha.conf lacks the line %q:\n%s", want, conf)
				}
			}
			for _, not := range tc.ganeshaNot {
				if strings.Contains(conf, not) {
					t.Errorf("ganesha.conf has %q:\n%s", not, conf)
				}
			}
		})
	}
}
