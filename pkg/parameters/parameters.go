package parameters

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Parameter keys, as written in a StorageClass. The keys of the server's own
// settings are defined with those settings (package serverconfig).
const (
	BackendStorageClass       = "backendStorageClass"
	BackendAccessMode         = "backendAccessMode"
	NFSVersion                = "nfsVersion"
	ExportSync                = serverconfig.ParamSync
	RootSquash                = serverconfig.ParamRootSquash
	ExportOwner               = serverconfig.ParamExportOwner
	ExportMode                = serverconfig.ParamExportMode
	NFSThreads                = serverconfig.ParamThreads
	LeaseSeconds              = serverconfig.ParamLeaseSeconds
	GraceSeconds              = serverconfig.ParamGraceSeconds
	ServerEngine              = serverconfig.ParamEngine
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

// Server engines (serverconfig's).
const (
	EngineKernel  = serverconfig.EngineKernel
	EngineGanesha = serverconfig.EngineGanesha
)

// Defaults, chosen for a shared web root that must survive a server failover. The
// reasons are in docs/parameters.md. The server's own are serverconfig's.
const (
	DefaultNFSThreads                = serverconfig.DefaultThreads
	DefaultLeaseSeconds              = serverconfig.DefaultLeaseSeconds
	DefaultGraceSeconds              = serverconfig.DefaultGraceSeconds
	DefaultFailoverTolerationSeconds = 30
	DefaultServerCPURequest          = "100m"
	DefaultServerMemoryRequest       = "64Mi"
	DefaultServerMemoryLimit         = "1Gi"
)

// NFS-Ganesha 4.3 refuses to start with a longer lease or grace period
// (ganesha-core-config(8)).
const (
	GaneshaMaxLeaseSeconds = serverconfig.GaneshaMaxLeaseSeconds
	GaneshaMaxGraceSeconds = serverconfig.GaneshaMaxGraceSeconds
)

// maxFailoverToleration bounds failoverTolerationSeconds: an hour is far beyond any
// useful failover setting.
const maxFailoverToleration = 3600

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
	// Server are the NFS server's settings (engine, export, threads, lease and
	// grace) as the StorageClass chose them, defaults filled in. The volume's own
	// settings (its ID, the export's client networks) are added by ServerConfig.
	Server serverconfig.Config
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

// ServerConfig returns the settings of the volume's NFS server: the StorageClass's
// choices with the volume's ID and the networks its export admits.
func (p Parameters) ServerConfig(volumeID string, clients []string) serverconfig.Config {
	c := p.Server
	c.VolumeID = volumeID
	c.NFSVersions = slices.Clone(c.NFSVersions)
	c.Clients = slices.Clone(clients)
	return c
}

// Owner is a numeric uid:gid (serverconfig's).
type Owner = serverconfig.Owner

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
// The server's settings are read by serverconfig, which describes each of them once.
var parsers = withServerSettings(map[string]func(p *Parameters, v string) string{
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
})

func withServerSettings(m map[string]func(p *Parameters, v string) string) map[string]func(p *Parameters, v string) string {
	for _, key := range serverconfig.ParameterKeys() {
		m[key] = func(p *Parameters, v string) string { return p.Server.SetParameter(key, v) }
	}
	return m
}

// Defaults returns the parameters of a StorageClass that sets none.
func Defaults() Parameters {
	return Parameters{
		Server:                    serverconfig.Default(),
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
	srv := &p.Server
	if srv.GraceSeconds < srv.LeaseSeconds && in[GraceSeconds] != "" {
		errs = append(errs, &Error{Key: GraceSeconds, Value: in[GraceSeconds], Reason: fmt.Sprintf(
			"must be at least %s (%d): clients need one lease period to notice a restart and reclaim their state",
			LeaseSeconds, srv.LeaseSeconds)})
	} else if srv.GraceSeconds < srv.LeaseSeconds {
		// Only the lease was raised: keep the grace period in step instead of failing.
		srv.GraceSeconds = srv.LeaseSeconds
	}
	// The rules between server settings (an engine's limits) are serverconfig's;
	// each value on its own was checked as it was read.
	if err := srv.ValidateParameters(); err != nil {
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			errs = append(errs, paramError(e, in))
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

// paramError names a refused server setting by its StorageClass parameter.
func paramError(err error, in map[string]string) error {
	var e *serverconfig.Error
	if !errors.As(err, &e) || e.Param == "" {
		return err // a setting no StorageClass chooses: a bug in its default
	}
	reason := e.ParamReason
	if reason == "" {
		reason = fmt.Sprintf("value %q is not accepted: %s", in[e.Param], e.Reason)
	}
	return &Error{Key: e.Param, Value: in[e.Param], Reason: reason}
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
