package volume

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// DefaultDriverName is the CSI driver name pvnfs registers under.
const DefaultDriverName = "nfs.pvnfs.io"

// MaxIDLength bounds a volume ID so that every name derived from it fits a DNS label
// (63 characters): the objects pvnfs creates are "pvnfs-<id>" (46), and the server
// pods the Deployment controller derives from them, "pvnfs-<id>-<rs hash ≤10>-<5>",
// are at most 63 too. It is exactly the length of the common "pvc-<uuid>" names, so
// those are kept verbatim and stay readable.
const MaxIDLength = 40

// hashLength is how many hex digits of the name's SHA-256 an ID derived from an
// irregular name carries: 40 bits make an accidental collision between two names of
// one cluster vanishingly unlikely, and CreateVolume still checks the name annotation.
const hashLength = 10

// ObjectPrefix starts the name of every object that serves a volume.
const ObjectPrefix = "pvnfs-"

// ErrInvalidID is returned for a string that is not a volume ID pvnfs could have made.
var ErrInvalidID = errors.New("invalid volume ID")

// ErrInvalidName is returned for a CSI volume name that cannot be provisioned.
var ErrInvalidName = errors.New("invalid volume name")

// MaxNameLength is the longest CSI volume name accepted. The CSI spec asks plugins to
// support at least 128 characters; the name is kept in an annotation, so longer ones
// would work too, but nothing legitimate sends them.
const MaxNameLength = 253

// IDFromName derives the volume ID for a CSI CreateVolume name. The same name always
// gives the same ID, which makes CreateVolume an idempotent get-or-create by name.
//
// A name that is already a valid DNS label of at most MaxIDLength characters (the
// csi-provisioner's "pvc-<uuid>") is its own ID. Any other name becomes a readable,
// sanitized prefix of it plus a hash of the whole name, e.g. "my-volume-1a2b3c4d5e".
func IDFromName(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return labelFromName(name, MaxIDLength, "vol"), nil
}

// checkName refuses a CSI name that is empty or longer than MaxNameLength.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: name is empty", ErrInvalidName)
	case len(name) > MaxNameLength:
		return fmt.Errorf("%w: name is %d characters long, at most %d are accepted",
			ErrInvalidName, len(name), MaxNameLength)
	}
	return nil
}

// labelFromName is name itself when it is a DNS label of at most max characters, and
// otherwise a sanitized prefix of it (or fallback) plus a hash of the whole name.
func labelFromName(name string, max int, fallback string) string {
	if isDNSLabel(name) && len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:])[:hashLength]
	prefix := sanitize(name, max-hashLength-1)
	if prefix == "" {
		prefix = fallback
	}
	return prefix + "-" + suffix
}

// ParseID checks that id is a volume ID pvnfs could have made. It cannot recover the
// name (hashing is one-way); the name is kept in the AnnotationVolumeName annotation.
func ParseID(id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(id) > MaxIDLength {
		return "", fmt.Errorf("%w: %q is %d characters long, at most %d", ErrInvalidID, id, len(id), MaxIDLength)
	}
	if !isDNSLabel(id) {
		return "", fmt.Errorf("%w: %q is not a lowercase DNS label", ErrInvalidID, id)
	}
	return id, nil
}

// ObjectName is the name of the backend PVC, the server Deployment and the Service of
// a volume. The three are of different kinds, so they share it, which makes a volume's
// objects easy to find by hand.
func ObjectName(id string) string { return ObjectPrefix + id }

// IDFromObjectName is the inverse of ObjectName.
func IDFromObjectName(name string) (string, error) {
	id, ok := strings.CutPrefix(name, ObjectPrefix)
	if !ok {
		return "", fmt.Errorf("%w: object name %q does not start with %q", ErrInvalidID, name, ObjectPrefix)
	}
	return ParseID(id)
}

// isDNSLabel reports whether s is an RFC 1123 label: lowercase alphanumerics and '-',
// starting and ending with an alphanumeric, at most 63 characters.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// sanitize lowercases s, turns every run of characters a DNS label cannot hold into a
// single '-', and cuts the result to at most max characters without a leading or
// trailing '-'.
func sanitize(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := b.String()
	if len(out) > max {
		out = out[:max]
	}
	return strings.Trim(out, "-")
}

// Labels and annotations on every object pvnfs creates for a volume.
const (
	// LabelVolumeID selects all objects of one volume.
	LabelVolumeID = "pvnfs.io/volume-id"
	// LabelComponent tells the backend PVC, server Deployment/pods and Service apart.
	LabelComponent = "app.kubernetes.io/component"
	// LabelName, LabelInstance, LabelManagedBy and LabelPartOf are the recommended
	// app.kubernetes.io labels, so generic tooling groups the objects correctly.
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPartOf    = "app.kubernetes.io/part-of"

	// AnnotationVolumeName holds the CSI volume name the ID was derived from; it tells
	// a retry of the same request from a colliding different name.
	AnnotationVolumeName = "pvnfs.io/volume-name"
	// AnnotationParameters holds the StorageClass parameters the volume was created
	// with (JSON), so that a retry with other parameters is refused, and so that the
	// server Deployment can be rebuilt exactly when it is lost or drifts.
	AnnotationParameters = "pvnfs.io/parameters"
	// AnnotationMutableParameters holds, on the backend PVC and the Deployment, the
	// parameters of the VolumeAttributesClass the volume was created or last
	// modified with (JSON), which take precedence over AnnotationParameters. It is
	// absent on a volume no class has touched.
	AnnotationMutableParameters = "pvnfs.io/mutable-parameters"
	// AnnotationClusterIP records the Service's ClusterIP on the backend PVC and the
	// Deployment, so that a deleted Service is recreated with the same address that
	// every node has mounted.
	AnnotationClusterIP = "pvnfs.io/cluster-ip"
	// AnnotationPVName, AnnotationPVCName and AnnotationPVCNamespace name the user's
	// PV and PVC when the provisioner passes them (--extra-create-metadata).
	AnnotationPVName       = "pvnfs.io/pv-name"
	AnnotationPVCName      = "pvnfs.io/pvc-name"
	AnnotationPVCNamespace = "pvnfs.io/pvc-namespace"
)

