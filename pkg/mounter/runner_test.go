package mounter

import (
	"context"
	"testing"
)

// TestExecRunnerSpeaksEnglish: callers classify helpers' messages, so helpers must
// not answer in the node's language. (procgroup's tests cover deadlines and kills.)
func TestExecRunnerSpeaksEnglish(t *testing.T) {
	out, err := NewExecRunner().Run(context.Background(), "sh", "-c", "echo $LC_ALL")
	if err != nil || string(out) != "C\n" {
		t.Errorf("Run = %q, %v; want LC_ALL=C", out, err)
	}
}
