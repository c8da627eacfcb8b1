package serverconfig

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// DefaultHealthPort serves /healthz, /readyz and /metrics in the server pod.
const DefaultHealthPort = 9102

// Config is what one volume's NFS server is told by its Deployment.
type Config struct {
	// VolumeID is the pvnfs volume ID; the export's fsid is derived from it.
	VolumeID string
	// Engine is parameters.EngineKernel or parameters.EngineGanesha.
	Engine string
	// VolumeRoot is where the backend volume is mounted.
	VolumeRoot string
	// NFSVersions are the NFSv4 minor versions served, e.g. ["4.1", "4.2"].
	NFSVersions []string
	// Sync exports with "sync" (true) or "async" (false).
	Sync bool
	// RootSquash maps client root to the anonymous user.
	RootSquash bool
	// ExportOwner ("uid:gid") and ExportMode (octal) are applied to the export root
	// when set; "" leaves it as it is.
	ExportOwner string
	ExportMode  string
	// Threads is the number of server threads.
	Threads int
	// LeaseSeconds and GraceSeconds are the NFSv4 lease and grace periods.
	LeaseSeconds int
	GraceSeconds int
	// NFSPort is the TCP port NFS is served on.
	NFSPort int
	// HealthPort serves /healthz, /readyz and /metrics.
	HealthPort int
	// Clients are the networks (CIDRs) the export admits; none admits every
	// address. The controller passes the nodes' networks (pvnfs-csi --nfs-clients),
	// the same ones the chart's NetworkPolicy admits, so the export refuses what the
	// policy refuses even where no CNI enforces policies.
	Clients []string
}

// Default returns the settings of a volume whose StorageClass sets nothing.
func Default() Config {
	p := parameters.Defaults()
	return FromParameters("", p)
}

// FromParameters derives a volume's server settings from its parameters.
func FromParameters(id string, p parameters.Parameters) Config {
	c := Config{
		VolumeID:     id,
		Engine:       p.Engine,
		VolumeRoot:   volume.VolumeRoot,
		NFSVersions:  []string{"4.1", "4.2"},
		Sync:         p.ExportSync,
		RootSquash:   p.RootSquash,
		Threads:      p.NFSThreads,
		LeaseSeconds: p.LeaseSeconds,
		GraceSeconds: p.GraceSeconds,
		NFSPort:      int(volume.NFSPort),
		HealthPort:   DefaultHealthPort,
	}
	if p.ExportOwner != nil {
		c.ExportOwner = p.ExportOwner.String()
	}
	if p.ExportMode != nil {
		c.ExportMode = fmt.Sprintf("%04o", *p.ExportMode)
	}
	return c
}

// ExportDir is the exported directory below the volume root. Clients never see the
// volume root itself, so lost+found and the server's state stay out of the share.
func (c Config) ExportDir() string { return path.Join(c.VolumeRoot, path.Base(volume.ExportPath)) }

// StateDir holds the server's state on the backend volume (NFSv4 client recovery
// records), so a restarted or moved server lets its clients reclaim their state.
func (c Config) StateDir() string { return path.Join(c.VolumeRoot, path.Base(volume.StateDir)) }

// Flag names.
const (
	FlagVolumeID     = "volume-id"
	FlagEngine       = "engine"
	FlagVolumeRoot   = "volume-root"
	FlagNFSVersions  = "nfs-versions"
	FlagSync         = "export-sync"
	FlagRootSquash   = "root-squash"
	FlagExportOwner  = "export-owner"
	FlagExportMode   = "export-mode"
	FlagThreads      = "threads"
	FlagLeaseSeconds = "lease-seconds"
	FlagGraceSeconds = "grace-seconds"
	FlagNFSPort      = "nfs-port"
	FlagHealthPort   = "health-port"
	FlagClients      = "clients"
)

