package controller

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// volumeSpec is everything that decides how a volume's objects look.
type volumeSpec struct {
	id           string
	name         string // the CSI volume name
	params       parameters.Parameters
	storedParams string // parameters.Stored of the request
	// storedMutable is parameters.Stored of the VolumeAttributesClass's parameters
	// the volume was created or last modified with, "" when none.
	storedMutable string
	capacity      int64
	capRange      *csi.CapacityRange
	clusterIP     string // "" until the Service has one
	pvName        string
	pvcName       string
	pvcNamespace  string
	source        *contentSource // what the volume is made from; nil: empty
}

// annotations are the annotations every object of the volume carries.
func (v volumeSpec) annotations() map[string]string {
	a := map[string]string{
		volume.AnnotationVolumeName: v.name,
		volume.AnnotationParameters: v.storedParams,
	}
	if v.clusterIP != "" {
		a[volume.AnnotationClusterIP] = v.clusterIP
	}
	if v.storedMutable != "" {
		a[volume.AnnotationMutableParameters] = v.storedMutable
	}
	for k, val := range map[string]string{
		volume.AnnotationPVName:       v.pvName,
		volume.AnnotationPVCName:      v.pvcName,
		volume.AnnotationPVCNamespace: v.pvcNamespace,
	} {
		if val != "" {
			a[k] = val
		}
	}
	return a
}

func (c *Config) meta(v volumeSpec, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:        volume.ObjectName(v.id),
		Namespace:   c.Namespace,
		Labels:      volume.Labels(v.id, component),
		Annotations: v.annotations(),
	}
}

// buildService returns the volume's Service: a ClusterIP on TCP 2049 only, which is
// all NFSv4 needs (no rpcbind, no mountd, no lock manager ports).
func (c *Config) buildService(v volumeSpec) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: c.meta(v, volume.ComponentService),
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: v.clusterIP, // set only when a lost Service is recreated
			Selector:  volume.Selector(v.id),
			Ports: []corev1.ServicePort{{
				Name:       volume.NFSPortName,
				Protocol:   corev1.ProtocolTCP,
				Port:       volume.NFSPort,
				TargetPort: intstr.FromString(volume.NFSPortName),
			}},
			// NFS clients keep one TCP connection; a single endpoint makes affinity moot.
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
}

// buildBackendPVC returns the claim that holds the volume's data, with one access
// mode: ReadWriteOncePod or ReadWriteOnce (backendAccessMode, see createBackendPVC).
func (c *Config) buildBackendPVC(v volumeSpec, mode corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: c.meta(v, volume.ComponentBackend),
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{mode},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: *resource.NewQuantity(v.capacity, resource.BinarySI),
			}},
			VolumeMode: ptr(corev1.PersistentVolumeFilesystem),
		},
	}
	if v.params.BackendStorageClass != "" {
		// Left nil otherwise, so the cluster's default StorageClass is used.
		pvc.Spec.StorageClassName = ptr(v.params.BackendStorageClass)
	}
	return pvc
}

// Probe timings of the server container. Readiness is checked often because a
// volume's clients wait for it after every failover; liveness is patient, because
// restarting a server that is merely slow costs every client a grace period.
const (
	readinessPeriodSeconds = 2
	livenessPeriodSeconds  = 10
	livenessFailures       = 3
	probeTimeoutSeconds    = 5
	// serverTerminationGrace bounds the server's unexport-and-stop on SIGTERM.
	serverTerminationGrace = 30
	// The startup probe gives a starting server (nfsd threads, export loading,
	// Ganesha's own start) two minutes before liveness counts; /healthz answers 503
	// until the server serves.
	startupPeriodSeconds = 2
	startupFailures      = 60
	// probeSuccessThreshold is the API server's default, and the only value startup
	// and liveness probes accept. It is set anyway: the reconciler's drift check
	// (equality.Semantic.DeepDerivative) skips unset strings, pointers and slices
	// but compares integers even when zero, so a 0 here made every Deployment look
	// edited and be "corrected" (a GET, a PUT and an event) on every change.
	probeSuccessThreshold = 1
)

