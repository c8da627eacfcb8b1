package parameters

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Parameter keys, as written in a StorageClass.
const (
	BackendStorageClass       = "backendStorageClass"
	BackendAccessMode         = "backendAccessMode"
	NFSVersion                = "nfsVersion"
	ExportSync                = "exportSync"
	RootSquash                = "rootSquash"
	ExportOwner               = "exportOwner"
	ExportMode                = "exportMode"
	NFSThreads                = "nfsThreads"
	LeaseSeconds              = "leaseSeconds"
	GraceSeconds              = "graceSeconds"
	ServerEngine              = "serverEngine"
	ServerCPURequest          = "serverCPURequest"
	ServerMemoryRequest       = "serverMemoryRequest"
	ServerCPULimit            = "serverCPULimit"
	ServerMemoryLimit         = "serverMemoryLimit"
	ServerPriorityClassName   = "serverPriorityClassName"
	ServerNodeSelector        = "serverNodeSelector"
	ServerTolerations         = "serverTolerations"
	FailoverTolerationSeconds = "failoverTolerationSeconds"
)

// ProvisionerPrefix starts the keys the csi-provisioner adds on its own
// (csi.storage.k8s.io/pvc/name, .../provisioner-secret-name, ...). They are accepted
// and never stored as volume parameters.
const ProvisionerPrefix = "csi.storage.k8s.io/"

// Keys the provisioner passes with --extra-create-metadata.
const (
	PVCNameKey      = ProvisionerPrefix + "pvc/name"
	PVCNamespaceKey = ProvisionerPrefix + "pvc/namespace"
	PVNameKey       = ProvisionerPrefix + "pv/name"
)

// Values of backendAccessMode besides the two Kubernetes access modes.
const (
	// BackendAccessModeAuto (the default) asks for ReadWriteOncePod where the cluster
	// and the backend class support it, ReadWriteOnce elsewhere (pkg/controller).
	BackendAccessModeAuto = "auto"
)

// Server engines.
const (
	EngineKernel  = "kernel"
	EngineGanesha = "ganesha"
)

// Defaults, chosen for a shared web root that must survive a server failover. The
// reasons are in docs/parameters.md.
const (
	DefaultNFSThreads                = 8
	DefaultLeaseSeconds              = 30
	DefaultGraceSeconds              = 30
	DefaultFailoverTolerationSeconds = 30
	DefaultServerCPURequest          = "100m"
	DefaultServerMemoryRequest       = "64Mi"
	DefaultServerMemoryLimit         = "1Gi"
)

// NFS-Ganesha 4.3 refuses to start with a longer lease or grace period
// (ganesha-core-config(8)); the ganesha engine takes its limits from here.
const (
	GaneshaMaxLeaseSeconds = 120
	GaneshaMaxGraceSeconds = 180
)

// Limits of the numeric parameters. nfsd refuses a lease under 10 s; an hour is far
// beyond any useful failover setting.
const (
	minNFSThreads, maxNFSThreads = 1, 1024
	minLease, maxLease           = 10, 3600
	maxFailoverToleration        = 3600
)

// Parameters are a volume's validated StorageClass parameters with defaults filled in.
type Parameters struct {
	// BackendStorageClass is the RWO StorageClass of the backend PVC; "" means the
	// cluster's default StorageClass.
	BackendStorageClass string
	// BackendAccessMode is the access mode of the backend PVC: ReadWriteOncePod or
	// ReadWriteOnce, or "" to let the controller choose (BackendAccessModeAuto).
	BackendAccessMode corev1.PersistentVolumeAccessMode
	// NFSVersion pins "4.1" or "4.2"; "" lets the node try 4.2, then 4.1.
	NFSVersion string
	// ExportSync exports with "sync": a write is on stable storage before the server
	// acknowledges it. false ("async") is faster and loses acknowledged writes when
	// the server's node crashes.
	ExportSync bool
	// RootSquash maps client root to the anonymous user.
	RootSquash bool
	// ExportOwner, when set, is the owner of the export root.
	ExportOwner *Owner
	// ExportMode, when set, is the permission bits of the export root.
	ExportMode *uint32
	// NFSThreads is the number of nfsd threads (kernel) or worker threads (Ganesha).
	NFSThreads int
	// LeaseSeconds and GraceSeconds are the NFSv4 lease and grace periods.
	LeaseSeconds int
	GraceSeconds int
	// Engine is the NFS server implementation: EngineKernel or EngineGanesha.
	Engine string
	// Resources of the server container.
	Resources corev1.ResourceRequirements
	// PriorityClassName of the server pod; "" for none.
	PriorityClassName string
	// NodeSelector and Tolerations of the server pod.
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	// FailoverTolerationSeconds is how long the server pod stays bound to a node
	// that is not-ready or unreachable before it is evicted and moves.
	FailoverTolerationSeconds int64
}

