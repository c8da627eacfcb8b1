package parameters

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Keys of a pvnfs VolumeSnapshotClass's parameters (CreateSnapshot), apart from the
// StorageClass's.
const (
	// BackendSnapshotClass names the VolumeSnapshotClass of the backend snapshot; by
	// default the backend CSI driver's default class.
	BackendSnapshotClass = "backendSnapshotClass"
)

// Keys the csi-snapshotter passes with --extra-create-metadata.
const (
	VolumeSnapshotNameKey        = ProvisionerPrefix + "volumesnapshot/name"
	VolumeSnapshotNamespaceKey   = ProvisionerPrefix + "volumesnapshot/namespace"
	VolumeSnapshotContentNameKey = ProvisionerPrefix + "volumesnapshotcontent/name"
)

// SnapshotParameters are a pvnfs VolumeSnapshotClass's validated parameters.
type SnapshotParameters struct {
	// BackendSnapshotClass is the VolumeSnapshotClass of the backend snapshot; ""
	// means the default class of the backend volume's CSI driver.
	BackendSnapshotClass string
}

// snapshotParsers holds one function per VolumeSnapshotClass key.
var snapshotParsers = map[string]func(p *SnapshotParameters, v string) string{
	BackendSnapshotClass: func(p *SnapshotParameters, v string) string {
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return "must be the name of a VolumeSnapshotClass of the backend's CSI driver (a lowercase DNS subdomain): " + strings.Join(errs, "; ")
		}
		p.BackendSnapshotClass = v
		return ""
	},
}

// SnapshotKeys returns every VolumeSnapshotClass parameter key pvnfs accepts, sorted.
func SnapshotKeys() []string { return sortedKeys(map[string]string{BackendSnapshotClass: ""}) }

// ParseSnapshot validates a pvnfs VolumeSnapshotClass's parameters. Every problem is
// reported, each as an *Error naming its key. The csi-snapshotter's own keys
// (csi.storage.k8s.io/...) are accepted and ignored.
func ParseSnapshot(in map[string]string) (SnapshotParameters, error) {
	var p SnapshotParameters
	var errs []error
	for _, k := range sortedKeys(in) {
		v := in[k]
		if strings.HasPrefix(k, ProvisionerPrefix) {
			continue
		}
		parse, ok := snapshotParsers[k]
		if !ok {
			errs = append(errs, &Error{Key: k, Value: v, Reason: fmt.Sprintf(
				"unknown VolumeSnapshotClass parameter; accepted parameters are %s (keys are case-sensitive)", strings.Join(SnapshotKeys(), ", "))})
			continue
		}
		if reason := parse(&p, strings.TrimSpace(v)); reason != "" {
			errs = append(errs, &Error{Key: k, Value: v, Reason: fmt.Sprintf("value %q is not accepted: %s", v, reason)})
		}
	}
	if len(errs) > 0 {
		return SnapshotParameters{}, errors.Join(errs...)
	}
	return p, nil
}
