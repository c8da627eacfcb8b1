//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// config is the suite's configuration, from the environment (README.md).
type config struct {
	// cluster is the kind cluster's name (E2E_KIND_CLUSTER).
	cluster string
	// reuse uses an existing cluster of that name and leaves it (E2E_REUSE_CLUSTER=1);
	// keep leaves the cluster the suite made (E2E_KEEP_CLUSTER=1).
	reuse, keep bool
	// nodeImage is kind's node image (E2E_KIND_NODE_IMAGE); "" is kind's default.
	nodeImage string
	// engine is the StorageClass's serverEngine (E2E_SERVER_ENGINE).
	engine string
	// tag is the images' tag (E2E_IMAGE_TAG).
	tag string
	// root is the repository, dir a scratch directory (kubeconfig, values, copies).
	root, dir string
}

const (
	imageRepo    = "pvnfs" // make images IMAGE_REPO=pvnfs
	release      = "pvnfs"
	driverNS     = "pvnfs-system"
	volumeIDKey  = "pvnfs.io/volume-id"
	backendClass = "standard" // kind's local-path class: ReadWriteOnce, WaitForFirstConsumer
)

// kindConfig is the cluster: one control plane and three workers, so that replicas
// and the server spread over several nodes.
const kindConfig = `kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
  - role: worker
`

// suite is the installed driver the tests run against.
var suite *config

func TestMain(m *testing.M) {
	flag.Parse()
	c, err := setUp()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setting up: %v\n", err)
		if c != nil {
			c.diagnostics()
			c.tearDown()
		}
		os.Exit(1)
	}
	suite = c
	code := m.Run()
	if code != 0 {
		c.diagnostics()
	}
	c.tearDown()
	os.Exit(code)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// setUp makes (or reuses) the kind cluster, builds and loads the images and