// Owner is a numeric uid:gid.
type Owner struct {
	UID, GID int64
}

// String formats the owner as "uid:gid".
func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid StorageClass parameter")

// Error is one rejected parameter.
type Error struct {
	Key    string
	Value  string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("parameter %q: %s", e.Key, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *Error) Unwrap() error { return ErrInvalid }

// Keys returns every parameter key pvnfs accepts, sorted.
func Keys() []string {
	keys := make([]string, 0, len(parsers))
	for k := range parsers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parsers holds one function per key; each sets its field in p or explains why not.
var parsers = map[string]func(p *Parameters, v string) string{
	BackendStorageClass: func(p *Parameters, v string) string {
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return "must be the name of a StorageClass (a lowercase DNS subdomain): " + strings.Join(errs, "; ")
		}
		p.BackendStorageClass = v
		return ""
	},
	BackendAccessMode: func(p *Parameters, v string) string {
		switch m := corev1.PersistentVolumeAccessMode(v); m {
		case BackendAccessModeAuto:
			p.BackendAccessMode = ""
		case corev1.ReadWriteOncePod, corev1.ReadWriteOnce:
			p.BackendAccessMode = m
		default:
			return fmt.Sprintf(`accepted values are %q (ReadWriteOncePod where the cluster and the backend support it, else ReadWriteOnce), %q (only the server pod may mount the backend volume) and %q (any pod on the server's node may)`,
				BackendAccessModeAuto, corev1.ReadWriteOncePod, corev1.ReadWriteOnce)
		}
		return ""
	},
	NFSVersion: func(p *Parameters, v string) string {
		for _, s := range volume.NFSVersions {
			if v == s {
				p.NFSVersion = v
				return ""
			}
		}
		return fmt.Sprintf("accepted values are %s (NFS 2, 3 and 4.0 are not served)", quoteJoin(volume.NFSVersions))
	},
	ExportSync: func(p *Parameters, v string) string { return parseBool(v, &p.ExportSync) },
	RootSquash: func(p *Parameters, v string) string { return parseBool(v, &p.RootSquash) },
	ExportOwner: func(p *Parameters, v string) string {
		u, g, ok := strings.Cut(v, ":")
		uid, err1 := strconv.ParseInt(u, 10, 64)
		gid, err2 := strconv.ParseInt(g, 10, 64)
		if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 || uid > 1<<32-2 || gid > 1<<32-2 {
			return `must be a numeric "uid:gid", for example "33:33" (www-data)`
		}
		p.ExportOwner = &Owner{UID: uid, GID: gid}
		return ""
	},
	ExportMode: func(p *Parameters, v string) string {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o7777 {
			return `must be octal permission bits from "0000" to "7777", for example "0775" or "2775"`
		}
		mode := uint32(m)
		p.ExportMode = &mode
		return ""
	},
	NFSThreads:   func(p *Parameters, v string) string { return parseInt(v, minNFSThreads, maxNFSThreads, &p.NFSThreads) },
	LeaseSeconds: func(p *Parameters, v string) string { return parseInt(v, minLease, maxLease, &p.LeaseSeconds) },
	GraceSeconds: func(p *Parameters, v string) string { return parseInt(v, minLease, maxLease, &p.GraceSeconds) },
	ServerEngine: func(p *Parameters, v string) string {
		if v != EngineKernel && v != EngineGanesha {
			return fmt.Sprintf("accepted values are %q (the Linux kernel NFS server, needs nfsd on the node and a privileged pod) and %q (NFS-Ganesha in userspace)", EngineKernel, EngineGanesha)
		}
		p.Engine = v
		return ""
	},
	ServerCPURequest: func(p *Parameters, v string) string {
		return parseQuantity(v, p.Resources.Requests, corev1.ResourceCPU)
	},
	ServerMemoryRequest: func(p *Parameters, v string) string {
		return parseQuantity(v, p.Resources.Requests, corev1.ResourceMemory)
	},
	ServerCPULimit: func(p *Parameters, v string) string { return parseQuantity(v, p.Resources.Limits, corev1.ResourceCPU) },
	ServerMemoryLimit: func(p *Parameters, v string) string {
		return parseQuantity(v, p.Resources.Limits, corev1.ResourceMemory)
	},
	ServerPriorityClassName: func(p *Parameters, v string) string {
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return "must be the name of a PriorityClass: " + strings.Join(errs, "; ")
		}
		p.PriorityClassName = v
		return ""
	},
	ServerNodeSelector: func(p *Parameters, v string) string {
		sel, reason := parseNodeSelector(v)
		p.NodeSelector = sel
		return reason
	},
	ServerTolerations: func(p *Parameters, v string) string {
		tol, reason := parseTolerations(v)
		p.Tolerations = tol
		return reason
	},
	FailoverTolerationSeconds: func(p *Parameters, v string) string {
		var n int
		if reason := parseInt(v, 0, maxFailoverToleration, &n); reason != "" {
			return reason
		}
		p.FailoverTolerationSeconds = int64(n)
		return ""
	},
}

