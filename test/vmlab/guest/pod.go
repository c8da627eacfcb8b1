package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/pvnfs/pvnfs/pkg/controller"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
)

// ServerBinary is pvnfs-server as the host built it; pods get it where the
// pvnfs-server image has it.
const (
	ServerBinary     = BinDir + "/pvnfs-server"
	serverImagePath  = "/usr/local/bin/pvnfs-server"
	terminationLog   = "/dev/termination-log"
	healthPort       = serverconfig.DefaultHealthPort
	roleEnv          = "PVNFS_LAB_ROLE"
	rolePodInit      = "pod-init"
	podSpecEnv       = "PVNFS_LAB_POD_SPEC"
	probeHTTPTimeout = 5 * time.Second
)

// PodSpec is a server pod as the controller's Deployment describes it.
type PodSpec struct {
	// Name names the pod's log and layer directory.
	Name string
	// Hostname is spec.hostname.
	Hostname string
	// Sandbox is the pod's network namespace.
	Sandbox *NetNS
	// Backend is mounted at VolumeRoot (the backend PVC's volumeMount).
	Backend    *Backend
	VolumeRoot string
	// Args are the server container's args.
	Args []string
	// Runtime is the engine's security context, volumes and mounts.
	Runtime controller.ServerRuntime
}

// Pod is a running server pod: pvnfs-server as PID 1 of its own PID namespace,
// in its own mount, UTS and IPC namespaces, inside the sandbox's network
// namespace.
type Pod struct {
	Spec PodSpec
	// Log is the file with the server container's output.
	Log string

	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	started time.Time
}

// podInit is what the pod's first process needs to become the container.
type podInit struct {
	Hostname     string
	IP           string
	Layer        string
	Mounts       []podMount
	Privileged   bool
	Caps         []string
	NoNewPrivs   bool
	ReadOnlyRoot bool
	Args         []string
}

type podMount struct {
	Source, Target string
	// Tmpfs mounts an emptyDir (a size-limited tmpfs) instead of binding Source.
	Tmpfs string
}

var podSeq atomic.Int32

// StartPod starts a container of the pod (each call is a new container: a new
// writable layer, as after a restart).
func StartPod(ctx context.Context, spec PodSpec) (*Pod, error) {
	n := podSeq.Add(1)
	layer := filepath.Join(WorkDir, "pods", fmt.Sprintf("%s-%d", spec.Name, n))
	init, err := spec.init(layer)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(layer, 0o755); err != nil {
		return nil, err
	}
	specFile := filepath.Join(layer, "spec.json")
	b, _ := json.Marshal(init)
	if err := os.WriteFile(specFile, b, 0o644); err != nil {
		return nil, err
	}
	p := &Pod{Spec: spec, Log: filepath.Join(OutDir, "pods", fmt.Sprintf("%s-%d.log", spec.Name, n)), done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(p.Log)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// nsenter joins the sandbox's network namespace and execs this binary, which,
	// as PID 1 of the new namespaces, builds the container and execs pvnfs-server.
	p.cmd = exec.Command("nsenter", "--net="+spec.Sandbox.Path(), "--", self)
	p.cmd.Env = []string{roleEnv + "=" + rolePodInit, podSpecEnv + "=" + specFile, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC,
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting pod %s: %w", spec.Name, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// init translates the pod spec into the container's setup.
func (s PodSpec) init(layer string) (podInit, error) {
	sc := s.Runtime.SecurityContext
	if sc == nil {
		return podInit{}, errors.New("the runtime has no security context")
	}
	in := podInit{
		Hostname:     s.Hostname,
		IP:           s.Sandbox.IP,
		Layer:        layer,
		Privileged:   sc.Privileged != nil && *sc.Privileged,
		NoNewPrivs:   sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		ReadOnlyRoot: sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem,
		Args:         s.Args,
		Mounts: []podMount{
			{Source: s.Backend.MountPath, Target: s.VolumeRoot},
			{Source: ServerBinary, Target: serverImagePath},
		},
	}
	if !in.Privileged {
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			return podInit{}, errors.New("the lab runs unprivileged containers that drop ALL capabilities and add what they need")
		}
		for _, c := range sc.Capabilities.Add {
			in.Caps = append(in.Caps, strings.ToLower(string(c)))
		}
	}
	vols := map[string]corev1.Volume{}
	for _, v := range s.Runtime.Volumes {
		vols[v.Name] = v
	}
	for _, m := range s.Runtime.Mounts {
		v, ok := vols[m.Name]
		if !ok || v.EmptyDir == nil {
			return podInit{}, fmt.Errorf("volume %s: the lab has emptyDir volumes only", m.Name)
		}
		size := "16m"
		if v.EmptyDir.SizeLimit != nil {
			size = fmt.Sprint(v.EmptyDir.SizeLimit.Value())
		}
		in.Mounts = append(in.Mounts, podMount{Target: m.MountPath, Tmpfs: size})
	}
	return in, nil
}

// IP is the pod's address.
func (p *Pod) IP() string { return p.Spec.Sandbox.IP }

// Exited is closed when the pod's PID 1 has exited.
func (p *Pod) Exited() <-chan struct{} { return p.done }

// ExitErr is PID 1's exit status, once Exited is closed.
func (p *Pod) ExitErr() error { return p.exitErr }

// Get fetches one of the server's HTTP endpoints as a kubelet probe does.
func (p *Pod) Get(ctx context.Context, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeHTTPTimeout)
	defer cancel()
	url := fmt.Sprintf("http://%s:%d%s", p.IP(), healthPort, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	return resp.StatusCode, string(b), nil
}

// WaitReady waits until /readyz answers 200, and fails at once when the pod exits.
func (p *Pod) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		code, body, err := p.Get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		}
		select {
		case <-p.done:
			return fmt.Errorf("pod %s exited (%v) before it was ready; its log:\n%s", p.Spec.Name, p.exitErr, p.LogTail(40))
		case <-ctx.Done():
			return fmt.Errorf("pod %s not ready after %s (last /readyz: %s); its log:\n%s", p.Spec.Name, time.Since(p.started).Round(time.Millisecond), last, p.LogTail(40))
		case <-tick.C:
		}
	}
}

// Terminate stops the pod as the kubelet does: SIGTERM, then SIGKILL after
// grace. It returns PID 1's exit status (also when it had exited before), and an
// error when SIGKILL was needed.
func (p *Pod) Terminate(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.exitErr
	case <-t.C:
		_ = p.Kill()
		return fmt.Errorf("pod %s did not stop within %s of SIGTERM and was killed", p.Spec.Name, grace)
	}
}

// Kill sends SIGKILL to the pod's PID 1, which takes every process of its PID
// namespace with it, and waits until it is gone.
func (p *Pod) Kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("pod %s: PID 1 did not exit within 30 s of SIGKILL", p.Spec.Name)
	}
}

// LogTail returns the last n lines of the pod's log.
func (p *Pod) LogTail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
