package kernel

import (
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

func settings(minors ...int) engine.Settings {
	return engine.Settings{Config: serverconfig.Config{VolumeID: "pvc-1"}, ExportDir: "/data/export", FSIDUUID: "0a0b0c0d-1111-2222-3333-444455556666",
		MinorVersions: minors}
}

func TestVersions(t *testing.T) {
	tests := []struct {
		name        string
		minors      []int
		wantRequest string
		kernelSays  string // what the versions file answers
		wantErr     string
	}{
		{name: "4.1 and 4.2", minors: []int{1, 2}, wantRequest: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			kernelSays: "-2 -3 +4 -4.0 +4.1 +4.2\n"},
		{name: "kernel built without NFSv2 omits it", minors: []int{1, 2}, wantRequest: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			kernelSays: "-3 +4 -4.0 +4.1 +4.2\n"},
		{name: "with 4.0, which the kernel never reports as +4.0", minors: []int{0, 1, 2},
			wantRequest: "-2 -3 +4 +4.0 +4.1 +4.2\n", kernelSays: "-2 -3 +4 +4.1 +4.2\n"},
		{name: "4.1 only", minors: []int{1}, wantRequest: "-2 -3 +4 -4.0 +4.1 -4.2\n",
			kernelSays: "-2 -3 +4 -4.0 +4.1 -4.2\n"},
		{name: "NFSv3 stayed on", minors: []int{1, 2}, wantRequest: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			kernelSays: "-2 +3 +4 -4.0 +4.1 +4.2\n", wantErr: "NFSv2/NFSv3 are still on"},
		{name: "old kernel without 4.2", minors: []int{1, 2}, wantRequest: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			kernelSays: "-2 -3 +4 -4.0 +4.1 -4.2\n", wantErr: "NFS 4.2 is off"},
		{name: "4.0 left on", minors: []int{1, 2}, wantRequest: "-2 -3 +4 -4.0 +4.1 +4.2\n",
			kernelSays: "-2 -3 +4 +4.1 +4.2\n", wantErr: "NFS 4.0 is not off"},
		{name: "NFSv4 off", minors: []int{1}, wantRequest: "-2 -3 +4 -4.0 +4.1 -4.2\n",
			kernelSays: "-2 +3 -4\n", wantErr: "NFSv4 is off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := settings(tc.minors...)
			if got := VersionsRequest(s); got != tc.wantRequest {
				t.Errorf("VersionsRequest() = %q, want %q", got, tc.wantRequest)
			}
			err := checkVersions(tc.kernelSays, s)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("checkVersions(%q) = %v, want %q", tc.kernelSays, err, tc.wantErr)
			}
		})
	}
}

func TestEscapePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/data/export", "/data/export"},
		{"/my data/export", `/my\040data/export`},
		{"/a#b\\c", `/a\043b\134c`},
		{"/tab\there", `/tab\011here`},
	}
	for _, tc := range tests {
		if got := escapePath(tc.in); got != tc.want {
			t.Errorf("escapePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEtabHasExport(t *testing.T) {
	s := settings(1, 2)
	tests := []struct {
		name, etab, wantErr string
	}{
		{name: "listed", etab: "/data/export\t*(rw,sync,wdelay,fsid=0a0b0c0d-1111-2222-3333-444455556666,sec=sys)\n"},
		{name: "empty", etab: "", wantErr: "does not list /data/export"},
		{name: "other path only", etab: "/data/export2\t*(rw,fsid=0a0b0c0d-1111-2222-3333-444455556666)\n", wantErr: "does not list"},
		{name: "wrong fsid", etab: "/data/export\t*(rw,fsid=1)\n", wantErr: "without fsid=0a0b0c0d"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := etabHasExport([]byte(tc.etab), s)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("etabHasExport() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseStats(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    engine.Stats
		wantErr string
	}{
		{name: "recent kernel", in: "rc 0 1 2\nio 100 200\nth 4 0\nnet 1 0 1 1\nproc4 2 5 17\nproc4ops 40 0 0 0 1 0 0 0 0 0 9 0 0 0 0 0 3 0 0 0 0 0 0 12 0 0 4 0 0 0 0 0 0 0 0 0 0 0 0 6 0\n",
			want: engine.Stats{ReadBytes: 100, WrittenBytes: 200, Threads: 4, Clients: -1,
				Requests: map[string]uint64{"4": 17}, Operations: map[string]uint64{"ACCESS": 1, "GETATTR": 9, "LOOKUP": 3, "PUTFH": 12, "READ": 4, "WRITE": 6}}},
		{name: "old kernel with a th histogram and no NFSv4 yet", in: "io 0 0\nth 8 0 0.000 0.000\n",
			want: engine.Stats{Threads: 8, Clients: -1, Requests: map[string]uint64{}, Operations: map[string]uint64{}}},
		{name: "no io line", in: "rc 0 0 0\n", wantErr: "no io line"},
		{name: "io without written", in: "io 12\n", wantErr: "want read and written"},
		{name: "garbled io", in: "io 12 x\n", wantErr: "io 12 x"},
		{name: "proc4ops count mismatch", in: "io 1 2\nproc4ops 5 1 2\n", wantErr: "count does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStats([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseStats() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			nonZero := map[string]uint64{}
			for k, v := range got.Operations {
				if v != 0 {
					nonZero[k] = v
				}
			}
			got.Operations = nonZero
			if got.ReadBytes != tc.want.ReadBytes || got.WrittenBytes != tc.want.WrittenBytes || got.Threads != tc.want.Threads ||
				got.Clients != tc.want.Clients || !equalMaps(got.Requests, tc.want.Requests) || !equalMaps(got.Operations, tc.want.Operations) {
				t.Errorf("ParseStats() = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func equalMaps(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