// Defaults returns the parameters of a StorageClass that sets none.
func Defaults() Parameters {
	return Parameters{
		ExportSync:                true,
		NFSThreads:                DefaultNFSThreads,
		LeaseSeconds:              DefaultLeaseSeconds,
		GraceSeconds:              DefaultGraceSeconds,
		Engine:                    EngineKernel,
		FailoverTolerationSeconds: DefaultFailoverTolerationSeconds,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(DefaultServerCPURequest),
				corev1.ResourceMemory: resource.MustParse(DefaultServerMemoryRequest),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse(DefaultServerMemoryLimit),
			},
		},
	}
}

// Parse validates a StorageClass's parameters. Every problem is reported, each as an
// *Error naming its key; an unknown key's error lists the accepted keys.
func Parse(in map[string]string) (Parameters, error) {
	p := Defaults()
	var errs []error
	for _, k := range sortedKeys(in) {
		v := in[k]
		if strings.HasPrefix(k, ProvisionerPrefix) {
			continue
		}
		parse, ok := parsers[k]
		if !ok {
			errs = append(errs, &Error{Key: k, Value: v, Reason: fmt.Sprintf(
				"unknown parameter; accepted parameters are %s (keys are case-sensitive)", strings.Join(Keys(), ", "))})
			continue
		}
		if reason := parse(&p, strings.TrimSpace(v)); reason != "" {
			errs = append(errs, &Error{Key: k, Value: v, Reason: fmt.Sprintf("value %q is not accepted: %s", v, reason)})
		}
	}
	errs = append(errs, p.crossCheck(in)...)
	if len(errs) > 0 {
		return Parameters{}, errors.Join(errs...)
	}
	return p, nil
}

// crossCheck validates what involves more than one parameter.
func (p *Parameters) crossCheck(in map[string]string) []error {
	var errs []error
	if p.GraceSeconds < p.LeaseSeconds && in[GraceSeconds] != "" {
		errs = append(errs, &Error{Key: GraceSeconds, Value: in[GraceSeconds], Reason: fmt.Sprintf(
			"must be at least %s (%d): clients need one lease period to notice a restart and reclaim their state",
			LeaseSeconds, p.LeaseSeconds)})
	} else if p.GraceSeconds < p.LeaseSeconds {
		// Only the lease was raised: keep the grace period in step instead of failing.
		p.GraceSeconds = p.LeaseSeconds
	}
	if p.Engine == EngineGanesha {
		if p.LeaseSeconds > GaneshaMaxLeaseSeconds {
			errs = append(errs, &Error{Key: LeaseSeconds, Value: in[LeaseSeconds], Reason: fmt.Sprintf(
				"%d is more than NFS-Ganesha accepts (%d) with %s %q", p.LeaseSeconds, GaneshaMaxLeaseSeconds, ServerEngine, EngineGanesha)})
		}
		if p.GraceSeconds > GaneshaMaxGraceSeconds {
			errs = append(errs, &Error{Key: GraceSeconds, Value: in[GraceSeconds], Reason: fmt.Sprintf(
				"%d is more than NFS-Ganesha accepts (%d) with %s %q", p.GraceSeconds, GaneshaMaxGraceSeconds, ServerEngine, EngineGanesha)})
		}
	}
	for _, r := range []struct {
		name   corev1.ResourceName
		reqKey string
		limKey string
	}{{corev1.ResourceCPU, ServerCPURequest, ServerCPULimit}, {corev1.ResourceMemory, ServerMemoryRequest, ServerMemoryLimit}} {
		req, hasReq := p.Resources.Requests[r.name]
		lim, hasLim := p.Resources.Limits[r.name]
		if !hasReq || !hasLim || req.Cmp(lim) <= 0 {
			continue
		}
		if in[r.reqKey] == "" {
			// Only the limit was lowered: the default request follows it down.
			p.Resources.Requests[r.name] = lim.DeepCopy()
			continue
		}
		errs = append(errs, &Error{Key: r.reqKey, Value: in[r.reqKey], Reason: fmt.Sprintf(
			"%s must not exceed %s (%s)", req.String(), r.limKey, lim.String())})
	}
	return errs
}

