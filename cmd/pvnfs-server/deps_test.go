package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// forbiddenDeps are packages pvnfs-server must not link. It runs in every volume's
// pod and talks to no API server: the Kubernetes API types and clients would only
// add size, start-up time and attack surface, and the controller's packages (the
// StorageClass parameters, the object builders) would tie the server to the
// controller's release. Its settings reach it as flags (package serverconfig).
var forbiddenDeps = []string{
	"k8s.io/api/",
	"k8s.io/apimachinery/",
	"k8s.io/client-go/",
	"sigs.k8s.io/", // the API machinery's helpers (yaml, json, structured-merge-diff)
	"github.com/pvnfs/pvnfs/pkg/parameters",
	"github.com/pvnfs/pvnfs/pkg/controller",
}

// TestServerDependsOnNoKubernetesAPI lists pvnfs-server's dependencies with the go
// command and refuses the forbidden ones. The control case shows the check finds
// them where they are (the controller).
func TestServerDependsOnNoKubernetesAPI(t *testing.T) {
	forbidden := func(pkg string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		var found []string
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbiddenDeps {
				if strings.HasPrefix(dep, f) {
					found = append(found, dep)
				}
			}
		}
		return found
	}
	if found := forbidden("github.com/pvnfs/pvnfs/cmd/pvnfs-server"); len(found) > 0 {
		t.Errorf("pvnfs-server depends on %d forbidden packages: %s", len(found), strings.Join(found, " "))
	}
	t.Run("control: the controller's dependencies are caught", func(t *testing.T) {
		found := forbidden("github.com/pvnfs/pvnfs/pkg/controller")
		for _, want := range []string{"k8s.io/api/core/v1", "k8s.io/client-go/kubernetes", "github.com/pvnfs/pvnfs/pkg/parameters"} {
			if !strings.Contains(" "+strings.Join(found, " ")+" ", " "+want+" ") {
				t.Errorf("the check does not find %s among pkg/controller's dependencies", want)
			}
		}
	})
}
