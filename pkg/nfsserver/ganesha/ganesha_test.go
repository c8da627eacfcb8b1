package ganesha

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/command"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/command/commandtest"
	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

func testSettings(t *testing.T, mutate func(c *serverconfig.Config)) engine.Settings {
	t.Helper()
	c := serverconfig.Default()
	c.VolumeID = "pvc-0a1b2c3d"
	c.VolumeRoot = t.TempDir()
	if mutate != nil {
		mutate(&c)
	}
	s, err := engine.NewSettings(c, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckSettings(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *serverconfig.Config)
		wantErr string
	}{
		{name: "defaults"},
		{name: "longest lease and grace", mutate: func(c *serverconfig.Config) { c.LeaseSeconds, c.GraceSeconds = 120, 180 }},
		{name: "lease too long", mutate: func(c *serverconfig.Config) { c.LeaseSeconds = 121 }, wantErr: "--lease-seconds=121: NFS-Ganesha takes at most 120"},
		{name: "grace too long", mutate: func(c *serverconfig.Config) { c.GraceSeconds = 600 }, wantErr: "--grace-seconds=600: NFS-Ganesha takes at most 180"},
		{name: "quote in the path", mutate: func(c *serverconfig.Config) { c.VolumeRoot = "/data/\"x" }, wantErr: "cannot hold quotes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSettings(testSettings(t, tc.mutate))
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("CheckSettings() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestConfigBlocks checks what the shared export table (package nfsserver) does
// not: the engine-only settings of ganesha.conf.
func TestConfigBlocks(t *testing.T) {
	s := testSettings(t, func(c *serverconfig.Config) {
		c.LeaseSeconds, c.GraceSeconds, c.NFSPort, c.Threads = 15, 20, 12049, 16
	})
	conf := string(Config(s, "/run/pvnfs"))
	for _, want := range []string{
		"\tProtocols = 4;\n", "\tNFS_Port = 12049;\n", "\tBind_addr = 127.0.0.1;\n",
		"\tEnable_NLM = false;\n", "\tEnable_RQUOTA = false;\n", "\tEnable_UDP = false;\n",
		"\tRPC_Ioq_ThrdMax = 16;\n", "\tEnable_FULLV4_Stats = true;\n", "\tActive_krb5 = false;\n",
		"\tCCacheDir = \"/run/pvnfs\";\n", "\tRecoveryBackend = fs;\n", "\tRecoveryRoot = \"" + s.StateDir + "/ganesha\";\n",
		"\tLease_Lifetime = 15;\n", "\tGrace_Period = 20;\n", "\tOnly_Numeric_Owners = true;\n",
		"\tServer_Scope = \"pvnfs-pvc-0a1b2c3d\";\n", "\tServer_Owner = \"pvnfs-pvc-0a1b2c3d\";\n",
		"\tExport_Id = 1;\n", "\tTransports = TCP;\n", "\tSecType = sys;\n", "\t\tName = VFS;\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("ganesha.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Count(conf, "{") != strings.Count(conf, "}") {
		t.Errorf("unbalanced braces:\n%s", conf)
	}
	s.BindAddress = ""
	if strings.Contains(string(Config(s, "/run/pvnfs")), "Bind_addr") {
		t.Error("Bind_addr set without --bind-address; Ganesha must listen on every address")
	}
}

func TestDBusConfig(t *testing.T) {
	conf := string(DBusConfig("/run/pvnfs"))
	for _, want := range []string{"<listen>unix:path=/run/pvnfs/dbus.sock</listen>", `<allow own="org.ganesha.nfsd"/>`, `<deny user="*"/>`, `<allow user="root"/>`} {
		if !strings.Contains(conf, want) {
			t.Errorf("dbus.conf lacks %q:\n%s", want, conf)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(o *Options)
		wantErr string
	}{
		{name: "defaults", mutate: func(*Options) {}},
		{name: "relative run dir", mutate: func(o *Options) { o.RunDir = "run" }, wantErr: "--run-dir"},
		{name: "run dir too long for a socket", mutate: func(o *Options) { o.RunDir = "/" + strings.Repeat("r", 100) }, wantErr: "too long"},
		{name: "log level", mutate: func(o *Options) { o.LogLevel = "DEBUG" }, wantErr: "--ganesha-log-level"},
		{name: "no ganesha", mutate: func(o *Options) { o.GaneshaCmd = "" }, wantErr: "--ganesha-cmd"},
		{name: "no timeout", mutate: func(o *Options) { o.CallTimeout = 0 }, wantErr: "--ganesha-call-timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.mutate(&o)
			err := o.Validate()
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestStartFailures runs the start against a fake runner: the files and commands
// up to the failing step, and the step and remedy it reports. The successful start
// is proven against the real Ganesha in TestGaneshaRealNFS.
func TestStartFailures(t *testing.T) {
	// listenOnSocket makes the fake dbus-daemon create its socket, as the real one does.
	listenOnSocket := func(t *testing.T) func(command.Cmd, *commandtest.Proc) error {
		return func(c command.Cmd, _ *commandtest.Proc) error {
			conf := strings.TrimPrefix(c.Args[0], "--config-file=")
			sock := filepath.Join(filepath.Dir(conf), socketName)
			ln, err := net.Listen("unix", sock)
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			return nil
		}
	}
	tests := []struct {
		name      string
		setup     func(t *testing.T, f *commandtest.Fake)
		options   func(o *Options)
		wantStep  string
		wantErr   string
		wantCalls int
	}{
		{name: "image without /etc/mtab", setup: func(t *testing.T, f *commandtest.Fake) {},
			options:  func(o *Options) { o.MountTable = filepath.Join(o.RunDir, "no-mtab") },
			wantStep: "check the mount table", wantErr: "to /proc/self/mounts", wantCalls: 0},
		{name: "dbus-daemon missing", setup: func(t *testing.T, f *commandtest.Fake) {
			f.OnStart["dbus-daemon"] = func(command.Cmd, *commandtest.Proc) error {
				return fmt.Errorf(`exec: "dbus-daemon": executable file not found in $PATH`)
			}
		}, wantStep: "start dbus-daemon", wantErr: "Debian package dbus-daemon", wantCalls: 1},
		{name: "bus never comes up", setup: func(t *testing.T, f *commandtest.Fake) {},
			wantStep: "start dbus-daemon", wantErr: "was not ready before the deadline", wantCalls: 1},
		{name: "ganesha dies at start", setup: func(t *testing.T, f *commandtest.Fake) {
			f.OnStart["dbus-daemon"] = listenOnSocket(t)
			f.OnStart["ganesha.nfsd"] = func(_ command.Cmd, p *commandtest.Proc) error {
				p.Exit(fmt.Errorf("exit status 2"))
				return nil
			}
		}, wantStep: "wait for NFS and the export", wantErr: "ganesha.nfsd (pid 11) exited: exit status 2", wantCalls: 2},
		{name: "NFS never answers", setup: func(t *testing.T, f *commandtest.Fake) {
			f.OnStart["dbus-daemon"] = listenOnSocket(t)
		}, wantStep: "wait for NFS and the export", wantErr: "was not ready before the deadline", wantCalls: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSettings(t, nil)
			o := DefaultOptions()
			o.RunDir = t.TempDir()
			o.CallTimeout = 200 * time.Millisecond
			if tc.options != nil {
				tc.options(&o)
			}
			f := commandtest.New(10)
			tc.setup(t, f)
			e, err := New(s, o, f)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err = e.Start(ctx)
			var se *engine.StepError
			if !asStepError(err, &se) || se.Step != tc.wantStep || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start() = %v, want step %q with %q", err, tc.wantStep, tc.wantErr)
			}
			wantCalls := []string{
				"start dbus-daemon --config-file=" + o.RunDir + "/dbus.conf --nofork --nopidfile --nosyslog",
				"start ganesha.nfsd -F -f " + o.RunDir + "/ganesha.conf -L STDERR -N NIV_EVENT -p " + o.RunDir +
					"/ganesha.pid [env DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + o.RunDir + "/dbus.sock]",
			}[:tc.wantCalls]
			if got := f.Calls(); !slices.Equal(got, wantCalls) {
				t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
			}
			if tc.wantCalls == 2 {
				conf, err := os.ReadFile(filepath.Join(o.RunDir, configName))
				if err != nil || string(conf) != string(Config(s, o.RunDir)) {
					t.Errorf("ganesha.conf = %q, %v; want the generated configuration", conf, err)
				}
			}
			if st, err := os.Stat(filepath.Join(s.StateDir, RecoverySubdir)); tc.wantCalls > 0 && (err != nil || st.Mode().Perm() != 0o700) {
				t.Errorf("recovery root: %v %v, want a 0700 directory on the backend volume", st, err)
			}
			_ = e.Stop(context.Background())
			for _, p := range f.Procs() {
				if !p.Exited() {
					t.Errorf("%s still runs after Stop", p.Cmd.Name)
				}
			}
		})
	}
}

func TestNewRefusesWhatGaneshaCannotServe(t *testing.T) {
	s := testSettings(t, func(c *serverconfig.Config) { c.LeaseSeconds = 300; c.GraceSeconds = 300 })
	if _, err := New(s, DefaultOptions(), commandtest.New(1)); err == nil || !strings.Contains(err.Error(), "--lease-seconds=300") {
		t.Errorf("New() = %v, want the lease refused", err)
	}
}

// TestDecode feeds the decoders the shapes godbus gives Ganesha's replies: structs
// as []any, arrays of structs as [][]any.
func TestDecode(t *testing.T) {
	t.Run("pairs in a struct (GetGlobalOPS)", func(t *testing.T) {
		got := pairs([]any{"NFSv3", uint64(0), "NFSv40", uint64(58), "NFSv41", uint64(3), "NFSv42", uint64(9), "NLM4", uint64(0)})
		want := map[string]uint64{"NFSv3": 0, "NFSv40": 58, "NFSv41": 3, "NFSv42": 9, "NLM4": 0}
		if !mapsEqual(got, want) {
			t.Errorf("pairs() = %v, want %v", got, want)
		}
	})
	t.Run("pairs in an array of structs", func(t *testing.T) {
		got := pairs([][]any{{"NFSv40", uint64(1)}, {"NFSv41", uint64(2)}})
		if !mapsEqual(got, map[string]uint64{"NFSv40": 1, "NFSv41": 2}) {
			t.Errorf("pairs() = %v", got)
		}
	})
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{{"NFSv40", "4.0", true}, {"NFSv42", "4.2", true}, {"NFSv3", "", false}, {"NLM4", "", false}, {"NFSv4", "", false}} {
		if got, ok := minorVersion(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("minorVersion(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		in   any
		want uint64
		ok   bool
	}{{uint64(7), 7, true}, {uint32(7), 7, true}, {uint16(7), 7, true}, {int64(-1), 0, false}, {"7", 0, false}} {
		if got, ok := toUint(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("toUint(%#v) = %d, %v", tc.in, got, ok)
		}
	}
	if n := len(items([][]any{{1}, {2}, {3}})); n != 3 {
		t.Errorf("items() of an array of 3 structs has %d elements", n)
	}
	if items("not a slice") != nil {
		t.Error("items() of a string is not nil")
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
