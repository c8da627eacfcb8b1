package localcluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

//go:embed stages/*.yaml
var stages embed.FS

// HoldNode names the node on which simulated pods run but never turn Ready. It is
// tainted with HoldTaint, so only pods that tolerate it (and select it) land there.
const HoldNode = "pvnfs-hold"

// HoldTaint is the NoSchedule taint key of HoldNode.
const HoldTaint = "pvnfs.io/hold"

// KwokAnnotation marks the nodes kwok manages; removing it loses the node.
const KwokAnnotation = "kwok.x-k8s.io/node"

// ServiceCIDR is the cluster's Service range; ClusterIPs come from it.
const ServiceCIDR = "10.96.0.0/16"

// Options configure a local cluster.
type Options struct {
	// Dir holds the cluster's state and logs; a new temporary directory when empty.
	// etcd's data goes to /dev/shm when it exists, for speed.
	Dir string
	// Nodes are the simulated nodes to create, each Ready. Default: kwok-node-1..3.
	Nodes []string
	// HoldNode also creates the node HoldNode.
	HoldNode bool
	// NodeMonitorGracePeriod is how long a node may miss heartbeats before it is
	// NotReady (kube-controller-manager's --node-monitor-grace-period). Zero keeps
	// Kubernetes' default (50 s in 1.36), so failover timings match a real cluster's.
	NodeMonitorGracePeriod time.Duration
	// Logf reports progress; nil for silence.
	Logf func(format string, args ...any)
}

// Cluster is a running local control plane.
type Cluster struct {
	// Dir holds the cluster's state and logs (Dir/logs/*.log).
	Dir string
	// Kubeconfig is an admin kubeconfig file; Config and Client use it.
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	Tools      Tools

	opts                       Options
	etcdDir                    string
	etcd, apiserver, cm, sched *Process
	kwok                       *Process
	cancel                     context.CancelFunc
	ctx                        context.Context

	mu        sync.Mutex
	nodeKwoks map[string]*Process
	// extra are processes started with the cluster on request (the
	// snapshot-controller); Stop stops them first.
	extra []*Process
}