// Stored returns the parameters as given, without the provisioner's own keys, as the
// canonical JSON kept on the volume's objects. Two requests with the same stored form
// asked for the same volume.
func Stored(in map[string]string) string {
	out := map[string]string{}
	for k, v := range in {
		if !strings.HasPrefix(k, ProvisionerPrefix) {
			out[k] = v
		}
	}
	b, _ := json.Marshal(out) // map[string]string always marshals; keys come out sorted
	return string(b)
}

// Load parses parameters kept by Stored.
func Load(stored string) (map[string]string, Parameters, error) {
	in := map[string]string{}
	if stored != "" {
		if err := json.Unmarshal([]byte(stored), &in); err != nil {
			return nil, Parameters{}, fmt.Errorf("%w: stored parameters are not a JSON object: %v", ErrInvalid, err)
		}
	}
	p, err := Parse(in)
	return in, p, err
}

func parseBool(v string, dst *bool) string {
	switch strings.ToLower(v) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		return `accepted values are "true" and "false"`
	}
	return ""
}

func parseInt(v string, min, max int, dst *int) string {
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return fmt.Sprintf("must be a whole number from %d to %d", min, max)
	}
	*dst = n
	return ""
}

func parseQuantity(v string, list corev1.ResourceList, name corev1.ResourceName) string {
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() < 0 {
		return fmt.Sprintf("must be a non-negative Kubernetes quantity, for example %q", map[corev1.ResourceName]string{
			corev1.ResourceCPU: "250m", corev1.ResourceMemory: "256Mi"}[name])
	}
	if q.IsZero() {
		// "0" removes the default, e.g. serverMemoryLimit: "0" for no memory limit.
		delete(list, name)
		return ""
	}
	list[name] = q
	return ""
}

// parseNodeSelector reads "key=value,key2=value2".
func parseNodeSelector(v string) (map[string]string, string) {
	const format = `must be a comma-separated list of label=value pairs, for example "node-role.example.com/storage=true,topology.kubernetes.io/zone=eu-1a"`
	sel := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if !ok {
			return nil, format
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Sprintf("label key %q: %s; %s", k, strings.Join(errs, "; "), format)
		}
		if errs := validation.IsValidLabelValue(val); len(errs) > 0 {
			return nil, fmt.Sprintf("label value %q: %s", val, strings.Join(errs, "; "))
		}
		sel[k] = val
	}
	if len(sel) == 0 {
		return nil, format
	}
	return sel, ""
}

// parseTolerations reads a YAML or JSON list of Kubernetes tolerations.
func parseTolerations(v string) ([]corev1.Toleration, string) {
	const format = `must be a YAML or JSON list of tolerations, for example '[{"key":"dedicated","operator":"Equal","value":"storage","effect":"NoSchedule"}]'`
	var tol []corev1.Toleration
	if err := yaml.UnmarshalStrict([]byte(v), &tol); err != nil {
		return nil, fmt.Sprintf("%s (%v)", format, err)
	}
	for i, t := range tol {
		if t.Key != "" {
			if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
				return nil, fmt.Sprintf("toleration %d: key %q: %s", i, t.Key, strings.Join(errs, "; "))
			}
		}
		switch t.Operator {
		case corev1.TolerationOpExists:
			if t.Value != "" {
				return nil, fmt.Sprintf("toleration %d: operator Exists takes no value", i)
			}
		case corev1.TolerationOpEqual, "":
			if t.Key == "" {
				return nil, fmt.Sprintf("toleration %d: an empty key needs operator Exists", i)
			}
		default:
			return nil, fmt.Sprintf("toleration %d: operator %q is not Equal or Exists", i, t.Operator)
		}
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			return nil, fmt.Sprintf("toleration %d: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", i, t.Effect)
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			return nil, fmt.Sprintf("toleration %d: tolerationSeconds needs effect NoExecute", i)
		}
	}
	return tol, ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func quoteJoin(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, " and ")
}
