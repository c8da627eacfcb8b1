package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Machine describes the machine the figures come from.
type Machine struct {
	CPUs      int
	CPUModel  string
	MemoryGiB float64
	Kernel    string
	OS        string
}

// machineFacts reads the machine's description from /proc and /etc/os-release.
func machineFacts() Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPUModel: "unknown", OS: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPUModel = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		if kb, err := strconv.ParseFloat(strings.Fields(v)[0], 64); err == nil {
			m.MemoryGiB = kb / (1 << 20)
		}
	}
	if v, ok := procField("/etc/os-release", "PRETTY_NAME"); ok {
		m.OS = strings.Trim(v, `"`)
	}
	return m
}

// procField returns the value of the first "key: value" or "key=value" line of a
// file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			k, v, ok = strings.Cut(line, "=")
		}
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// Versions are the versions of everything that ran, as each binary reports itself.
type Versions struct {
	Go, Kubernetes, Kwok, Provisioner, Etcd string
}

// versionOf runs a binary with a version flag and returns the first field of its
// output that looks like a version ("v1.2.3" or "1.2.3").
func versionOf(ctx context.Context, binary string, args ...string) string {
	if binary == "" {
		return "not installed"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	if err != nil {
		return "unknown (" + filepath.Base(binary) + ": " + err.Error() + ")"
	}
	for _, f := range strings.Fields(string(out)) {
		if v := strings.TrimPrefix(f, "v"); v != "" && v[0] >= '0' && v[0] <= '9' && strings.Count(v, ".") >= 2 {
			return f
		}
	}
	return "unknown"
}

// goVersion is the version of the go command that builds pvnfs-csi (and ran this).
func goVersion() string { return runtime.Version() }

// chartSettings are the controller's settings in the Helm chart's values, which the
// benchmark runs with, so its figures are those of a default installation.
type chartSettings struct {
	Controller struct {
		KubeAPIQPS   float64 `json:"kubeAPIQPS"`
		KubeAPIBurst int     `json:"kubeAPIBurst"`
		LogLevel     int     `json:"logLevel"`
		Provisioner  struct {
			Timeout            string  `json:"timeout"`
			RetryIntervalStart string  `json:"retryIntervalStart"`
			RetryIntervalMax   string  `json:"retryIntervalMax"`
			WorkerThreads      int     `json:"workerThreads"`
			KubeAPIQPS         float64 `json:"kubeAPIQPS"`
			KubeAPIBurst       int     `json:"kubeAPIBurst"`
		} `json:"provisioner"`
	} `json:"controller"`
}

// chartValuesFile is the chart's values, relative to the repository root.
const chartValuesFile = "deploy/charts/pvnfs/values.yaml"

func loadChartSettings(root string) (chartSettings, error) {
	var s chartSettings
	b, err := os.ReadFile(filepath.Join(root, chartValuesFile))
	if err != nil {
		return s, err
	}
	if err := yaml.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", chartValuesFile, err)
	}
	c := s.Controller
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst <= 0 || c.Provisioner.KubeAPIQPS <= 0 || c.Provisioner.KubeAPIBurst <= 0 ||
		c.Provisioner.WorkerThreads <= 0 || c.Provisioner.Timeout == "" {
		return s, fmt.Errorf("%s: controller.kubeAPIQPS/kubeAPIBurst and controller.provisioner.{timeout,workerThreads,kubeAPIQPS,kubeAPIBurst} must be set", chartValuesFile)
	}
	return s, nil
}

// override applies the command's -provisioner-* flags.
func (s *chartSettings) override(o options) {
	p := &s.Controller.Provisioner
	if o.provisionerQPS > 0 {
		p.KubeAPIQPS = o.provisionerQPS
	}
	if o.provisionerBurst > 0 {
		p.KubeAPIBurst = o.provisionerBurst
	}
	if o.provisionerWorkers > 0 {
		p.WorkerThreads = o.provisionerWorkers
	}
}

// provisionerArgs are the csi-provisioner flags the chart sets (the tuning ones;
// harness.StartProvisioner adds the socket, kubeconfig and --leader-election=false).
func (s chartSettings) provisionerArgs() []string {
	p := s.Controller.Provisioner
	args := []string{
		"--extra-create-metadata",
		"--timeout=" + p.Timeout,
		"--worker-threads=" + strconv.Itoa(p.WorkerThreads),
		fmt.Sprintf("--kube-api-qps=%g", p.KubeAPIQPS),
		"--kube-api-burst=" + strconv.Itoa(p.KubeAPIBurst),
		"--snapshot-orphan-sweep-interval=0",
	}
	if p.RetryIntervalStart != "" {
		args = append(args, "--retry-interval-start="+p.RetryIntervalStart)
	}
	if p.RetryIntervalMax != "" {
		args = append(args, "--retry-interval-max="+p.RetryIntervalMax)
	}
	return args
}

// controllerArgs are the pvnfs-csi flags the chart sets that matter here (the
// harness sets the rest; leader election is off with one replica).
func (s chartSettings) controllerArgs() []string {
	return []string{
		fmt.Sprintf("--kube-api-qps=%g", s.Controller.KubeAPIQPS),
		"--kube-api-burst=" + strconv.Itoa(s.Controller.KubeAPIBurst),
	}
}
