package node

import (
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMountAttempts(t *testing.T) {
	defaults := "hard noresvport timeo=600 retrans=2 nosharecache"
	tests := []struct {
		name       string
		pinned     string
		mountFlags []string
		readOnly   bool
		want       [][]string
		wantCode   codes.Code
	}{
		{
			name: "defaults try 4.2 then 4.1",
			want: [][]string{split(defaults + " vers=4.2"), split(defaults + " vers=4.1")},
		},
		{
			name: "pinned version alone", pinned: "4.1",
			want: [][]string{split(defaults + " vers=4.1")},
		},
		{
			name: "reader-only access mode adds ro", pinned: "4.2", readOnly: true,
			want: [][]string{split(defaults + " ro vers=4.2")},
		},
		{
			name: "a tuning option adds to the defaults", mountFlags: []string{"nconnect=4"},
			want: [][]string{split(defaults + " nconnect=4 vers=4.2"), split(defaults + " nconnect=4 vers=4.1")},
		},
		{
			name: "an option replaces the default of its key or exclusive group", mountFlags: []string{"soft", "timeo=100"},
			want: [][]string{split("noresvport retrans=2 nosharecache soft timeo=100 vers=4.2"), split("noresvport retrans=2 nosharecache soft timeo=100 vers=4.1")},
		},
		{
			name: "softerr and resvport replace hard and noresvport", mountFlags: []string{"softerr,resvport"},
			want: [][]string{split("timeo=600 retrans=2 nosharecache softerr resvport vers=4.2"), split("timeo=600 retrans=2 nosharecache softerr resvport vers=4.1")},
		},
		{
			name: "comma-joined and blank mount flags are split and trimmed", mountFlags: []string{"hard, noac", " ", ""},
			want: [][]string{split("noresvport timeo=600 retrans=2 nosharecache hard noac vers=4.2"), split("noresvport timeo=600 retrans=2 nosharecache hard noac vers=4.1")},
		},
		{
			name: "a repeated option counts once", mountFlags: []string{"nconnect=2", "nconnect=2"},
			want: [][]string{split(defaults + " nconnect=2 vers=4.2"), split(defaults + " nconnect=2 vers=4.1")},
		},
		{
			name: "version in mountOptions: used with the defaults, no fallback", mountFlags: []string{"nfsvers=4.1", "hard"},
			want: [][]string{split("noresvport timeo=600 retrans=2 nosharecache nfsvers=4.1 hard")},
		},
		{
			name: "vers=4 with minorversion agrees with the pinned version", pinned: "4.1", mountFlags: []string{"vers=4", "minorversion=1"},
			want: [][]string{split(defaults + " vers=4 minorversion=1")},
		},
		{
			name: "only blank flags fall back to the defaults", mountFlags: []string{" "},
			want: [][]string{split(defaults + " vers=4.2"), split(defaults + " vers=4.1")},
		},
		{name: "NFSv3 refused", mountFlags: []string{"vers=3"}, wantCode: codes.InvalidArgument},
		{name: "version contradicts the pinned one", pinned: "4.2", mountFlags: []string{"nfsvers=4.1"}, wantCode: codes.InvalidArgument},
		{name: "vers=4 leaves the minor version open, contradicting a pin", pinned: "4.2", mountFlags: []string{"vers=4"}, wantCode: codes.InvalidArgument},
		{name: "two versions", mountFlags: []string{"vers=4.1", "nfsvers=4.2"}, wantCode: codes.InvalidArgument},
		{name: "nfsvers contradicts minorversion", mountFlags: []string{"nfsvers=4.2", "minorversion=1"}, wantCode: codes.InvalidArgument},
		{name: "minorversion not a number", mountFlags: []string{"minorversion=x"}, wantCode: codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mountAttempts(tc.pinned, tc.mountFlags, tc.readOnly)
			if status.Code(err) != tc.wantCode {
				t.Fatalf("err = %v, want code %v", err, tc.wantCode)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("attempts = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDefaultMountOptionsAreFresh(t *testing.T) {
	a := DefaultMountOptions()
	a[0] = "soft"
	if DefaultMountOptions()[0] != "hard" {
		t.Error("DefaultMountOptions returns shared, mutable state")
	}
}

func split(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
