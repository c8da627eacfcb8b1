package localcluster

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// RequireAll is set (to 1) by `make test`: then a test whose outside world is missing
// (root, the control-plane binaries, NFS-Ganesha) fails instead of skipping, so CI
// can never pass by skipping.
const RequireAll = "PVNFS_REQUIRE_ALL"

// Shared is a cluster shared by the tests of one package. It starts on the first Get,
// so a package's unit tests never wait for it, and stops when Main returns.
type Shared struct {
	// Options and Setup configure the cluster; Setup runs once after it starts.
	Options Options
	Setup   func(context.Context, *Cluster) error

	once    sync.Once
	cluster *Cluster
	unavail string
}

// Main runs the tests and stops the cluster if one was started. It returns the exit
// code for os.Exit; call it from TestMain.
func (s *Shared) Main(m *testing.M) int {
	flag.Parse()
	code := m.Run()
	if c := s.cluster; c != nil {
		c.Stop()
		if code == 0 {
			_ = os.RemoveAll(c.Dir)
		} else {
			fmt.Fprintf(os.Stderr, "localcluster: tests failed; control-plane logs kept in %s/logs\n", c.Dir)
		}
	}
	return code
}

// Get returns the shared cluster, starting it on first use, or skips the test (fails
// under PVNFS_REQUIRE_ALL=1) saying why there is none.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	s.once.Do(s.start)
	if s.cluster != nil {
		return s.cluster
	}
	if os.Getenv(RequireAll) == "1" {
		t.Fatalf("%s (%s=1: not skipping)", s.unavail, RequireAll)
	}
	t.Skip(s.unavail)
	return nil
}

func (s *Shared) start() {
	if os.Geteuid() != 0 {
		s.unavail = "the local control plane needs root (it installs Debian packages and its tests mount)"
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts := s.Options
	if opts.Logf == nil && testing.Verbose() {
		opts.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "localcluster: "+f+"\n", a...) }
	}
	c, err := Start(ctx, opts)
	if err == nil && s.Setup != nil {
		if err = s.Setup(ctx, c); err != nil {
			c.Stop()
		}
	}
	if err != nil {
		s.unavail = fmt.Sprintf("the local control plane did not start: %v", err)
		return
	}
	s.cluster = c
}
