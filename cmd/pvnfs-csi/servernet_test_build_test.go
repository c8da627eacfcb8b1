//go:build pvnfs_standin

package main

import (
	"context"
	"flag"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/pvnfs/pvnfs/test/standin"
)

// TestServerNetworkStandInFlag: the test build accepts an absolute directory only,
// and its dialer reaches <ip>:<port> through the socket standin.HealthSocket names.
func TestServerNetworkStandInFlag(t *testing.T) {
	for _, tc := range []struct {
		name, arg, wantErr string
	}{
		{name: "unset"},
		{name: "absolute", arg: "--server-network-stand-in-dir=/tmp/pods"},
		{name: "relative", arg: "--server-network-stand-in-dir=pods", wantErr: "--server-network-stand-in-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o serverNetworkOptions
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.addFlags(fs)
			var args []string
			if tc.arg != "" {
				args = append(args, tc.arg)
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("validate() = %v, want %q", err, tc.wantErr)
			}
			if (o.dial() == nil) != (tc.arg == "") {
				t.Errorf("dial() set = %v with %q", o.dial() != nil, tc.arg)
			}
		})
	}
	if help := helpText(t); !strings.Contains(help, "TEST BUILD ONLY: reach a server pod's health port") {
		t.Errorf("--help does not mark --server-network-stand-in-dir as test build only:\n%s", help)
	}

	dir := t.TempDir()
	ln, err := net.Listen("unix", standin.HealthSocket(dir, "10.244.0.7", 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
	o := serverNetworkOptions{dir: dir}
	c, err := o.dial()(context.Background(), "tcp", "10.244.0.7:9000")
	if err != nil {
		t.Fatalf("dialing the pod's stand-in socket: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "ok" {
		t.Errorf("read %q through the stand-in socket", b)
	}
	if _, err := o.dial()(context.Background(), "tcp", "10.244.0.8:9000"); err == nil {
		t.Error("a pod without a stand-in socket was reached")
	}
}
