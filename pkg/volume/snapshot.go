package volume

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// A pvnfs snapshot is a VolumeSnapshot of the source volume's backend PVC, made by the
// controller in its own namespace. Its CSI snapshot ID is "<namespace>/<key>": the
// namespace says which pvnfs installation holds it (a backend PVC can be restored
// only from a VolumeSnapshot in its own namespace), and the key, derived from the
// CSI snapshot name like a volume ID from a volume name, names the VolumeSnapshot
// ("pvnfs-<key>").

// MaxSnapshotKeyLength bounds a snapshot key so that its VolumeSnapshot's name,
// "pvnfs-<key>", is a DNS label (63 characters) and the key fits a label value. The
// csi-snapshotter's names, "snapshot-<uuid>" (45 characters), are kept verbatim.
const MaxSnapshotKeyLength = 63 - len(ObjectPrefix)

// maxNamespaceLength is the longest namespace name (a DNS label).
const maxNamespaceLength = 63

// MaxSnapshotIDLength is the longest snapshot ID: within the 128 bytes CSI asks plugins
// to keep their IDs to.
const MaxSnapshotIDLength = maxNamespaceLength + 1 + MaxSnapshotKeyLength

// snapshotIDSeparator separates the namespace from the key; neither can contain it.
const snapshotIDSeparator = "/"

// ErrInvalidSnapshotID is returned for a string that is not a snapshot ID pvnfs could
// have made.
var ErrInvalidSnapshotID = errors.New("invalid snapshot ID")

// SnapshotKeyFromName derives the snapshot key of a CSI CreateSnapshot name. The same
// name always gives the same key, which makes CreateSnapshot an idempotent
// get-or-create by name.
func SnapshotKeyFromName(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return labelFromName(name, MaxSnapshotKeyLength, "snap"), nil
}

// FormatSnapshotID is the CSI snapshot ID of the snapshot key in the pvnfs namespace.
func FormatSnapshotID(namespace, key string) string {
	return namespace + snapshotIDSeparator + key
}

// ParseSnapshotID splits a snapshot ID into the pvnfs namespace that holds the
// snapshot and its key, or says why it is not an ID pvnfs could have made.
func ParseSnapshotID(id string) (namespace, key string, err error) {
	if id == "" {
		return "", "", fmt.Errorf("%w: empty", ErrInvalidSnapshotID)
	}
	if len(id) > MaxSnapshotIDLength {
		return "", "", fmt.Errorf("%w: %q is %d characters long, at most %d", ErrInvalidSnapshotID, id, len(id), MaxSnapshotIDLength)
	}
	namespace, key, ok := strings.Cut(id, snapshotIDSeparator)
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not <namespace>/<snapshot>", ErrInvalidSnapshotID, id)
	}
	if !isDNSLabel(namespace) {
		return "", "", fmt.Errorf("%w: %q: namespace %q is not a lowercase DNS label", ErrInvalidSnapshotID, id, namespace)
	}
	if !isDNSLabel(key) || len(key) > MaxSnapshotKeyLength {
		return "", "", fmt.Errorf("%w: %q: %q is not a lowercase DNS label of at most %d characters", ErrInvalidSnapshotID, id, key, MaxSnapshotKeyLength)
	}
	return namespace, key, nil
}

// SnapshotObjectName is the name of the VolumeSnapshot of a snapshot key.
func SnapshotObjectName(key string) string { return ObjectPrefix + key }

// SnapshotKeyFromObjectName is the inverse of SnapshotObjectName.
func SnapshotKeyFromObjectName(name string) (string, error) {
	key, ok := strings.CutPrefix(name, ObjectPrefix)
	if !ok || !isDNSLabel(key) || len(key) > MaxSnapshotKeyLength {
		return "", fmt.Errorf("%w: object name %q is not %s<snapshot key>", ErrInvalidSnapshotID, name, ObjectPrefix)
	}
	return key, nil
}

