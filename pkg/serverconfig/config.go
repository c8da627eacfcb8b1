package serverconfig

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Server engines, the values of --engine and of the StorageClass's serverEngine.
const (
	EngineKernel  = "kernel"
	EngineGanesha = "ganesha"
)

// Defaults, chosen for a shared web root that must survive a server failover. The
// reasons are in docs/parameters.md.
const (
	DefaultThreads      = 8
	DefaultLeaseSeconds = 30
	DefaultGraceSeconds = 30
	// DefaultHealthPort serves /healthz, /readyz and /metrics in the server pod.
	DefaultHealthPort = 9102
)

// Limits of the numeric settings. nfsd refuses a lease under 10 s; an hour is far
// beyond any useful failover setting. NFS-Ganesha 4.3 refuses to start with a
// longer lease or grace period than its own limits (ganesha-core-config(8)).
const (
	MinThreads, MaxThreads           = 1, 1024
	MinLeaseSeconds, MaxLeaseSeconds = 10, 3600
	GaneshaMaxLeaseSeconds           = 120
	GaneshaMaxGraceSeconds           = 180
)

// Config is one volume's NFS server settings: what the StorageClass chose (each
// setting that has a Param* key), what the controller adds (the volume ID, the
// export's client networks) and the fixed layout of the pod (volume root, ports).
// The controller formats it with Args; pvnfs-server reads it back with AddFlags;
// both check it with Validate. docs/architecture.md, "A volume's settings", shows
// the whole path.
type Config struct {
	// VolumeID is the pvnfs volume ID; the export's fsid is derived from it.
	VolumeID string
	// Engine is EngineKernel or EngineGanesha.
	Engine string
	// VolumeRoot is where the backend volume is mounted.
	VolumeRoot string
	// NFSVersions are the NFSv4 minor versions served, e.g. ["4.1", "4.2"].
	NFSVersions []string
	// Sync exports with "sync" (true) or "async" (false).
	Sync bool
	// RootSquash maps client root to the anonymous user.
	RootSquash bool
	// ExportOwner and ExportMode are applied to the export root when set; nil
	// leaves it as it is.
	ExportOwner *Owner
	ExportMode  *Mode
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

// Owner is a numeric uid:gid.
type Owner struct {
	UID, GID int64
}

// String formats the owner as "uid:gid".
func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }

// Mode is the permission bits of the export root, setgid and sticky included.
type Mode uint32

