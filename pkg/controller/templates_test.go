package controller

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/parameters"
)

var updateTemplates = flag.Bool("update-templates", false, "rewrite testdata/server-templates/*.json from the current builders")

// TestServerTemplatesUnchanged pins the server Deployment pvnfs builds for a set of
// StorageClasses, byte for byte. The reconciler takes a Deployment whose template
// hash differs from what it builds for a server of another pvnfs version and counts
// it in pvnfs_outdated_servers (operators roll those by hand), so a change here
// changes every existing volume's server: make it on purpose, rewrite the files
// with -update-templates, and say so in the release notes (docs/operations.md).
func TestServerTemplatesUnchanged(t *testing.T) {
	everyServerSetting := map[string]string{
		parameters.ExportSync: "false", parameters.RootSquash: "true", parameters.ExportOwner: "33:33",
		parameters.ExportMode: "775", parameters.NFSThreads: "16", parameters.LeaseSeconds: "45",
		parameters.GraceSeconds: "60", parameters.NFSVersion: "4.1",
	}
	for _, tc := range []struct {
		name    string
		params  map[string]string
		clients []string
	}{
		{name: "defaults"},
		{name: "kernel-every-server-setting", params: everyServerSetting},
		{name: "kernel-nfs-clients", clients: []string{"10.0.0.0/16", "fd00:10::/64"}},
		{name: "ganesha-pod-shape", params: map[string]string{
			parameters.ServerEngine: "ganesha", parameters.BackendStorageClass: "ebs-gp3",
			parameters.BackendAccessMode: "ReadWriteOnce", parameters.ServerCPURequest: "250m",
			parameters.ServerMemoryRequest: "128Mi", parameters.ServerCPULimit: "2", parameters.ServerMemoryLimit: "512Mi",
			parameters.ServerPriorityClassName: "pvnfs-server", parameters.ServerNodeSelector: "pool=storage",
			parameters.ServerTolerations:         `[{"key":"dedicated","operator":"Equal","value":"storage","effect":"NoSchedule"}]`,
			parameters.FailoverTolerationSeconds: "15", parameters.LeaseSeconds: "90",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig
			cfg.NFSClients = tc.clients
			cfg.ServerPullSecrets = []string{"registry-a"}
			dep := cfg.buildDeployment(testSpec(t, tc.params))
			got, err := json.MarshalIndent(struct {
				Annotations map[string]string `json:"annotations"`
				Labels      map[string]string `json:"labels"`
				Spec        any               `json:"spec"`
			}{dep.Annotations, dep.Labels, dep.Spec}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			file := filepath.Join("testdata", "server-templates", tc.name+".json")
			if *updateTemplates {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update-templates to write it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("the server Deployment for %s changed; every existing server of such a volume would count as outdated.\ngot:\n%s\nwant (%s):\n%s", tc.name, got, file, want)
			}
		})
	}
}
