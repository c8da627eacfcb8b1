package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/pvnfs/pvnfs/pkg/csiserver"
	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Modes pvnfs-csi runs in.
const (
	modeController = "controller"
	modeNode       = "node"
	modeAll        = "all"
)

// options are pvnfs-csi's flags, registered in addFlags and checked in validate.
type options struct {
	mode          string
	endpoint      string
	nodeID        string
	driverName    string
	kubeconfig    string
	kubeAPIQPS    float64
	kubeAPIBurst  int
	metricsAddr   string
	showVersion   bool
	shutdownGrace time.Duration

	controller controllerOptions
	node       nodeOptions
}

// controllerOptions are the flags of the controller service.
type controllerOptions struct {
	namespace             string
	serverImage           string
	serverImagePullPolicy string
	serverPullSecrets     string
	nfsClients            string
	maxWait               time.Duration

	leaderElection          bool
	leaderElectionNamespace string
	resync                  time.Duration
	deleteOrphansAfter      time.Duration
	maxServerRollouts       int

	// crashHook is empty in the production build; fault tests build pvnfs-csi with
	// the tag pvnfs_standin to stop the controller at a named step.
	crashHook crashHookOptions
	// serverNetwork is empty in the production build (servernet_production.go);
	// snapshot tests reach simulated server pods through it.
	serverNetwork serverNetworkOptions
}

func defaultOptions() options {
	return options{
		mode:          modeAll,
		endpoint:      "unix:///csi/csi.sock",
		driverName:    volume.DefaultDriverName,
		kubeAPIQPS:    50,
		kubeAPIBurst:  100,
		shutdownGrace: 30 * time.Second,
		controller: controllerOptions{
			namespace:             "pvnfs-system",
			serverImagePullPolicy: "IfNotPresent",
			maxWait:               60 * time.Second,
			resync:                10 * time.Minute,
			maxServerRollouts:     1,
		},
		node: defaultNodeOptions(),
	}
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.mode, "mode", o.mode, `which CSI services to run: "controller" (provisioning; one Deployment per cluster), "node" (mounting; one per node, in the host network) or "all"`)
	fs.StringVar(&o.endpoint, "endpoint", o.endpoint, "unix socket the CSI sidecars and kubelet connect to")
	fs.StringVar(&o.nodeID, "node-id", os.Getenv("NODE_NAME"), "this node's Kubernetes node name (node mode; defaults to $NODE_NAME)")
	fs.StringVar(&o.driverName, "driver-name", o.driverName, "CSI driver name; StorageClasses name it as their provisioner")
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "kubeconfig file for the Kubernetes API; empty uses the in-cluster service account")
	fs.Float64Var(&o.kubeAPIQPS, "kube-api-qps", o.kubeAPIQPS, "steady rate of requests to the Kubernetes API (client-go's default of 5 is too low for bursts of volumes)")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", o.kubeAPIBurst, "burst of requests to the Kubernetes API above --kube-api-qps")
	fs.StringVar(&o.metricsAddr, "metrics-address", o.metricsAddr, `address ("host:port" or ":port") to serve Prometheus /metrics on; empty disables it`)
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", o.shutdownGrace, "how long calls in flight may run after SIGTERM before they are cut off")

	fs.StringVar(&o.controller.namespace, "namespace", o.controller.namespace, "namespace of every volume's backend PVC, server Deployment and Service (controller mode)")
	fs.StringVar(&o.controller.serverImage, "server-image", o.controller.serverImage, "container image running pvnfs-server in each volume's server pod (required in controller mode)")
	fs.StringVar(&o.controller.serverImagePullPolicy, "server-image-pull-policy", o.controller.serverImagePullPolicy, "pull policy of --server-image: Always, IfNotPresent or Never")
	fs.StringVar(&o.controller.serverPullSecrets, "server-image-pull-secrets", o.controller.serverPullSecrets, "comma-separated Secrets (in --namespace) the server pods pull --server-image with; empty for none")
	fs.StringVar(&o.controller.nfsClients, "nfs-clients", o.controller.nfsClients, `comma-separated networks (CIDRs) the volumes' exports admit: the addresses the nodes' NFS traffic comes from, e.g. "10.0.0.0/16"; empty admits every address. A change applies to new servers; existing ones keep theirs until rolled (docs/security.md)`)
	fs.DurationVar(&o.controller.maxWait, "max-wait", o.controller.maxWait, "longest a CreateVolume or DeleteVolume call waits for its objects when the request carries no deadline; the call then returns a retryable code")
	fs.BoolVar(&o.controller.leaderElection, "leader-election", o.controller.leaderElection, "run the reconciler (which recreates lost Services and Deployments) only in the replica holding a Lease; required with more than one controller replica")
	fs.StringVar(&o.controller.leaderElectionNamespace, "leader-election-namespace", o.controller.leaderElectionNamespace, "namespace of the leader election Lease (default: --namespace)")
	fs.DurationVar(&o.controller.resync, "reconcile-resync", o.controller.resync, "how often the reconciler re-checks every volume besides reacting to watch events")
	fs.DurationVar(&o.controller.deleteOrphansAfter, "delete-orphans-after", o.controller.deleteOrphansAfter, "delete a volume's objects (and, per the backend StorageClass's reclaim policy, its data) once no PersistentVolume has referred to it for this long; 0 only reports orphans, never deletes")
	fs.IntVar(&o.controller.maxServerRollouts, "max-server-rollouts", o.controller.maxServerRollouts, "servers built by another pvnfs version or --server-image that the reconciler rolls to the current template at a time, each waiting for its new server to be Ready before the next starts (each roll pauses that volume's clients for one grace period); 0 leaves them for the operator. A server Deployment annotated "+"pvnfs.io/pin-server=true"+" is never rolled")
	o.controller.crashHook.addFlags(fs)
	o.controller.serverNetwork.addFlags(fs)
	o.node.addFlags(fs)
}