// String formats the mode as four octal digits, e.g. "2775".
func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// Default returns the settings of a volume whose StorageClass sets nothing, before
// the controller adds the volume's ID and client networks.
func Default() Config {
	return Config{
		Engine:       EngineKernel,
		VolumeRoot:   volume.VolumeRoot,
		NFSVersions:  []string{"4.1", "4.2"},
		Sync:         true,
		Threads:      DefaultThreads,
		LeaseSeconds: DefaultLeaseSeconds,
		GraceSeconds: DefaultGraceSeconds,
		NFSPort:      int(volume.NFSPort),
		HealthPort:   DefaultHealthPort,
	}
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

// StorageClass parameters that are server settings. The other parameters shape
// the backend PVC and the pod (package parameters).
const (
	ParamEngine       = "serverEngine"
	ParamSync         = "exportSync"
	ParamRootSquash   = "rootSquash"
	ParamExportOwner  = "exportOwner"
	ParamExportMode   = "exportMode"
	ParamThreads      = "nfsThreads"
	ParamLeaseSeconds = "leaseSeconds"
	ParamGraceSeconds = "graceSeconds"
)

// setting describes one server setting once: its flag, its StorageClass parameter,
// how its value is written and read, and what it must be. Args, AddFlags,
// SetParameter and Validate are loops over the list below, so a setting added there
// reaches the controller's arguments, the server's flags and the StorageClass
// together, checked by the same rule everywhere.
type setting struct {
	flag string
	// param is the StorageClass parameter; "" when the controller decides the
	// setting (the volume's ID and client networks, the pod's layout).
	param string
	usage string
	// optional settings are passed only when set, so that servers made before the
	// setting existed keep their pod template (and are not counted as outdated).
	optional bool
	// isBool flags may be given without a value ("--root-squash").
	isBool bool
	// list settings name the bad element in their reason: their errors do not
	// repeat the whole value.
	list bool
	// format writes the value as the flag carries it.
	format func(c *Config) string
	// parse reads a value written by format (or a StorageClass parameter) into c,
	// or says why it cannot.
	parse func(c *Config, v string) string
	// check says what is wrong with the value in c, "" when nothing.
	check func(c *Config) string
}

// settings are in the order Args passes them; that order is part of every server
// Deployment's template.
var settings = []*setting{
	{
		flag: FlagVolumeID, usage: "pvnfs volume ID; the export's stable fsid is derived from it (required)",
		format: func(c *Config) string { return c.VolumeID },
		parse:  func(c *Config, v string) string { c.VolumeID = v; return "" },
		check: func(c *Config) string {
			if _, err := volume.ParseID(c.VolumeID); err != nil {
				return err.Error()
			}
			return ""
		},
	},
	{
		flag: FlagEngine, param: ParamEngine,
		usage:  `NFS server: "kernel" (Linux nfsd; needs the nfsd module and a privileged pod) or "ganesha" (NFS-Ganesha in userspace)`,
		format: func(c *Config) string { return c.Engine },
		parse:  func(c *Config, v string) string { c.Engine = v; return "" },
		check: func(c *Config) string {
			if c.Engine != EngineKernel && c.Engine != EngineGanesha {
				return fmt.Sprintf("accepted values are %q (the Linux kernel NFS server, needs nfsd on the node and a privileged pod) and %q (NFS-Ganesha in userspace)", EngineKernel, EngineGanesha)
			}
			return ""
		},
	},
	{
		flag: FlagVolumeRoot, usage: "mount point of the backend volume; the export is its subdirectory \"export\", server state lives in \".pvnfs\"",
		format: func(c *Config) string { return c.VolumeRoot },
		parse:  func(c *Config, v string) string { c.VolumeRoot = v; return "" },
		check: func(c *Config) string {
			if !path.IsAbs(c.VolumeRoot) || path.Clean(c.VolumeRoot) == "/" {
				return "must be an absolute path below /"
			}
			return ""
		},
	},
	{
		flag: FlagNFSVersions, usage: "comma-separated NFSv4 minor versions to serve, from 4.0, 4.1, 4.2", list: true,
		format: func(c *Config) string { return strings.Join(c.NFSVersions, ",") },
		parse:  func(c *Config, v string) string { c.NFSVersions = splitList(v); return "" },
		check: func(c *Config) string {
			if len(c.NFSVersions) == 0 {
				return "at least one version is needed"
			}
			for _, v := range c.NFSVersions {
				if _, err := MinorVersion(v); err != nil {
					return err.Error()
				}
			}
			return ""
		},
	},
	boolSetting(FlagSync, ParamSync, "export with sync (writes are on stable storage before they are acknowledged); false exports async and can lose acknowledged writes on a crash",
		func(c *Config) *bool { return &c.Sync }),
	boolSetting(FlagRootSquash, ParamRootSquash, "map requests from client root to the anonymous user",
		func(c *Config) *bool { return &c.RootSquash }),
	{
		flag: FlagExportOwner, param: ParamExportOwner, optional: true,
		usage: `"uid:gid" to give the export root, e.g. "33:33"; unset leaves it unchanged`,
		format: func(c *Config) string {
			if c.ExportOwner == nil {
				return ""
			}
			return c.ExportOwner.String()
		},
		parse: func(c *Config, v string) string {
			u, g, ok := strings.Cut(v, ":")
			uid, err1 := strconv.ParseInt(u, 10, 64)
			gid, err2 := strconv.ParseInt(g, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return ownerFormat
			}
			c.ExportOwner = &Owner{UID: uid, GID: gid}
			return ""
		},
		check: func(c *Config) string {
			// 2^32-1 is "no ID" to the kernel's chown.
			if o := c.ExportOwner; o != nil && (o.UID < 0 || o.GID < 0 || o.UID > 1<<32-2 || o.GID > 1<<32-2) {
				return ownerFormat
			}
			return ""
		},
	},
	{
		flag: FlagExportMode, param: ParamExportMode, optional: true,
		usage: `octal mode to give the export root, e.g. "2775"; unset leaves it unchanged`,
		format: func(c *Config) string {
			if c.ExportMode == nil {
				return ""
			}
			return c.ExportMode.String()
		},
		parse: func(c *Config, v string) string {
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return modeFormat
			}
			mode := Mode(m)
			c.ExportMode = &mode
			return ""
		},
		check: func(c *Config) string {
			if c.ExportMode != nil && *c.ExportMode > 0o7777 {
				return modeFormat
			}
			return ""
		},
	},
	intSetting(FlagThreads, ParamThreads, "number of NFS server threads", MinThreads, MaxThreads,
		func(c *Config) *int { return &c.Threads }),
	intSetting(FlagLeaseSeconds, ParamLeaseSeconds, "NFSv4 lease time in seconds: how long a silent client keeps its state", MinLeaseSeconds, MaxLeaseSeconds,
		func(c *Config) *int { return &c.LeaseSeconds }),
	intSetting(FlagGraceSeconds, ParamGraceSeconds, "NFSv4 grace time in seconds after a start, during which clients reclaim their state", MinLeaseSeconds, MaxLeaseSeconds,
		func(c *Config) *int { return &c.GraceSeconds }),
	portSetting(FlagNFSPort, "TCP port NFS is served on", func(c *Config) *int { return &c.NFSPort }),
	portSetting(FlagHealthPort, "TCP port of /healthz, /readyz and /metrics", func(c *Config) *int { return &c.HealthPort }),
	{
		flag: FlagClients, optional: true, list: true,
		usage:  `comma-separated networks (CIDRs, e.g. "10.0.0.0/16,fd00:10::/64") the export admits; empty admits every address`,
		format: func(c *Config) string { return strings.Join(c.Clients, ",") },
		parse:  func(c *Config, v string) string { c.Clients = splitList(v); return "" },
		check: func(c *Config) string {
			if _, err := ParseClients(c.Clients); err != nil {
				return err.Error()
			}
			return ""
		},
	},
}