// Start starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok,
// creates the nodes and returns once the API server is ready and the nodes are.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	tools, err := InstallTools("kube", "kwok")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(tools.Etcd); err != nil {
		if tools, err = InstallTools("apt"); err != nil {
			return nil, err
		}
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = []string{"kwok-node-1", "kwok-node-2", "kwok-node-3"}
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "pvnfs-cluster-"); err != nil {
			return nil, err
		}
	}
	c := &Cluster{Dir: opts.Dir, Tools: tools, opts: opts, nodeKwoks: map[string]*Process{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, cmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	c.defineProcesses(etcdClient, etcdPeer, apiPort, cmPort, schedPort, kwokPort)

	opts.Logf("starting etcd and kube-apiserver %s (logs in %s)", tools.KubeVersion, filepath.Join(c.Dir, "logs"))
	for _, p := range []*Process{c.etcd, c.apiserver} {
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	if err := c.writeKubeconfig(apiPort); err != nil {
		return nil, err
	}
	if err := c.WaitAPIServer(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	opts.Logf("starting kube-controller-manager, kube-scheduler and kwok")
	for _, p := range []*Process{c.cm, c.sched, c.kwok} {
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	nodes := append([]string(nil), opts.Nodes...)
	if opts.HoldNode {
		nodes = append(nodes, HoldNode)
	}
	for _, n := range nodes {
		var taints []corev1.Taint
		if n == HoldNode {
			taints = []corev1.Taint{{Key: HoldTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
		}
		if err := c.AddNode(ctx, n, nil, taints...); err != nil {
			return nil, err
		}
	}
	if err := c.WaitNodesReady(ctx, nodes, 60*time.Second); err != nil {
		return nil, fmt.Errorf("simulated nodes did not turn Ready (see %s): %w", c.kwok.log, err)
	}
	// The ServiceAccount admission plugin refuses pods until the namespace's
	// "default" ServiceAccount exists; wait for the controller that makes it.
	if err := c.WaitServiceAccount(ctx, "default", "default", 60*time.Second); err != nil {
		return nil, fmt.Errorf("no default ServiceAccount (see %s): %w", c.cm.log, err)
	}
	opts.Logf("cluster ready: %d nodes", len(nodes))
	return c, nil
}

func (c *Cluster) writeFiles() error {
	for _, d := range []string{"logs", "pki", "stages"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	c.etcdDir = filepath.Join(c.Dir, "etcd")
	if st, err := os.Stat(shmDir); err == nil && st.IsDir() {
		removeAbandonedEtcdDirs()
		d, err := os.MkdirTemp(shmDir, etcdDirPrefix)
		if err == nil {
			c.etcdDir = d
			// Whoever finds this directory after this process died without Stop
			// (a killed test) removes it: it holds etcd's data in memory.
			_ = os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644)
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "pki", "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "pki", "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "pki", "tokens.csv"), []byte(c.adminToken()+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	entries, err := stages.ReadDir("stages")
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, _ := stages.ReadFile("stages/" + e.Name())
		if err := os.WriteFile(filepath.Join(c.Dir, "stages", e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// adminToken is the bearer token of the cluster admin, derived from the directory so
// that a restarted component reads the same file.
func (c *Cluster) adminToken() string {
	b, err := os.ReadFile(filepath.Join(c.Dir, "pki", "admin.token"))
	if err == nil {
		return strings.TrimSpace(string(b))
	}
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	t := hex.EncodeToString(raw)
	_ = os.WriteFile(filepath.Join(c.Dir, "pki", "admin.token"), []byte(t), 0o600)
	return t
}

func (c *Cluster) defineProcesses(etcdClient, etcdPeer, apiPort, cmPort, schedPort, kwokPort int) {
	log := func(n string) string { return filepath.Join(c.Dir, "logs", n+".log") }
	pki := func(n string) string { return filepath.Join(c.Dir, "pki", n) }
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	c.etcd = &Process{name: "etcd", path: c.Tools.Etcd, log: log("etcd"), args: []string{
		"--name=pvnfs", "--data-dir=" + c.etcdDir,
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=pvnfs=" + peerURL, "--log-level=warn",
		// Benchmarks create thousands of objects; the defaults compact too rarely.
		"--quota-backend-bytes=4294967296", "--auto-compaction-retention=1",
	}}
	c.apiserver = &Process{name: "kube-apiserver", path: c.Tools.APIServer, log: log("kube-apiserver"), args: []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + pki(""),
		"--token-auth-file=" + pki("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + pki("sa.pub"), "--service-account-signing-key-file=" + pki("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + ServiceCIDR,
		// The NFS server pods of the kernel engine are privileged.
		"--allow-privileged=true",
		// etcd 3.4 (Debian) sends no watch progress notifications; without this,
		// every watch of a 1.36 API server fails and falls back to relisting.
		"--feature-gates=WatchList=false",
		"--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
	}}
	c.cm = &Process{name: "kube-controller-manager", path: c.Tools.ControllerManager, log: log("kube-controller-manager"), args: []string{
		"--kubeconfig=" + c.kubeconfigPath(), "--authentication-kubeconfig=" + c.kubeconfigPath(), "--authorization-kubeconfig=" + c.kubeconfigPath(),
		"--controllers=*", "--leader-elect=false",
		"--service-account-private-key-file=" + pki("sa.key"), "--root-ca-file=" + pki("apiserver.crt"),
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", cmPort), "--cert-dir=" + pki("cm"),
		"--kube-api-qps=200", "--kube-api-burst=400",
		"--concurrent-deployment-syncs=20", "--concurrent-replicaset-syncs=20",
		"--concurrent-service-endpoint-syncs=20", "--concurrent-gc-syncs=40", "--v=1",
	}}
	if g := c.opts.NodeMonitorGracePeriod; g > 0 {
		c.cm.args = append(c.cm.args, "--node-monitor-grace-period="+g.String())
	}
	c.sched = &Process{name: "kube-scheduler", path: c.Tools.Scheduler, log: log("kube-scheduler"), args: []string{
		"--kubeconfig=" + c.kubeconfigPath(), "--authentication-kubeconfig=" + c.kubeconfigPath(), "--authorization-kubeconfig=" + c.kubeconfigPath(),
		"--leader-elect=false", "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", schedPort), "--cert-dir=" + pki("sched"), "--v=1",
	}}
	c.kwok = &Process{name: "kwok", path: c.Tools.Kwok, log: log("kwok"),
		args: c.kwokArgs(kwokPort, "--manage-nodes-with-annotation-selector="+KwokAnnotation+"=fake")}
}

// kwokArgs are the arguments of a kwok process; which nodes it manages is added.
func (c *Cluster) kwokArgs(port int, manage string) []string {
	return []string{
		"--kubeconfig=" + c.kubeconfigPath(),
		manage,
		"--config=" + filepath.Join(c.Dir, "stages", "node.yaml"),
		"--config=" + filepath.Join(c.Dir, "stages", "pod.yaml"),
		// Renew node Leases: they are the heartbeat the node lifecycle controller
		// watches, so nodes stay Ready until their kwok stops.
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
		fmt.Sprintf("--server-address=127.0.0.1:%d", port),
	}
}

func (c *Cluster) kubeconfigPath() string { return filepath.Join(c.Dir, "kubeconfig") }

func (c *Cluster) writeKubeconfig(apiPort int) error {
	c.Kubeconfig = c.kubeconfigPath()
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	// The API server's self-signed serving certificate is written to pki/ once it
	// starts; wait for it so clients verify TLS instead of skipping verification.
	ca := filepath.Join(c.Dir, "pki", "apiserver.crt")
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		if !c.apiserver.running() {
			return false, c.apiserver.exitError()
		}
		_, err := os.Stat(ca)
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("waiting for the API server's certificate: %w", err)
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: pvnfs-local
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: pvnfs-local
  context: {cluster: pvnfs-local, user: admin}
current-context: pvnfs-local
`, server, ca, c.adminToken())
	if err := os.WriteFile(c.Kubeconfig, []byte(cfg), 0o600); err != nil {
		return err
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = 200, 400
	restCfg.Timeout = 30 * time.Second
	c.Config = restCfg
	c.Client, err = kubernetes.NewForConfig(restCfg)
	return err
}

// WaitAPIServer waits until the API server reports ready.
func (c *Cluster) WaitAPIServer(ctx context.Context, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if !c.apiserver.running() {
			return false, c.apiserver.exitError()
		}
		if !c.etcd.running() {
			return false, c.etcd.exitError()
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		last = c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(rctx).Error()
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver not ready (last answer: %v): %w", last, err)
	}
	return nil
}

// AddNode creates a simulated node that kwok manages.
func (c *Cluster) AddNode(ctx context.Context, name string, labels map[string]string, taints ...corev1.Taint) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: nodeLabels(name, labels), Annotations: map[string]string{KwokAnnotation: "fake"}},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourcePods: resource.MustParse("2000"), corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi")}},
	}
	_, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// AddLosableNode creates a simulated node with a kwok process of its own (its
// "kubelet"), which LoseNode kills: the node's Lease is then no longer renewed and
// its pods no longer updated, as when a real node dies. The node lifecycle
// controller marks it NotReady after NodeMonitorGracePeriod and taints it.
func (c *Cluster) AddLosableNode(ctx context.Context, name string, labels map[string]string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	p := NewProcess("kwok "+name, c.Tools.Kwok, filepath.Join(c.Dir, "logs", "kwok-"+name+".log"),
		c.kwokArgs(ports[0], "--manage-single-node="+name)...)
	if err := p.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.nodeKwoks[name] = p
	c.mu.Unlock()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: nodeLabels(name, labels), Annotations: map[string]string{KwokAnnotation: "own-" + name}}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// LoseNode kills the kwok process of a node made by AddLosableNode.
func (c *Cluster) LoseNode(name string) error {
	c.mu.Lock()
	p := c.nodeKwoks[name]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("node %s was not added with AddLosableNode", name)
	}
	p.Kill()
	return nil
}

// WaitNodesReady waits until every named node is Ready.
func (c *Cluster) WaitNodesReady(ctx context.Context, names []string, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.deadProcess(); err != nil {
			return false, err
		}
		for _, n := range names {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil || !nodeReady(node) {
				return false, nil
			}
		}
		return true, nil
	})
}

// WaitServiceAccount waits until a ServiceAccount exists.
func (c *Cluster) WaitServiceAccount(ctx context.Context, namespace, name string, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.deadProcess(); err != nil {
			return false, err
		}
		_, err := c.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil, nil
	})
}

// CreateNamespace creates a namespace (if missing) and waits for its default
// ServiceAccount, without which pods are refused.
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return c.WaitServiceAccount(ctx, name, "default", 60*time.Second)
}

// StopAPIServer stops kube-apiserver, as an outage of the control plane.
func (c *Cluster) StopAPIServer() { c.apiserver.stop(10 * time.Second) }

// StartAPIServer starts kube-apiserver again after StopAPIServer and waits for it.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if err := c.apiserver.start(); err != nil {
		return err
	}
	return c.WaitAPIServer(ctx, 90*time.Second)
}

// Stop stops every process and removes etcd's data. Logs stay in Dir.
func (c *Cluster) Stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Lock()
	for _, p := range c.nodeKwoks {
		p.Kill()
	}
	for _, p := range c.extra {
		p.Stop(5 * time.Second)
	}
	c.mu.Unlock()
	for _, p := range []*Process{c.kwok, c.sched, c.cm, c.apiserver, c.etcd} {
		if p != nil {
			p.stop(5 * time.Second)
		}
	}
	if strings.HasPrefix(c.etcdDir, shmDir+"/") {
		_ = os.RemoveAll(c.etcdDir)
	}
}

// Context is cancelled when the cluster stops; helpers started with the cluster
// (the backend provisioner) run until then.
func (c *Cluster) Context() context.Context { return c.ctx }

// deadProcess explains a control-plane process that exited unexpectedly.
func (c *Cluster) deadProcess() error {
	for _, p := range []*Process{c.etcd, c.apiserver, c.cm, c.sched, c.kwok} {
		if p.cmd != nil && !p.running() {
			return p.exitError()
		}
	}
	return nil
}

// etcd keeps its data in memory (/dev/shm) for speed.
const (
	shmDir        = "/dev/shm"
	etcdDirPrefix = "pvnfs-etcd-"
	ownerFile     = "owner.pid"
	// EtcdDataPrefix starts the path of every etcd data directory a cluster makes;
	// cleanups of killed runs remove only such directories.
	EtcdDataPrefix = shmDir + "/" + etcdDirPrefix
)

// removeAbandonedEtcdDirs removes the etcd directories of clusters whose process is
// gone, so killed test runs do not fill the machine's memory.
func removeAbandonedEtcdDirs() {
	dirs, _ := filepath.Glob(filepath.Join(shmDir, etcdDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // being created, or not ours to judge
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

func nodeLabels(name string, extra map[string]string) map[string]string {
	l := map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// freePorts returns n distinct free TCP ports on loopback.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		_, p, _ := net.SplitHostPort(l.Addr().String())
		port, _ := strconv.Atoi(p)
		ports = append(ports, port)
	}
	return ports, nil
}
