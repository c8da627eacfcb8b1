package main

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestNFSClientsFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   string
		want    []string
		wantErr string
	}{
		{name: "unset admits every address"},
		{name: "networks", value: "10.0.0.0/16, fd00:10::/64,", want: []string{"10.0.0.0/16", "fd00:10::/64"}},
		{name: "host bits set", value: "10.0.0.7/16", wantErr: `--nfs-clients: "10.0.0.7/16" has host bits set: did you mean 10.0.0.0/16?`},
		{name: "a name", value: "node-a", wantErr: `--nfs-clients: "node-a" is not a network in CIDR notation`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultOptions()
			fs := flag.NewFlagSet("pvnfs-csi", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.addFlags(fs)
			if err := fs.Parse([]string{"--mode=controller", "--server-image=example.invalid/s:1", "--nfs-clients=" + tc.value}); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("validate() = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := o.controller.clients(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("clients() = %q, want %q", got, tc.want)
			}
		})
	}
}
