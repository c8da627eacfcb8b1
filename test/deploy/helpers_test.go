package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

const (
	// releaseName is the Helm release the tests install; it is also the name the
	// generated manifests use, so object names match deploy/kubernetes.
	releaseName = "pvnfs"
	// driverNamespace is the chart's default namespace.name.
	driverNamespace = "pvnfs-system"
	// chartDir and manifestsDir are relative to the repository root.
	chartDir     = "deploy/charts/pvnfs"
	manifestsDir = "deploy/kubernetes"
	// waitLong bounds every wait for the control plane; it is a deadline against
	// hangs, never an assertion about speed.
	waitLong = 2 * time.Minute
	// nodeCIDR stands for the nodes' network in nfsClients.cidrs, which the chart
	// requires. Nothing enforces NetworkPolicy or exports here (no CNI, no NFS).
	nodeCIDR = "10.0.0.0/16"
)

// chartValues are the values every test installs or renders the chart with: the
// defaults plus the one value that has none.
var chartValues = []string{"--set", "nfsClients.cidrs={" + nodeCIDR + "}"}

// repoPath returns an absolute path inside the repository.
func repoPath(t testing.TB, rel string) string {
	t.Helper()
	root, err := localcluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// missing skips t because part of its outside world is absent, or fails it under
// PVNFS_REQUIRE_ALL=1 (make test), so CI can never pass by skipping. In -short mode
// (make test-unit) it always skips.
func missing(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: %s", why)
	}
	if os.Getenv(localcluster.RequireAll) == "1" {
		t.Fatalf("%s (%s=1: not skipping)", why, localcluster.RequireAll)
	}
	t.Skip(why)
}

// helmBinary returns the helm that test/tools/install.sh builds (once, about three
// minutes cold), or skips.
func helmBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		missing(t, "the chart tests need helm, built by test/tools/install.sh")
	}
	tools, err := localcluster.InstallTools("helm")
	// InstallTools also reports the control-plane binaries missing; helm alone is
	// enough here.
	if tools.Helm == "" {
		missing(t, fmt.Sprintf("helm is not available (test/tools/install.sh helm): %v", err))
	}
	return tools.Helm
}

// runHelm runs helm with an isolated configuration (no user repositories or
// plugins) and returns its standard output.
func runHelm(t testing.TB, helm string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Dir = repoPath(t, ".")
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// render runs `helm template` on the chart with the release name the manifests use
// and chartValues (args may override them).
func render(t testing.TB, helm string, args ...string) []byte {
	t.Helper()
	base := append([]string{"template", releaseName, repoPath(t, chartDir), "--namespace", driverNamespace}, chartValues...)
	out, err := runHelm(t, helm, append(base, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeObjects splits a multi-document YAML stream into objects, skipping empty
// documents (comments only).
func decodeObjects(t testing.TB, stream []byte) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading YAML: %v", err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("document is not YAML: %v\n%s", err, doc)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("document is not a Kubernetes object: %v\n%s", err, doc)
		}
		out = append(out, u)
	}
}

// find returns the object of a kind and name, or fails.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("the chart renders no %s %q", kind, name)
	return nil
}

// typed converts a rendered object into its Go type.
func typed[T any](t testing.TB, u *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &out
}

// process is a binary the tests run on the host (pvnfs-csi, csi-provisioner), in its
// own process group, killed with the test binary if that dies.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(name, logPath, bin string, args, env []string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after 10 s.
func (p *process) stop() {
	if p == nil || !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the end of the process's log, for failure messages.
func (p *process) tail() string {
	if p == nil {
		return ""
	}
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	state := "running"
	if !p.running() {
		state = "exited: " + p.cmd.ProcessState.String()
	}
	return fmt.Sprintf("--- %s (%s), end of %s:\n%s", p.name, state, p.log, b)
}

// poll calls cond every interval until it returns true or an error, or until timeout;
// it returns the last explanation cond gave, for the failure message.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		ok, why, err := cond(ctx)
		if why != "" {
			last = why
		}
		if err != nil {
			return last, err
		}
		if ok {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("timed out after %s", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