// AddFlags registers the settings as flags of pvnfs-server, with c's values as
// defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.VolumeID, FlagVolumeID, c.VolumeID, "pvnfs volume ID; the export's stable fsid is derived from it (required)")
	fs.StringVar(&c.Engine, FlagEngine, c.Engine, `NFS server: "kernel" (Linux nfsd; needs the nfsd module and a privileged pod) or "ganesha" (NFS-Ganesha in userspace)`)
	fs.StringVar(&c.VolumeRoot, FlagVolumeRoot, c.VolumeRoot, "mount point of the backend volume; the export is its subdirectory \"export\", server state lives in \".pvnfs\"")
	fs.Func(FlagNFSVersions, fmt.Sprintf("comma-separated NFSv4 minor versions to serve, from 4.0, 4.1, 4.2 (default %q)", strings.Join(c.NFSVersions, ",")), func(s string) error {
		c.NFSVersions = splitList(s)
		return nil
	})
	fs.BoolVar(&c.Sync, FlagSync, c.Sync, "export with sync (writes are on stable storage before they are acknowledged); false exports async and can lose acknowledged writes on a crash")
	fs.BoolVar(&c.RootSquash, FlagRootSquash, c.RootSquash, "map requests from client root to the anonymous user")
	fs.StringVar(&c.ExportOwner, FlagExportOwner, c.ExportOwner, `"uid:gid" to give the export root, e.g. "33:33"; empty leaves it unchanged`)
	fs.StringVar(&c.ExportMode, FlagExportMode, c.ExportMode, `octal mode to give the export root, e.g. "2775"; empty leaves it unchanged`)
	fs.IntVar(&c.Threads, FlagThreads, c.Threads, "number of NFS server threads")
	fs.IntVar(&c.LeaseSeconds, FlagLeaseSeconds, c.LeaseSeconds, "NFSv4 lease time in seconds: how long a silent client keeps its state")
	fs.IntVar(&c.GraceSeconds, FlagGraceSeconds, c.GraceSeconds, "NFSv4 grace time in seconds after a start, during which clients reclaim their state")
	fs.IntVar(&c.NFSPort, FlagNFSPort, c.NFSPort, "TCP port NFS is served on")
	fs.IntVar(&c.HealthPort, FlagHealthPort, c.HealthPort, "TCP port of /healthz, /readyz and /metrics")
	fs.Func(FlagClients, `comma-separated networks (CIDRs, e.g. "10.0.0.0/16,fd00:10::/64") the export admits; empty admits every address`, func(s string) error {
		c.Clients = splitList(s)
		return nil
	})
}

// Args formats the settings as pvnfs-server arguments. Every setting is passed
// explicitly, so the server never depends on its own defaults matching the
// controller's, and a changed setting always changes the pod template.
func (c Config) Args() []string {
	args := []string{
		flagArg(FlagVolumeID, c.VolumeID),
		flagArg(FlagEngine, c.Engine),
		flagArg(FlagVolumeRoot, c.VolumeRoot),
		flagArg(FlagNFSVersions, strings.Join(c.NFSVersions, ",")),
		flagArg(FlagSync, strconv.FormatBool(c.Sync)),
		flagArg(FlagRootSquash, strconv.FormatBool(c.RootSquash)),
	}
	if c.ExportOwner != "" {
		args = append(args, flagArg(FlagExportOwner, c.ExportOwner))
	}
	if c.ExportMode != "" {
		args = append(args, flagArg(FlagExportMode, c.ExportMode))
	}
	args = append(args,
		flagArg(FlagThreads, strconv.Itoa(c.Threads)),
		flagArg(FlagLeaseSeconds, strconv.Itoa(c.LeaseSeconds)),
		flagArg(FlagGraceSeconds, strconv.Itoa(c.GraceSeconds)),
		flagArg(FlagNFSPort, strconv.Itoa(c.NFSPort)),
		flagArg(FlagHealthPort, strconv.Itoa(c.HealthPort)),
	)
	// Only when set, so that servers made before the setting existed keep their
	// pod template (and are not counted as outdated) while nothing restricts them.
	if len(c.Clients) > 0 {
		args = append(args, flagArg(FlagClients, strings.Join(c.Clients, ",")))
	}
	return args
}

func flagArg(name, value string) string { return "--" + name + "=" + value }

