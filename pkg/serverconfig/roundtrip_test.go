package serverconfig_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// roundTrip follows a volume's settings the way they travel: StorageClass
// parameters → parameters.Parse → the controller's Config (with the volume's ID and
// client networks) → Args, the server container's arguments → ParseArgs, the
// server's inverse → engine.NewSettings, what the engines serve. It returns the
// controller's Config, the server's, and the arguments between them.
func roundTrip(t testing.TB, params map[string]string, id string, clients []string, mutate func(c *serverconfig.Config)) (want, got serverconfig.Config, args []string) {
	t.Helper()
	p, err := parameters.Parse(params)
	if err != nil {
		t.Fatalf("parameters.Parse(%v): %v", params, err)
	}
	want = p.ServerConfig(id, clients)
	if mutate != nil {
		mutate(&want)
	}
	if err := want.Validate(); err != nil {
		t.Fatalf("the controller's settings are invalid: %v", err)
	}
	args = want.Args()
	got, err = serverconfig.ParseArgs(args)
	if err != nil {
		t.Fatalf("the server refuses %q: %v", args, err)
	}
	s, err := engine.NewSettings(got, "")
	if err != nil {
		t.Fatalf("engine.NewSettings: %v", err)
	}
	if !reflect.DeepEqual(s.Config, got) {
		t.Errorf("the engines get %+v, the flags said %+v", s.Config, got)
	}
	return want, got, args
}

// TestArgsRoundTrip proves the controller's Args and the server's AddFlags agree
// for every setting: whatever the controller derives from StorageClass parameters
// and its own flags, the server parses back unchanged. Each setting must be set to
// something other than its default by at least one case, so a setting added to
// serverconfig without a case here fails this test.
func TestArgsRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		params  map[string]string
		id      string
		clients []string
		// mutate changes what the controller fixes for every volume (the pod's
		// layout), to prove those flags too.
		mutate func(c *serverconfig.Config)
	}{
		{name: "defaults"},
		{name: "another volume", id: "pvc-0a1b2c3d-4e5f"},
		{name: "export restricted to the nodes' networks", clients: []string{"10.0.0.0/16", "fd00:10::/64"}},
		{name: "everything set", params: map[string]string{
			parameters.ExportSync: "false", parameters.RootSquash: "true", parameters.ExportOwner: "33:33",
			parameters.ExportMode: "2775", parameters.NFSThreads: "32", parameters.LeaseSeconds: "15",
			parameters.GraceSeconds: "20", parameters.ServerEngine: "ganesha"}},
		{name: "mode written with three digits", params: map[string]string{parameters.ExportMode: "775"}},
		{name: "sticky mode, root owner", params: map[string]string{parameters.ExportMode: "1777", parameters.ExportOwner: "0:0"}},
		{name: "largest owner the kernel takes", params: map[string]string{parameters.ExportOwner: "4294967294:4294967294"}},
		{name: "values with spaces and capitals", params: map[string]string{parameters.RootSquash: " TRUE ", parameters.NFSThreads: " 1024"}},
		{name: "only the lease raised raises the grace", params: map[string]string{parameters.LeaseSeconds: "3600"}},
		{name: "ganesha at its limits", params: map[string]string{parameters.ServerEngine: "ganesha", parameters.LeaseSeconds: "120", parameters.GraceSeconds: "180"}},
		{name: "parameters that shape the pod, not the server", params: map[string]string{
			parameters.ServerCPULimit: "2", parameters.ServerNodeSelector: "a=b", parameters.NFSVersion: "4.1"}},
		{name: "the pod's layout", mutate: func(c *serverconfig.Config) {
			c.VolumeRoot, c.NFSVersions, c.NFSPort, c.HealthPort = "/srv/vol", []string{"4.0", "4.1", "4.2"}, 12049, 19102
		}},
	}
	defaults := map[string]string{}
	for _, a := range serverconfig.Default().Args() {
		k, v, _ := strings.Cut(a, "=")
		defaults[k] = v
	}
	changed := map[string]bool{}
	chosen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.id == "" {
				tc.id = "pvc-1"
			}
			want, got, args := roundTrip(t, tc.params, tc.id, tc.clients, tc.mutate)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("arguments %q\nparsed %+v\nwant   %+v", args, got, want)
			}
			if again := got.Args(); !slices.Equal(again, args) {
				t.Errorf("the server's settings format as %q, the controller's as %q", again, args)
			}
			for _, a := range args {
				k, v, _ := strings.Cut(a, "=")
				if d, ok := defaults[k]; !ok || d != v {
					changed[strings.TrimPrefix(k, "--")] = true
				}
			}
			for k := range tc.params {
				chosen[k] = true
			}
		})
	}
	for _, f := range serverconfig.Flags() {
		if !changed[f] {
			t.Errorf("no case sets --%s to anything but its default: add one", f)
		}
	}
	for _, k := range serverconfig.ParameterKeys() {
		if !chosen[k] {
			t.Errorf("no case sets the StorageClass parameter %q: add one", k)
		}
	}
}