func (o *options) validate() error {
	var errs []error
	switch o.mode {
	case modeController, modeNode, modeAll:
	default:
		errs = append(errs, fmt.Errorf("--mode %q: accepted values are controller, node and all", o.mode))
	}
	if _, err := csiserver.SocketPath(o.endpoint); err != nil {
		errs = append(errs, err)
	}
	if msgs := validation.IsDNS1123Subdomain(o.driverName); len(msgs) > 0 || len(o.driverName) > 63 {
		errs = append(errs, fmt.Errorf("--driver-name %q: must be a DNS subdomain of at most 63 characters, like %s", o.driverName, volume.DefaultDriverName))
	}
	if o.kubeAPIQPS <= 0 || o.kubeAPIBurst < 1 {
		errs = append(errs, errors.New("--kube-api-qps must be > 0 and --kube-api-burst >= 1"))
	}
	if o.shutdownGrace <= 0 {
		errs = append(errs, errors.New("--shutdown-grace must be positive"))
	}
	if o.runsController() {
		if msgs := validation.IsDNS1123Label(o.controller.namespace); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--namespace %q: must be a namespace name (a DNS label)", o.controller.namespace))
		}
		if o.controller.serverImage == "" {
			errs = append(errs, errors.New("--server-image is required in controller mode: it is the image every volume's NFS server pod runs"))
		}
		switch o.controller.serverImagePullPolicy {
		case "Always", "IfNotPresent", "Never":
		default:
			errs = append(errs, fmt.Errorf("--server-image-pull-policy %q: accepted values are Always, IfNotPresent and Never", o.controller.serverImagePullPolicy))
		}
		for _, name := range o.controller.pullSecrets() {
			if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("--server-image-pull-secrets: %q is not a Secret name", name))
			}
		}
		if _, err := serverconfig.ParseClients(o.controller.clients()); err != nil {
			errs = append(errs, fmt.Errorf("--nfs-clients: %w", err))
		}
		if o.controller.maxWait <= 0 {
			errs = append(errs, errors.New("--max-wait must be positive"))
		}
		if o.controller.resync <= 0 {
			errs = append(errs, errors.New("--reconcile-resync must be positive"))
		}
		if o.controller.deleteOrphansAfter < 0 {
			errs = append(errs, errors.New("--delete-orphans-after must not be negative (0 never deletes)"))
		}
		if o.controller.maxServerRollouts < 0 {
			errs = append(errs, fmt.Errorf("--max-server-rollouts %d: must be 0 (never roll) or more", o.controller.maxServerRollouts))
		}
		if ns := o.controller.leaderElectionNamespace; ns != "" && len(validation.IsDNS1123Label(ns)) > 0 {
			errs = append(errs, fmt.Errorf("--leader-election-namespace %q: must be a namespace name", ns))
		}
		if err := o.controller.crashHook.validate(); err != nil {
			errs = append(errs, err)
		}
		if err := o.controller.serverNetwork.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.runsNode() {
		if o.nodeID == "" {
			errs = append(errs, errors.New("--node-id is required in node mode (or set $NODE_NAME): it is the Kubernetes node name"))
		}
		if err := o.node.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *options) runsController() bool { return o.mode == modeController || o.mode == modeAll }
func (o *options) runsNode() bool       { return o.mode == modeNode || o.mode == modeAll }

// pullSecrets splits --server-image-pull-secrets.
func (o *controllerOptions) pullSecrets() []string {
	var out []string
	for _, s := range strings.Split(o.serverPullSecrets, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// clients splits --nfs-clients.
func (c controllerOptions) clients() []string {
	var out []string
	for _, s := range strings.Split(c.nfsClients, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
