//go:build vmlab

package guest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pvnfs/pvnfs/test/vmlab/guest"
)

// TestMain runs a role when a fixture started this binary as one (a pod's PID 1,
// an application), and otherwise prepares the guest and runs the tests.
func TestMain(m *testing.M) {
	if handled, code := guest.MainRole(); handled {
		os.Exit(code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err := guest.Setup(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmlab guest setup: %v\n", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}