// TestParameterKeysAreParameters: every server setting a StorageClass chooses is a
// parameter pvnfs accepts, documented under its key.
func TestParameterKeysAreParameters(t *testing.T) {
	for _, k := range serverconfig.ParameterKeys() {
		if !slices.Contains(parameters.Keys(), k) {
			t.Errorf("server setting %q is not a StorageClass parameter", k)
		}
	}
}

// FuzzParametersToServer checks the round trip for any StorageClass parameters
// pvnfs accepts: the server parses exactly what the controller derived, and what it
// parsed formats as the same arguments.
func FuzzParametersToServer(f *testing.F) {
	f.Add(parameters.ExportOwner, "33:33", parameters.ExportMode, "0775", "")
	f.Add(parameters.NFSThreads, "8", parameters.LeaseSeconds, "10", "10.0.0.0/16")
	f.Add(parameters.ServerEngine, "ganesha", parameters.GraceSeconds, "180", "fd00::/8,10.0.0.0/8")
	f.Add(parameters.ExportSync, "False", parameters.RootSquash, "true", "")
	f.Add(parameters.ExportMode, "7", parameters.LeaseSeconds, "3600", "192.168.1.7/32")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, clients string) {
		p, err := parameters.Parse(map[string]string{k1: v1, k2: v2})
		if err != nil {
			return
		}
		nets := strings.Split(clients, ",")
		if clients == "" {
			nets = nil
		}
		if _, err := serverconfig.ParseClients(nets); err != nil {
			return // pvnfs-csi --nfs-clients refuses them
		}
		want := p.ServerConfig("pvc-fuzz", nets)
		if err := want.Validate(); err != nil {
			t.Fatalf("parameters.Parse accepted %q=%q %q=%q, but the settings are invalid: %v", k1, v1, k2, v2, err)
		}
		got, err := serverconfig.ParseArgs(want.Args())
		if err != nil {
			t.Fatalf("the server refuses %q: %v", want.Args(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("arguments %q\nparsed %+v\nwant   %+v", want.Args(), got, want)
		}
		if _, err := engine.NewSettings(got, ""); err != nil {
			t.Fatalf("engine.NewSettings: %v", err)
		}
	})
}

// FuzzArgs checks the server's side alone: whatever value of any flag it accepts,
// the settings it parsed format as arguments it parses back to the same settings.
func FuzzArgs(f *testing.F) {
	f.Add(uint8(0), "pvc-1")
	f.Add(uint8(3), "4.2, 4.0")
	f.Add(uint8(6), "1:2")
	f.Add(uint8(7), "0755")
	f.Add(uint8(13), "10.0.0.0/8,,fd00::/64")
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		flags := serverconfig.Flags()
		base := serverconfig.Default()
		base.VolumeID = "pvc-1"
		args := append(base.Args(), "--"+flags[int(which)%len(flags)]+"="+value)
		c, err := serverconfig.ParseArgs(args)
		if err != nil {
			return
		}
		again, err := serverconfig.ParseArgs(c.Args())
		if err != nil {
			t.Fatalf("the server accepted %q but refuses its own formatting %q: %v", args, c.Args(), err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("%q parsed as %+v, its formatting %q as %+v", args, c, c.Args(), again)
		}
	})
}
