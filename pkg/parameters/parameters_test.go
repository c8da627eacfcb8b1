package parameters

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestParseDefaults(t *testing.T) {
	p, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Server.Sync || p.Server.RootSquash || p.Server.Engine != EngineKernel || p.Server.Threads != DefaultNFSThreads ||
		p.Server.LeaseSeconds != DefaultLeaseSeconds || p.Server.GraceSeconds != DefaultGraceSeconds ||
		p.FailoverTolerationSeconds != DefaultFailoverTolerationSeconds || p.NFSVersion != "" ||
		p.BackendStorageClass != "" || p.Server.ExportOwner != nil || p.Server.ExportMode != nil {
		t.Errorf("unexpected defaults: %+v", p)
	}
	if got := p.Resources.Limits.Memory().String(); got != DefaultServerMemoryLimit {
		t.Errorf("default memory limit = %s", got)
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		in    map[string]string
		check func(t *testing.T, p Parameters)
	}{
		{name: "backend class", in: map[string]string{BackendStorageClass: "fast-ssd"}, check: func(t *testing.T, p Parameters) {
			if p.BackendStorageClass != "fast-ssd" {
				t.Error(p.BackendStorageClass)
			}
		}},
		{name: "backend access mode auto is the default", in: map[string]string{BackendAccessMode: "auto"}, check: func(t *testing.T, p Parameters) {
			if p.BackendAccessMode != "" {
				t.Error(p.BackendAccessMode)
			}
		}},
		{name: "backend access mode ReadWriteOncePod", in: map[string]string{BackendAccessMode: "ReadWriteOncePod"}, check: func(t *testing.T, p Parameters) {
			if p.BackendAccessMode != corev1.ReadWriteOncePod {
				t.Error(p.BackendAccessMode)
			}
		}},
		{name: "backend access mode ReadWriteOnce", in: map[string]string{BackendAccessMode: " ReadWriteOnce "}, check: func(t *testing.T, p Parameters) {
			if p.BackendAccessMode != corev1.ReadWriteOnce {
				t.Error(p.BackendAccessMode)
			}
		}},
		{name: "provisioner keys are accepted and ignored", in: map[string]string{PVCNameKey: "data", PVNameKey: "pvc-1", ProvisionerPrefix + "anything": "x"}},
		{name: "nfs 4.1", in: map[string]string{NFSVersion: "4.1"}, check: func(t *testing.T, p Parameters) {
			if p.NFSVersion != "4.1" {
				t.Error(p.NFSVersion)
			}
		}},
		{name: "async and root squash", in: map[string]string{ExportSync: "false", RootSquash: "TRUE"}, check: func(t *testing.T, p Parameters) {
			if p.Server.Sync || !p.Server.RootSquash {
				t.Errorf("%+v", p)
			}
		}},
		{name: "owner and setgid mode", in: map[string]string{ExportOwner: "33:33", ExportMode: "2775"}, check: func(t *testing.T, p Parameters) {
			if *p.Server.ExportOwner != (Owner{UID: 33, GID: 33}) || *p.Server.ExportMode != 0o2775 {
				t.Errorf("%v %o", p.Server.ExportOwner, *p.Server.ExportMode)
			}
		}},
		{name: "raising only the lease raises the grace too", in: map[string]string{LeaseSeconds: "90"}, check: func(t *testing.T, p Parameters) {
			if p.Server.LeaseSeconds != 90 || p.Server.GraceSeconds != 90 {
				t.Errorf("lease %d grace %d", p.Server.LeaseSeconds, p.Server.GraceSeconds)
			}
		}},
		{name: "ganesha engine and threads", in: map[string]string{ServerEngine: "ganesha", NFSThreads: "64"}, check: func(t *testing.T, p Parameters) {
			if p.Server.Engine != EngineGanesha || p.Server.Threads != 64 {
				t.Errorf("%+v", p)
			}
		}},
		{name: "resources, zero removes the default limit", in: map[string]string{ServerCPURequest: "250m", ServerCPULimit: "2", ServerMemoryLimit: "0"}, check: func(t *testing.T, p Parameters) {
			if _, ok := p.Resources.Limits[corev1.ResourceMemory]; ok {
				t.Error("memory limit kept")
			}
			if q := p.Resources.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("250m")) != 0 {
				t.Error(q.String())
			}
		}},
		{name: "lowering only the memory limit lowers the default request", in: map[string]string{ServerMemoryLimit: "32Mi"}, check: func(t *testing.T, p Parameters) {
			if q := p.Resources.Requests[corev1.ResourceMemory]; q.String() != "32Mi" {
				t.Error(q.String())
			}
		}},
		{name: "placement", in: map[string]string{
			ServerPriorityClassName:   "pvnfs-server",
			ServerNodeSelector:        "node-role.example.com/storage=true, zone=a",
			ServerTolerations:         "- key: dedicated\n  operator: Equal\n  value: storage\n  effect: NoSchedule\n",
			FailoverTolerationSeconds: "0",
		}, check: func(t *testing.T, p Parameters) {
			if p.PriorityClassName != "pvnfs-server" || len(p.NodeSelector) != 2 || p.NodeSelector["zone"] != "a" ||
				len(p.Tolerations) != 1 || p.Tolerations[0].Value != "storage" || p.FailoverTolerationSeconds != 0 {
				t.Errorf("%+v", p)
			}
		}},
		{name: "tolerations as JSON", in: map[string]string{ServerTolerations: `[{"operator":"Exists"}]`}, check: func(t *testing.T, p Parameters) {
			if len(p.Tolerations) != 1 || p.Tolerations[0].Operator != corev1.TolerationOpExists {
				t.Errorf("%+v", p.Tolerations)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%v): %v", tc.in, err)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

// TestParseRejects is the table the Standards ask for: every malformed parameter is
// refused with an error that names the key.
func TestParseRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		wantKey string
		wantMsg string
	}{
		{name: "unknown key lists the accepted keys", in: map[string]string{"exportsync": "true"}, wantKey: "exportsync", wantMsg: "accepted parameters are backendAccessMode, backendStorageClass"},
		{name: "backend access mode RWX", in: map[string]string{BackendAccessMode: "ReadWriteMany"}, wantKey: BackendAccessMode, wantMsg: `"auto" (ReadWriteOncePod where the cluster and the backend support it, else ReadWriteOnce), "ReadWriteOncePod"`},
		{name: "backend access mode abbreviated", in: map[string]string{BackendAccessMode: "RWOP"}, wantKey: BackendAccessMode, wantMsg: `"ReadWriteOnce"`},
		{name: "backend class not a name", in: map[string]string{BackendStorageClass: "Fast SSD"}, wantKey: BackendStorageClass, wantMsg: "StorageClass"},
		{name: "nfs 3", in: map[string]string{NFSVersion: "3"}, wantKey: NFSVersion, wantMsg: `"4.2" and "4.1"`},
		{name: "nfs 4.0", in: map[string]string{NFSVersion: "4.0"}, wantKey: NFSVersion},
		{name: "bool typo", in: map[string]string{ExportSync: "yes"}, wantKey: ExportSync, wantMsg: `"true" and "false"`},
		{name: "root squash number", in: map[string]string{RootSquash: "1"}, wantKey: RootSquash},
		{name: "owner name", in: map[string]string{ExportOwner: "www-data"}, wantKey: ExportOwner, wantMsg: "uid:gid"},
		{name: "owner without gid", in: map[string]string{ExportOwner: "33"}, wantKey: ExportOwner},
		{name: "owner negative", in: map[string]string{ExportOwner: "-1:0"}, wantKey: ExportOwner},
		{name: "mode not octal", in: map[string]string{ExportMode: "0999"}, wantKey: ExportMode, wantMsg: "octal"},
		{name: "mode too large", in: map[string]string{ExportMode: "17777"}, wantKey: ExportMode},
		{name: "threads zero", in: map[string]string{NFSThreads: "0"}, wantKey: NFSThreads, wantMsg: "from 1 to 1024"},
		{name: "threads text", in: map[string]string{NFSThreads: "many"}, wantKey: NFSThreads},
		{name: "lease too short", in: map[string]string{LeaseSeconds: "5"}, wantKey: LeaseSeconds, wantMsg: "from 10 to 3600"},
		{name: "grace shorter than lease", in: map[string]string{LeaseSeconds: "60", GraceSeconds: "30"}, wantKey: GraceSeconds, wantMsg: "at least leaseSeconds"},
		{name: "engine", in: map[string]string{ServerEngine: "knfsd"}, wantKey: ServerEngine, wantMsg: `"kernel"`},
		{name: "lease beyond Ganesha's limit", in: map[string]string{ServerEngine: "ganesha", LeaseSeconds: "300"}, wantKey: LeaseSeconds, wantMsg: "NFS-Ganesha accepts (120)"},
		{name: "grace beyond Ganesha's limit", in: map[string]string{ServerEngine: "ganesha", GraceSeconds: "200"}, wantKey: GraceSeconds, wantMsg: "NFS-Ganesha accepts (180)"},
		{name: "cpu request not a quantity", in: map[string]string{ServerCPURequest: "lots"}, wantKey: ServerCPURequest, wantMsg: "quantity"},
		{name: "memory limit negative", in: map[string]string{ServerMemoryLimit: "-1Gi"}, wantKey: ServerMemoryLimit},
		{name: "request above limit", in: map[string]string{ServerCPURequest: "2", ServerCPULimit: "1"}, wantKey: ServerCPURequest, wantMsg: "must not exceed serverCPULimit"},
		{name: "priority class", in: map[string]string{ServerPriorityClassName: "High_Priority"}, wantKey: ServerPriorityClassName},
		{name: "node selector without value", in: map[string]string{ServerNodeSelector: "storage"}, wantKey: ServerNodeSelector, wantMsg: "label=value"},
		{name: "node selector bad key", in: map[string]string{ServerNodeSelector: "a b=c"}, wantKey: ServerNodeSelector},
		{name: "node selector empty", in: map[string]string{ServerNodeSelector: " , "}, wantKey: ServerNodeSelector},
		{name: "tolerations not a list", in: map[string]string{ServerTolerations: "key: a"}, wantKey: ServerTolerations, wantMsg: "list of tolerations"},
		{name: "toleration unknown field", in: map[string]string{ServerTolerations: `[{"key":"a","operater":"Exists"}]`}, wantKey: ServerTolerations},
		{name: "toleration bad effect", in: map[string]string{ServerTolerations: `[{"key":"a","operator":"Exists","effect":"Evict"}]`}, wantKey: ServerTolerations, wantMsg: "effect"},
		{name: "toleration exists with value", in: map[string]string{ServerTolerations: `[{"key":"a","operator":"Exists","value":"b"}]`}, wantKey: ServerTolerations},
		{name: "toleration seconds without NoExecute", in: map[string]string{ServerTolerations: `[{"key":"a","operator":"Exists","tolerationSeconds":5}]`}, wantKey: ServerTolerations},
		{name: "failover negative", in: map[string]string{FailoverTolerationSeconds: "-1"}, wantKey: FailoverTolerationSeconds},
		{name: "empty value", in: map[string]string{NFSThreads: ""}, wantKey: NFSThreads},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%v) error = %v, want ErrInvalid", tc.in, err)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Key != tc.wantKey {
				t.Fatalf("Parse(%v) error = %v, want one naming %q", tc.in, err, tc.wantKey)
			}
			if !strings.Contains(err.Error(), `"`+tc.wantKey+`"`) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not name %q and say %q", err, tc.wantKey, tc.wantMsg)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse(map[string]string{NFSThreads: "x", "bogus": "1", ExportSync: "maybe"})
	for _, k := range []string{NFSThreads, "bogus", ExportSync} {
		if !strings.Contains(err.Error(), `"`+k+`"`) {
			t.Errorf("error does not mention %s: %v", k, err)
		}
	}
}