// Validate checks the settings, naming the flag at fault.
func (c Config) Validate() error {
	var errs []error
	bad := func(flagName, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flagName, fmt.Sprintf(format, a...)))
	}
	if _, err := volume.ParseID(c.VolumeID); err != nil {
		bad(FlagVolumeID, "%v", err)
	}
	if c.Engine != parameters.EngineKernel && c.Engine != parameters.EngineGanesha {
		bad(FlagEngine, "%q is not %q or %q", c.Engine, parameters.EngineKernel, parameters.EngineGanesha)
	}
	if !path.IsAbs(c.VolumeRoot) || path.Clean(c.VolumeRoot) == "/" {
		bad(FlagVolumeRoot, "%q must be an absolute path below /", c.VolumeRoot)
	}
	if len(c.NFSVersions) == 0 {
		bad(FlagNFSVersions, "at least one version is needed")
	}
	for _, v := range c.NFSVersions {
		if _, err := MinorVersion(v); err != nil {
			bad(FlagNFSVersions, "%v", err)
		}
	}
	if c.ExportOwner != "" {
		if _, err := parameters.Parse(map[string]string{parameters.ExportOwner: c.ExportOwner}); err != nil {
			bad(FlagExportOwner, `%q is not a numeric "uid:gid"`, c.ExportOwner)
		}
	}
	if c.ExportMode != "" {
		if _, err := parameters.Parse(map[string]string{parameters.ExportMode: c.ExportMode}); err != nil {
			bad(FlagExportMode, "%q is not an octal mode from 0000 to 7777", c.ExportMode)
		}
	}
	if c.Threads < 1 || c.Threads > 1024 {
		bad(FlagThreads, "%d is not from 1 to 1024", c.Threads)
	}
	if c.LeaseSeconds < 10 || c.LeaseSeconds > 3600 {
		bad(FlagLeaseSeconds, "%d is not from 10 to 3600", c.LeaseSeconds)
	}
	if c.GraceSeconds < 10 || c.GraceSeconds > 3600 {
		bad(FlagGraceSeconds, "%d is not from 10 to 3600", c.GraceSeconds)
	}
	for _, p := range []struct {
		name string
		port int
	}{{FlagNFSPort, c.NFSPort}, {FlagHealthPort, c.HealthPort}} {
		if p.port < 1 || p.port > 65535 {
			bad(p.name, "%d is not a TCP port", p.port)
		}
	}
	if c.NFSPort == c.HealthPort {
		bad(FlagHealthPort, "must differ from --%s", FlagNFSPort)
	}
	if _, err := ParseClients(c.Clients); err != nil {
		bad(FlagClients, "%v", err)
	}
	return errors.Join(errs...)
}

// ParseClients parses networks in CIDR notation ("10.0.0.0/16", "fd00::/64"; a
// single address is "10.0.0.7/32"). A network with host bits set is refused rather
// than silently widened or narrowed: "10.0.0.7/16" is most likely a typo.
func ParseClients(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%q is not a network in CIDR notation, e.g. 10.0.0.0/16 or fd00::/64", c))
		case p.Masked() != p:
			errs = append(errs, fmt.Errorf("%q has host bits set: did you mean %s?", c, p.Masked()))
		default:
			out = append(out, p)
		}
	}
	return out, errors.Join(errs...)
}

// MinorVersion returns the NFSv4 minor version of "4.0", "4.1" or "4.2".
func MinorVersion(v string) (int, error) {
	switch v {
	case "4.0":
		return 0, nil
	case "4.1":
		return 1, nil
	case "4.2":
		return 2, nil
	}
	return 0, fmt.Errorf("NFS version %q is not served: use 4.0, 4.1 or 4.2", v)
}

// FSID returns the export's filesystem ID, derived from the volume ID alone. It must
// not change when the server restarts or moves to another node: clients' file
// handles embed it, and a new one makes every open file "stale".
func FSID(volumeID string) [16]byte {
	sum := sha256.Sum256([]byte("pvnfs-fsid:" + volumeID))
	var id [16]byte
	copy(id[:], sum[:16])
	return id
}

// FSIDUUID formats FSID as the UUID form the kernel's exports(5) "fsid=" accepts.
func FSIDUUID(volumeID string) string {
	b := FSID(volumeID)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// FSIDMajorMinor splits FSID into the two 64-bit halves NFS-Ganesha's
// Filesystem_id takes ("major.minor").
func FSIDMajorMinor(volumeID string) (uint64, uint64) {
	b := FSID(volumeID)
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