const (
	ownerFormat = `must be a numeric "uid:gid", for example "33:33" (www-data)`
	modeFormat  = `must be octal permission bits from "0000" to "7777", for example "0775" or "2775"`
)

func boolSetting(flagName, param, usage string, field func(c *Config) *bool) *setting {
	return &setting{
		flag: flagName, param: param, usage: usage, isBool: true,
		format: func(c *Config) string { return strconv.FormatBool(*field(c)) },
		parse: func(c *Config, v string) string {
			switch strings.ToLower(v) {
			case "true":
				*field(c) = true
			case "false":
				*field(c) = false
			default:
				return `accepted values are "true" and "false"`
			}
			return ""
		},
		check: func(*Config) string { return "" },
	}
}

func intSetting(flagName, param, usage string, min, max int, field func(c *Config) *int) *setting {
	reason := fmt.Sprintf("must be a whole number from %d to %d", min, max)
	return &setting{
		flag: flagName, param: param, usage: usage,
		format: func(c *Config) string { return strconv.Itoa(*field(c)) },
		parse: func(c *Config, v string) string {
			n, err := strconv.Atoi(v)
			if err != nil {
				return reason
			}
			*field(c) = n
			return ""
		},
		check: func(c *Config) string {
			if n := *field(c); n < min || n > max {
				return reason
			}
			return ""
		},
	}
}

func portSetting(flagName, usage string, field func(c *Config) *int) *setting {
	s := intSetting(flagName, "", usage, 1, 65535, field)
	s.check = func(c *Config) string {
		if n := *field(c); n < 1 || n > 65535 {
			return "must be a TCP port from 1 to 65535"
		}
		return ""
	}
	return s
}

// Args formats the settings as pvnfs-server arguments. Every setting is passed
// explicitly, so the server never depends on its own defaults matching the
// controller's, and a changed setting always changes the pod template.
func (c Config) Args() []string {
	var args []string
	for _, s := range settings {
		v := s.format(&c)
		if s.optional && v == "" {
			continue
		}
		args = append(args, "--"+s.flag+"="+v)
	}
	return args
}

// AddFlags registers the settings as flags of pvnfs-server, with c's values as
// defaults: the inverse of Args. Validate checks what they were set to.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	for _, s := range settings {
		fs.Var(&flagValue{s: s, c: c}, s.flag, s.usage)
	}
}

// ParseArgs reads arguments written by Args (and nothing else) into a validated
// Config, as pvnfs-server does.
func ParseArgs(args []string) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("pvnfs-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.Validate()
}

// flagValue binds one setting of a Config to a flag.
type flagValue struct {
	s *setting
	c *Config
}

func (v *flagValue) String() string {
	if v == nil || v.c == nil {
		return "" // the flag package asks a zero value for its default
	}
	return v.s.format(v.c)
}