// Labels and annotations of the VolumeSnapshots pvnfs makes. They carry the
// recommended app.kubernetes.io labels of Labels (managed-by selects them), but not
// LabelVolumeID: a snapshot is not one of the volume's objects, and nothing that
// acts on a volume's objects (deleting a volume, the reconciler) may touch it.
const (
	// LabelSourceVolumeID is the ID of the volume the snapshot was taken of, for
	// ListSnapshots by source volume.
	LabelSourceVolumeID = "pvnfs.io/source-volume-id"
	// ComponentSnapshot is the component label value of a pvnfs VolumeSnapshot.
	ComponentSnapshot = "snapshot"

	// AnnotationSnapshotName holds the CSI snapshot name the key was derived from; it
	// tells a retry of the same request from a colliding different name.
	AnnotationSnapshotName = "pvnfs.io/snapshot-name"
	// AnnotationSnapshotParameters holds the VolumeSnapshotClass parameters the
	// snapshot was taken with (JSON), so that a retry with others is refused.
	AnnotationSnapshotParameters = "pvnfs.io/snapshot-parameters"
	// AnnotationBackendDriver names the CSI driver of the backend snapshot: a volume
	// can be restored from it only onto a backend StorageClass of that driver.
	AnnotationBackendDriver = "pvnfs.io/backend-driver"
	// AnnotationVolumeSnapshotName, AnnotationVolumeSnapshotNamespace and
	// AnnotationVolumeSnapshotContentName name the user's objects when the
	// csi-snapshotter passes them (--extra-create-metadata).
	AnnotationVolumeSnapshotName        = "pvnfs.io/volumesnapshot-name"
	AnnotationVolumeSnapshotNamespace   = "pvnfs.io/volumesnapshot-namespace"
	AnnotationVolumeSnapshotContentName = "pvnfs.io/volumesnapshotcontent-name"

	// AnnotationContentSource, on a backend PVC, records what the volume was created
	// from (FormatContentSource), so that CreateVolume reports it and refuses a
	// retry of the same name from another source.
	AnnotationContentSource = "pvnfs.io/content-source"
)

// SnapshotLabels returns the labels of the VolumeSnapshot of a snapshot key taken of
// the source volume.
func SnapshotLabels(key, sourceVolumeID string) map[string]string {
	return map[string]string{
		LabelSourceVolumeID: sourceVolumeID,
		LabelComponent:      ComponentSnapshot,
		LabelName:           AppName,
		LabelInstance:       SnapshotObjectName(key),
		LabelManagedBy:      ManagedBy,
		LabelPartOf:         AppName,
	}
}

// Kinds of content source a volume can be created from.
const (
	SourceSnapshot = "snapshot"
	SourceVolume   = "volume"
)

// ErrInvalidContentSource is returned for an AnnotationContentSource value that
// FormatContentSource did not make.
var ErrInvalidContentSource = errors.New("invalid content source")

// FormatContentSource is the AnnotationContentSource value of a volume created from
// the snapshot (kind SourceSnapshot) or the volume (SourceVolume) with that ID.
func FormatContentSource(kind, id string) string { return kind + ":" + id }

// ParseContentSource splits an AnnotationContentSource value and checks its ID.
func ParseContentSource(s string) (kind, id string, err error) {
	kind, id, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%w: %q is not <kind>:<id>", ErrInvalidContentSource, s)
	case kind == SourceSnapshot:
		if _, _, err := ParseSnapshotID(id); err != nil {
			return "", "", fmt.Errorf("%w: %v", ErrInvalidContentSource, err)
		}
	case kind == SourceVolume:
		if _, err := ParseID(id); err != nil {
			return "", "", fmt.Errorf("%w: %v", ErrInvalidContentSource, err)
		}
	default:
		return "", "", fmt.Errorf("%w: kind %q is not %q or %q", ErrInvalidContentSource, kind, SourceSnapshot, SourceVolume)
	}
	return kind, id, nil
}

// The server's flush endpoint, on its health port: the controller POSTs to it before
// a backend snapshot or clone is taken, and the server writes every dirty page and
// inode of the backend filesystem to stable storage (syncfs) before it answers 200.
// FlushTimeoutParam says how long the caller waits (a Go duration); the server stops
// waiting then, and never waits longer than MaxFlushTimeout.
const (
	FlushPath         = "/flush"
	FlushTimeoutParam = "timeout"
	MaxFlushTimeout   = 5 * time.Minute
)