func TestStoredAndLoad(t *testing.T) {
	in := map[string]string{NFSThreads: "16", PVCNameKey: "data", ExportSync: "false"}
	s := Stored(in)
	if strings.Contains(s, ProvisionerPrefix) {
		t.Errorf("Stored keeps provisioner keys: %s", s)
	}
	if s != Stored(map[string]string{ExportSync: "false", NFSThreads: "16"}) {
		t.Error("Stored is not canonical")
	}
	raw, p, err := Load(s)
	if err != nil || p.Server.Threads != 16 || p.Server.Sync || len(raw) != 2 {
		t.Errorf("Load(%s) = %v %+v %v", s, raw, p, err)
	}
	if _, _, err := Load("{"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load of garbage: %v", err)
	}
	if _, p, err := Load(""); err != nil || !p.Server.Sync {
		t.Errorf("Load of empty: %+v %v", p, err)
	}
}

// FuzzParse checks that Parse never panics, reports only *Error values naming a key of
// the input, and that what it accepts survives Stored/Load unchanged.
func FuzzParse(f *testing.F) {
	f.Add(NFSThreads, "8", ServerTolerations, `[{"operator":"Exists"}]`)
	f.Add(ExportOwner, "33:33", ExportMode, "0775")
	f.Add(ServerNodeSelector, "a=b,c=d", LeaseSeconds, "10")
	f.Add("unknown", "", GraceSeconds, "5")
	f.Add(ServerCPURequest, "1", ServerCPULimit, "500m")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		in := map[string]string{k1: v1, k2: v2}
		p, err := Parse(in)
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var pe *Error
				if !errors.As(e, &pe) {
					t.Fatalf("error without key: %v", e)
				}
				if _, ok := in[pe.Key]; !ok {
					t.Fatalf("error names %q, not a key of %v", pe.Key, in)
				}
			}
			return
		}
		_, again, err := Load(Stored(in))
		if err != nil || again.Server.Threads != p.Server.Threads || again.Server.GraceSeconds != p.Server.GraceSeconds || again.Server.Engine != p.Server.Engine {
			t.Fatalf("Load(Stored(%v)) = %+v, %v; want %+v", in, again, err, p)
		}
	})
}