// Values of the labels above.
const (
	AppName                   = "pvnfs"
	ManagedBy                 = "pvnfs-controller"
	ComponentBackend          = "backend-volume"
	ComponentServer           = "nfs-server"
	ComponentService          = "nfs-service"
	ServerContainerName       = "nfs-server"
	BackendVolumeName         = "backend"
	HealthPortName            = "health"
	NFSPortName               = "nfs"
	NFSPort             int32 = 2049
)

// Labels returns the labels of a volume's object of the given component.
func Labels(id, component string) map[string]string {
	return map[string]string{
		LabelVolumeID:  id,
		LabelComponent: component,
		LabelName:      AppName,
		LabelInstance:  ObjectName(id),
		LabelManagedBy: ManagedBy,
		LabelPartOf:    AppName,
	}
}

// Selector returns the labels that select the server pods of a volume. It is the
// Deployment's immutable selector, so it must never change.
func Selector(id string) map[string]string {
	return map[string]string{LabelVolumeID: id, LabelComponent: ComponentServer}
}

// Server layout: where the backend volume is mounted in the server pod and which
// directory below it is exported. Exporting a subdirectory keeps lost+found and the
// server's own state (NFSv4 recovery records) out of what clients see.
const (
	// VolumeRoot is the backend volume's mount point in the server container.
	VolumeRoot = "/data"
	// ExportPath is the exported directory, and the path clients mount.
	ExportPath = VolumeRoot + "/export"
	// StateDir holds the server's state on the backend volume, so that it follows
	// the volume when the pod moves to another node.
	StateDir = VolumeRoot + "/.pvnfs"
)

// Volume context keys: what CreateVolume hands to NodeStageVolume through the PV.
const (
	// ContextServer is the NFS server address: always the Service's ClusterIP, never
	// a DNS name, because the node plugin runs in the host network, which may not
	// resolve cluster DNS.
	ContextServer = "server"
	// ContextShare is the exported path on the server.
	ContextShare = "share"
	// ContextNFSVersion is "4.1" or "4.2" when the StorageClass pins the version;
	// absent, the node tries 4.2 and falls back to 4.1.
	ContextNFSVersion = "nfsVersion"
)

// Context is the parsed volume context: what a node needs to mount a volume.
type Context struct {
	// Server is the Service ClusterIP (IPv4 or IPv6 literal).
	Server string
	// Share is the absolute exported path.
	Share string
	// NFSVersion is "4.1", "4.2", or "" to let the node negotiate.
	NFSVersion string
}

// ErrInvalidContext is returned for a volume context the node cannot mount.
var ErrInvalidContext = errors.New("invalid volume context")

// NFSVersions lists the NFS versions pvnfs serves and mounts, newest first.
var NFSVersions = []string{"4.2", "4.1"}

// Map formats the context as the CSI volume context.
func (c Context) Map() map[string]string {
	m := map[string]string{ContextServer: c.Server, ContextShare: c.Share}
	if c.NFSVersion != "" {
		m[ContextNFSVersion] = c.NFSVersion
	}
	return m
}

// ParseContext validates a CSI volume context. Unknown keys are ignored: the CO adds
// its own (csi.storage.k8s.io/...) and a newer controller may add keys an older node
// does not know.
func ParseContext(m map[string]string) (Context, error) {
	c := Context{Server: m[ContextServer], Share: m[ContextShare], NFSVersion: m[ContextNFSVersion]}
	if c.Server == "" {
		return Context{}, fmt.Errorf("%w: %q is missing", ErrInvalidContext, ContextServer)
	}
	if ip := parseIP(c.Server); ip == "" {
		return Context{}, fmt.Errorf("%w: %q must be an IP address (the Service ClusterIP), got %q",
			ErrInvalidContext, ContextServer, c.Server)
	}
	if c.Share == "" || c.Share[0] != '/' || strings.ContainsAny(c.Share, ",\x00\n") || strings.Contains(c.Share, "/../") || strings.HasSuffix(c.Share, "/..") {
		return Context{}, fmt.Errorf("%w: %q must be an absolute path without '..' or ',', got %q",
			ErrInvalidContext, ContextShare, c.Share)
	}
	if c.NFSVersion != "" && !validNFSVersion(c.NFSVersion) {
		return Context{}, fmt.Errorf("%w: %q must be one of %s, got %q",
			ErrInvalidContext, ContextNFSVersion, strings.Join(NFSVersions, ", "), c.NFSVersion)
	}
	return c, nil
}

func validNFSVersion(v string) bool {
	for _, s := range NFSVersions {
		if v == s {
			return true
		}
	}
	return false
}

// Source is the NFS mount source "server:share", with an IPv6 server in brackets.
func (c Context) Source() string {
	if strings.Contains(c.Server, ":") {
		return "[" + c.Server + "]:" + c.Share
	}
	return c.Server + ":" + c.Share
}