// installs the chart. Every step has a deadline.
func setUp() (*config, error) {
	c := &config{
		cluster: env("E2E_KIND_CLUSTER", "pvnfs-e2e"), reuse: os.Getenv("E2E_REUSE_CLUSTER") == "1",
		keep: os.Getenv("E2E_KEEP_CLUSTER") == "1", nodeImage: os.Getenv("E2E_KIND_NODE_IMAGE"),
		engine: env("E2E_SERVER_ENGINE", "kernel"), tag: env("E2E_IMAGE_TAG", "e2e"),
	}
	if c.engine != "kernel" && c.engine != "ganesha" {
		return nil, fmt.Errorf("E2E_SERVER_ENGINE=%q: kernel or ganesha", c.engine)
	}
	var missing []string
	for _, tool := range []string{"docker", "kind", "kubectl", "helm", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing on PATH: %s (README.md lists what the suite needs)", strings.Join(missing, ", "))
	}
	var err error
	if c.root, err = repoRoot(); err != nil {
		return nil, err
	}
	if c.dir, err = os.MkdirTemp("", "pvnfs-e2e-"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	if c.reuse {
		out, err := run(ctx, "", "kind", "get", "kubeconfig", "--name", c.cluster)
		if err != nil {
			return c, err
		}
		if err := os.WriteFile(c.kubeconfig(), []byte(out), 0o600); err != nil {
			return c, err
		}
	} else {
		cfg := filepath.Join(c.dir, "kind.yaml")
		if err := os.WriteFile(cfg, []byte(kindConfig), 0o644); err != nil {
			return c, err
		}
		args := []string{"create", "cluster", "--name", c.cluster, "--config", cfg, "--kubeconfig", c.kubeconfig(), "--wait", "5m"}
		if c.nodeImage != "" {
			args = append(args, "--image", c.nodeImage)
		}
		logf("creating kind cluster %s (1 control plane, 3 workers)", c.cluster)
		if _, err := run(ctx, "", "kind", args...); err != nil {
			return c, err
		}
	}

	logf("building the images (make images) and loading them into the cluster")
	if _, err := run(ctx, c.root, "make", "images", "VERSION="+c.tag, "IMAGE_REPO="+imageRepo); err != nil {
		return c, err
	}
	if _, err := run(ctx, "", "kind", "load", "docker-image", "--name", c.cluster,
		c.image("pvnfs-csi"), c.image("pvnfs-server")); err != nil {
		return c, err
	}

	logf("installing the chart (server engine %s, backend class %s)", c.engine, backendClass)
	values := filepath.Join(c.dir, "values.yaml")
	if err := os.WriteFile(values, []byte(c.values()), 0o644); err != nil {
		return c, err
	}
	if _, err := run(ctx, c.root, "helm", "upgrade", "--install", release, "deploy/charts/pvnfs",
		"--kubeconfig", c.kubeconfig(), "--namespace", "default", "-f", values, "--wait", "--timeout", "5m"); err != nil {
		return c, err
	}
	for _, obj := range []string{"deployment/pvnfs-controller", "daemonset/pvnfs-node"} {
		if _, err := c.kubectl(ctx, "-n", driverNS, "rollout", "status", obj, "--timeout=5m"); err != nil {
			return c, err
		}
	}
	return c, nil
}

// values are the chart values for kind: the images just loaded (never pulled), the
// local-path class as backend, and the engine under test.
func (c *config) values() string {
	return fmt.Sprintf(`images:
  pvnfsCSI: {registry: docker.io, repository: %[1]s/pvnfs-csi, tag: %[2]q, pullPolicy: Never}
  pvnfsServer: {registry: docker.io, repository: %[1]s/pvnfs-server, tag: %[2]q, pullPolicy: Never}
storageClass:
  parameters:
    backendStorageClass: %[3]s
    serverEngine: %[4]s
`, imageRepo, c.tag, backendClass, c.engine)
}

func (c *config) image(name string) string { return imageRepo + "/" + name + ":" + c.tag }

func (c *config) kubeconfig() string { return filepath.Join(c.dir, "kubeconfig") }

// tearDown uninstalls the chart and deletes the cluster unless asked to keep it.
func (c *config) tearDown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	switch {
	case c.reuse:
		_, _ = run(ctx, c.root, "helm", "uninstall", release, "--kubeconfig", c.kubeconfig(), "--namespace", "default", "--wait")
	case c.keep:
		logf("kind cluster %s kept (E2E_KEEP_CLUSTER=1); kubeconfig %s", c.cluster, c.kubeconfig())
		return
	default:
		_, _ = run(ctx, "", "kind", "delete", "cluster", "--name", c.cluster)
	}
	_ = os.RemoveAll(c.dir)
}

// diagnostics prints what helps with a failure: every pod, the events, and the
// driver's logs.
func (c *config) diagnostics() {
	if _, err := os.Stat(c.kubeconfig()); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "nodes,pods,pvc,pv,svc", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"-n", driverNS, "logs", "-l", "app.kubernetes.io/component=controller", "--all-containers", "--tail=200", "--prefix"},
		{"-n", driverNS, "logs", "-l", "app.kubernetes.io/component=node", "--all-containers", "--tail=200", "--prefix"},
		{"-n", driverNS, "logs", "-l", "app.kubernetes.io/component=nfs-server", "--all-containers", "--tail=200", "--prefix"},
	} {
		out, err := c.kubectl(ctx, args...)
		fmt.Fprintf(os.Stderr, "\n$ kubectl %s\n%s%v\n", strings.Join(args, " "), out, errOrEmpty(err))
	}
}

func errOrEmpty(err error) any {
	if err == nil {
		return ""
	}
	return err
}

// kubectl runs kubectl against the cluster and returns its standard output.
func (c *config) kubectl(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "", "kubectl", append([]string{"--kubeconfig", c.kubeconfig()}, args...)...)
}

// run runs a command with the context's deadline and returns its standard output;
// the error carries its standard error.
func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// A command that outlives its deadline is killed, and so are its pipes' readers.
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "deploy", "charts", "pvnfs", "Chart.yaml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the suite inside the pvnfs repository")
		}
		dir = parent
	}
}