// buildDeployment returns the server Deployment: one pod running pvnfs-server over the
// backend PVC. Recreate, because the RWO backend can be mounted by one pod only: a
// rolling update would leave the new pod waiting for the old pod's volume.
func (c *Config) buildDeployment(v volumeSpec) *appsv1.Deployment {
	sc := v.params.ServerConfig(v.id, c.NFSClients)
	rt := ServerRuntimeFor(sc.Engine)
	labels := volume.Labels(v.id, volume.ComponentServer)

	container := corev1.Container{
		Name:            volume.ServerContainerName,
		Image:           c.ServerImage,
		ImagePullPolicy: c.ServerImagePullPolicy,
		Args:            sc.Args(),
		Ports: []corev1.ContainerPort{
			{Name: volume.NFSPortName, ContainerPort: int32(sc.NFSPort), Protocol: corev1.ProtocolTCP},
			{Name: volume.HealthPortName, ContainerPort: int32(sc.HealthPort), Protocol: corev1.ProtocolTCP},
		},
		Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     httpGet("/readyz"),
			PeriodSeconds:    readinessPeriodSeconds,
			TimeoutSeconds:   probeTimeoutSeconds,
			SuccessThreshold: probeSuccessThreshold,
			FailureThreshold: 2,
		},
		StartupProbe: &corev1.Probe{
			ProbeHandler:     httpGet("/healthz"),
			PeriodSeconds:    startupPeriodSeconds,
			TimeoutSeconds:   probeTimeoutSeconds,
			SuccessThreshold: probeSuccessThreshold,
			FailureThreshold: startupFailures,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     httpGet("/healthz"),
			PeriodSeconds:    livenessPeriodSeconds,
			TimeoutSeconds:   probeTimeoutSeconds,
			SuccessThreshold: probeSuccessThreshold,
			FailureThreshold: livenessFailures,
		},
		Resources:       *v.params.Resources.DeepCopy(),
		SecurityContext: rt.SecurityContext,
		VolumeMounts: append([]corev1.VolumeMount{{
			Name: volume.BackendVolumeName, MountPath: sc.VolumeRoot,
		}}, rt.Mounts...),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}

	pod := corev1.PodSpec{
		// The NFSv4.1 server scope is the hostname: a stable one lets clients reclaim
		// their opens and locks from a replacement pod instead of losing them.
		Hostname:   volume.ObjectName(v.id),
		Containers: []corev1.Container{container},
		Volumes: append([]corev1.Volume{{
			Name: volume.BackendVolumeName,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: volume.ObjectName(v.id)}},
		}}, rt.Volumes...),
		// The server needs no API access, and with hundreds of volumes in one
		// namespace, service links would put thousands of variables in every pod.
		AutomountServiceAccountToken: ptr(false),
		// The runtime's default seccomp profile for the whole pod. Kubernetes runs a
		// privileged container (the kernel engine's) unconfined whatever this says,
		// so it binds the Ganesha engine, whose container also sets it, and any
		// container added to the pod (docs/security.md).
		SecurityContext: &corev1.PodSecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		EnableServiceLinks:            ptr(false),
		TerminationGracePeriodSeconds: ptr(int64(serverTerminationGrace)),
		PriorityClassName:             v.params.PriorityClassName,
		ImagePullSecrets:              pullSecrets(c.ServerPullSecrets),
		NodeSelector:                  v.params.NodeSelector,
		Tolerations:                   tolerations(v.params),
	}

	dep := &appsv1.Deployment{
		ObjectMeta: c.meta(v, volume.ComponentServer),
		Spec: appsv1.DeploymentSpec{
			Replicas:             ptr(int32(1)),
			Selector:             &metav1.LabelSelector{MatchLabels: volume.Selector(v.id)},
			Strategy:             appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			RevisionHistoryLimit: ptr(int32(2)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}
	dep.Annotations[AnnotationTemplateHash] = templateHash(dep.Spec)
	return dep
}

// tolerations adds short NoExecute tolerations for not-ready and unreachable nodes
// to the user's: the default of 300 s would keep a volume's only server on a dead
// node for five minutes.
func tolerations(p parameters.Parameters) []corev1.Toleration {
	out := append([]corev1.Toleration(nil), p.Tolerations...)
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		out = append(out, corev1.Toleration{
			Key:               key,
			Operator:          corev1.TolerationOpExists,
			Effect:            corev1.TaintEffectNoExecute,
			TolerationSeconds: ptr(p.FailoverTolerationSeconds),
		})
	}
	return out
}

func pullSecrets(names []string) []corev1.LocalObjectReference {
	var refs []corev1.LocalObjectReference
	for _, n := range names {
		refs = append(refs, corev1.LocalObjectReference{Name: n})
	}
	return refs
}

func httpGet(path string) corev1.ProbeHandler {
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: path, Port: intstr.FromString(volume.HealthPortName), Scheme: corev1.URISchemeHTTP}}
}

func ptr[T any](v T) *T { return &v }
