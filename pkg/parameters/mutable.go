package parameters

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// mutable are the parameters a VolumeAttributesClass may set or change on a live
// volume (CSI ControllerModifyVolume): each takes effect by rolling the volume's
// server once, on the same backend and address. The others are fixed for the
// volume's life: the engine and sync mode decide what is on the backend and how
// clients were promised it, the backend class and access mode are the backend
// PVC's, and nfsVersion and the export's owner and mode are what the nodes mounted
// and the export was first made with.
var mutable = []string{
	NFSThreads, LeaseSeconds, GraceSeconds,
	ServerCPURequest, ServerCPULimit, ServerMemoryRequest, ServerMemoryLimit,
	ServerPriorityClassName, ServerNodeSelector, ServerTolerations, FailoverTolerationSeconds,
}

// MutableKeys returns the parameters a VolumeAttributesClass may change, sorted.
func MutableKeys() []string {
	out := slices.Clone(mutable)
	sort.Strings(out)
	return out
}

// CheckMutable refuses, with one *Error per key, what a VolumeAttributesClass may
// not set: unknown keys and the parameters fixed for a volume's life. Values are
// checked by Parse, with the volume's other parameters.
func CheckMutable(in map[string]string) error {
	var errs []error
	for _, k := range sortedKeys(in) {
		switch {
		case slices.Contains(mutable, k):
		case parsers[k] != nil:
			errs = append(errs, &Error{Key: k, Value: in[k], Reason: fmt.Sprintf(
				"cannot change on an existing volume (it is fixed when the volume is created); a VolumeAttributesClass may set %s",
				strings.Join(MutableKeys(), ", "))})
		default:
			errs = append(errs, &Error{Key: k, Value: in[k], Reason: fmt.Sprintf(
				"unknown parameter; a VolumeAttributesClass may set %s (keys are case-sensitive)", strings.Join(MutableKeys(), ", "))})
		}
	}
	return errors.Join(errs...)
}

// Merge returns base with every key of over set to over's value: a volume's
// StorageClass parameters with the VolumeAttributesClass's on top.
func Merge(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}