func (v *flagValue) Set(value string) error {
	if reason := v.s.parse(v.c, value); reason != "" {
		return errors.New(reason)
	}
	return nil
}

func (v *flagValue) IsBoolFlag() bool { return v != nil && v.s != nil && v.s.isBool }

// Error is a setting whose value is refused. Its message names the flag, as
// pvnfs-server reports it; package parameters names the StorageClass parameter.
type Error struct {
	// Flag is the pvnfs-server flag, Param the StorageClass parameter ("" when the
	// controller decides the setting).
	Flag, Param string
	// Value is the value refused, "" when Reason names it.
	Value string
	// Reason says what is accepted.
	Reason string
	// ParamReason, when set, is Reason for a StorageClass's author: it names other
	// settings by their parameters rather than their flags.
	ParamReason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return "--" + e.Flag + ": " + e.Reason
	}
	return "--" + e.Flag + "=" + e.Value + ": " + e.Reason
}

// Validate checks every setting and the rules between them. Each problem is an
// *Error naming the flag.
func (c Config) Validate() error {
	return errors.Join(c.problems(func(*setting) bool { return true })...)
}

// ValidateParameters checks what a StorageClass chooses: the settings that have a
// parameter and the rules between them. The controller adds the rest (the
// volume's ID, the export's client networks) when it builds a volume's server.
func (c Config) ValidateParameters() error {
	return errors.Join(c.problems(func(s *setting) bool { return s.param != "" })...)
}

// SetParameter reads the value of a StorageClass parameter into c. It returns the
// reason the value is refused, or "" once it is set.
func (c *Config) SetParameter(key, value string) string {
	for _, s := range settings {
		if s.param != key || s.param == "" {
			continue
		}
		// Checked on a copy, so a refused value leaves the default in place and the
		// rules between settings do not report it a second time.
		try := *c
		if reason := s.parse(&try, value); reason != "" {
			return reason
		}
		if reason := s.check(&try); reason != "" {
			return reason
		}
		*c = try
		return ""
	}
	return fmt.Sprintf("%q is not a server setting", key)
}

// ParameterKeys returns the StorageClass parameters that are server settings.
func ParameterKeys() []string {
	var keys []string
	for _, s := range settings {
		if s.param != "" {
			keys = append(keys, s.param)
		}
	}
	return keys
}

// Flags returns the flag of every setting, in the order Args passes them.
func Flags() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.flag
	}
	return out
}

func (c Config) problems(include func(*setting) bool) []error {
	var errs []error
	byFlag := map[string]*setting{}
	for _, s := range settings {
		byFlag[s.flag] = s
		if !include(s) {
			continue
		}
		if reason := s.check(&c); reason != "" {
			e := &Error{Flag: s.flag, Param: s.param, Reason: reason}
			if !s.list {
				e.Value = s.format(&c)
			}
			errs = append(errs, e)
		}
	}
	if include(byFlag[FlagHealthPort]) && c.NFSPort == c.HealthPort {
		errs = append(errs, &Error{Flag: FlagHealthPort, Reason: "must differ from --" + FlagNFSPort})
	}
	if include(byFlag[FlagEngine]) {
		errs = append(errs, engineLimits(c.Engine, c.LeaseSeconds, c.GraceSeconds)...)
	}
	return errs
}

// CheckEngineLimits checks a lease and grace period against what an engine
// accepts: NFS-Ganesha refuses to start with more than its own limits.
func CheckEngineLimits(engine string, leaseSeconds, graceSeconds int) error {
	return errors.Join(engineLimits(engine, leaseSeconds, graceSeconds)...)
}

func engineLimits(engine string, lease, grace int) []error {
	if engine != EngineGanesha {
		return nil
	}
	var errs []error
	for _, l := range []struct {
		flag, param string
		v, max      int
	}{
		{FlagLeaseSeconds, ParamLeaseSeconds, lease, GaneshaMaxLeaseSeconds},
		{FlagGraceSeconds, ParamGraceSeconds, grace, GaneshaMaxGraceSeconds},
	} {
		if l.v > l.max {
			errs = append(errs, &Error{
				Flag: l.flag, Param: l.param, Value: strconv.Itoa(l.v),
				Reason:      fmt.Sprintf("NFS-Ganesha takes at most %d", l.max),
				ParamReason: fmt.Sprintf("%d is more than NFS-Ganesha accepts (%d) with %s %q", l.v, l.max, ParamEngine, EngineGanesha),
			})
		}
	}
	return errs
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
