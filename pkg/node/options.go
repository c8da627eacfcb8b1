package node

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// DefaultMountOptions are the NFS options every volume is mounted with, unless
// its StorageClass's mountOptions replace one (see mergeOptions), chosen for a
// shared web root that must ride out a failover of its server (docs/node.md
// explains each):
//   - hard: a request waits for the server to come back instead of failing with
//     EIO, so applications see a pause, not errors or torn writes;
//   - noresvport: reconnect from a new, unprivileged source port. The old port's
//     connection is in TIME_WAIT and its connection-tracking entry still leads to
//     the old server pod behind the ClusterIP, so reusing it stalls the reconnect
//     after a failover;
//   - timeo=600: 60 s before a request is retransmitted; TCP already retransmits
//     lost segments, so shorter only adds duplicate requests to a busy server;
//   - retrans=2: after two retransmissions the client logs "server not
//     responding" (and, being hard, keeps trying), so an outage shows in the node's
//     log within minutes;
//   - nosharecache: the mount gets a superblock of its own. Without it, a new
//     mount of an export that is still mounted (a stale staging mount whose pods
//     still hold it) reuses the old superblock, and with it the stale state the
//     new mount was meant to replace.
//
// The version (vers=4.2, falling back to 4.1) is added by mountAttempts.
func DefaultMountOptions() []string {
	return []string{"hard", "noresvport", "timeo=600", "retrans=2", "nosharecache"}
}

// exclusive lists the NFS options of which a mount takes only one: a
// StorageClass's choice replaces the default of its group.
var exclusive = [][]string{
	{"hard", "soft", "softerr"},
	{"resvport", "noresvport"},
	{"sharecache", "nosharecache"},
	{"ac", "noac"},
	{"cto", "nocto"},
}

// mergeOptions returns the defaults with the StorageClass's mount options
// applied: an option replaces the default with the same key (timeo=100 replaces
// timeo=600) or of its exclusive group (soft replaces hard), and every other
// option is added. So an option that only tunes (nconnect=4, rsize=...) never
// drops a default failover depends on (hard, noresvport); one that contradicts a
// default wins, because the StorageClass asked for it.
func mergeOptions(defaults, user []string) []string {
	key := func(o string) string { k, _, _ := strings.Cut(o, "="); return k }
	group := func(o string) []string {
		for _, g := range exclusive {
			if slices.Contains(g, key(o)) {
				return g
			}
		}
		return []string{key(o)}
	}
	replaced := map[string]bool{}
	for _, o := range user {
		for _, k := range group(o) {
			replaced[k] = true
		}
	}
	var out []string
	for _, o := range defaults {
		if !replaced[key(o)] {
			out = append(out, o)
		}
	}
	seen := map[string]bool{}
	for _, o := range user {
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	return out
}

// mountAttempts returns the option lists to try, in order, for a volume:
// DefaultMountOptions merged with mountFlags (the StorageClass's mountOptions, see
// mergeOptions), plus the NFS version: pinned ("4.1"/"4.2" from the volume context)
// alone, or 4.2 then 4.1. Mount flags that name a version are used as they are,
// with no fallback; they must agree with a pinned version. readOnly adds "ro".
func mountAttempts(pinned string, mountFlags []string, readOnly bool) ([][]string, error) {
	var user []string
	for _, f := range mountFlags {
		for _, o := range strings.Split(f, ",") {
			if o = strings.TrimSpace(o); o != "" {
				user = append(user, o)
			}
		}
	}
	opts := mergeOptions(DefaultMountOptions(), user)
	if readOnly && !slices.Contains(opts, "ro") {
		opts = append(opts, "ro")
	}
	v, err := versionIn(opts)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "mount options %q: %v", strings.Join(opts, ","), err)
	}
	if v != "" {
		if !strings.HasPrefix(v, "4") {
			return nil, status.Errorf(codes.InvalidArgument, "mount options ask for NFS version %s, but pvnfs servers speak NFSv4 only: remove the version from the StorageClass mountOptions or use nfsvers=4.1 or 4.2", v)
		}
		if pinned != "" && v != pinned {
			return nil, status.Errorf(codes.InvalidArgument, "mount options ask for NFS version %s, but the volume's StorageClass pins nfsVersion %s: make them agree", v, pinned)
		}
		return [][]string{opts}, nil
	}
	versions := volume.NFSVersions
	if pinned != "" {
		versions = []string{pinned}
	}
	attempts := make([][]string, 0, len(versions))
	for _, ver := range versions {
		attempts = append(attempts, append(slices.Clone(opts), "vers="+ver))
	}
	return attempts, nil
}

// versionIn returns the NFS version the options ask for ("4.1", "4", "3"), or ""
// when they leave it to the node.
func versionIn(opts []string) (string, error) {
	major, minor := "", ""
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "vers", "nfsvers":
			if v == "" {
				return "", fmt.Errorf("%s needs a value", k)
			}
			if major != "" && major != v {
				return "", fmt.Errorf("conflicting NFS versions %s and %s", major, v)
			}
			major = v
		case "minorversion":
			if _, err := strconv.Atoi(v); err != nil {
				return "", fmt.Errorf("minorversion=%q is not a number", v)
			}
			minor = v
		}
	}
	switch {
	case minor == "":
		return major, nil
	case major == "" || major == "4":
		return "4." + minor, nil
	case strings.HasPrefix(major, "4.") && major != "4."+minor:
		return "", fmt.Errorf("nfsvers=%s contradicts minorversion=%s", major, minor)
	}
	return major, nil
}
