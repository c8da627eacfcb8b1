package parameters

import (
	"strings"
	"testing"
)

func TestCheckMutable(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]string
		wantErr []string
	}{
		{name: "empty"},
		{name: "every mutable key", in: map[string]string{NFSThreads: "16", LeaseSeconds: "60", GraceSeconds: "60", ServerCPURequest: "200m",
			ServerCPULimit: "1", ServerMemoryRequest: "128Mi", ServerMemoryLimit: "2Gi", ServerPriorityClassName: "high",
			ServerNodeSelector: "zone=a", ServerTolerations: "[]", FailoverTolerationSeconds: "60"}},
		{name: "fixed keys", in: map[string]string{ServerEngine: "ganesha", BackendStorageClass: "gp3", NFSThreads: "16"},
			wantErr: []string{`parameter "backendStorageClass": cannot change on an existing volume`, `parameter "serverEngine": cannot change`}},
		{name: "unknown key", in: map[string]string{"XXX_FakeKey": "x"}, wantErr: []string{`parameter "XXX_FakeKey": unknown parameter; a VolumeAttributesClass may set failoverTolerationSeconds,`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckMutable(tc.in)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Errorf("CheckMutable() = %v", err)
				}
				return
			}
			for _, want := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("CheckMutable() = %v, want it to say %q", err, want)
				}
			}
		})
	}
}

// Every mutable key is a parameter Parse knows, and the class's value wins.
func TestMutableKeysParseAndMerge(t *testing.T) {
	for _, k := range MutableKeys() {
		if parsers[k] == nil {
			t.Errorf("mutable key %q is no parameter", k)
		}
	}
	merged := Merge(map[string]string{NFSThreads: "8", ServerEngine: EngineKernel}, map[string]string{NFSThreads: "32"})
	p, err := Parse(merged)
	if err != nil || p.Server.Threads != 32 || merged[ServerEngine] != EngineKernel {
		t.Errorf("Parse(Merge()) = %+v, %v; want 32 threads on the kernel engine", p.Server, err)
	}
}
