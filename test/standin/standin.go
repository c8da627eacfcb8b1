package standin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/pvnfs/pvnfs/pkg/mounter"
)

// Marker files of the fault hooks, named <server><suffix> in the stand-in directory.
const (
	// UnreachableSuffix marks a server that does not answer.
	UnreachableSuffix = ".unreachable"
	// VersionsSuffix holds the NFS versions a server speaks.
	VersionsSuffix = ".versions"
)

// defaultVersions are the versions a server without a .versions file speaks.
func defaultVersions() []string { return []string{"4.0", "4.1", "4.2"} }

// StandIn is a mounter.Interface whose NFS mounts are bind mounts of local
// directories. Everything else goes to the real mounter it wraps.
type StandIn struct {
	dir    string
	base   mounter.Interface
	runner mounter.Runner
	poll   time.Duration
	// blocked counts the Statfs calls stuck on an unreachable server right now.
	blocked atomic.Int64
}

var _ mounter.Interface = &StandIn{}

// New returns a StandIn keeping its exports and markers in dir (created if
// missing). base does the real bind mounts, unmounts, table reads and statfs;
// runner runs the helpers that stand for a hung mount.nfs or umount.
func New(dir string, base mounter.Interface, runner mounter.Runner) (*StandIn, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("NFS stand-in directory %q must be an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the NFS stand-in directory: %w", err)
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving the NFS stand-in directory: %w", err)
	}
	return &StandIn{dir: resolved, base: base, runner: runner, poll: 100 * time.Millisecond}, nil
}

// Dir is the stand-in directory, symlinks resolved.
func (s *StandIn) Dir() string { return s.dir }

// BlockedStatfs is how many Statfs calls are blocked on an unreachable server
// right now; tests use it to check that a hung server does not pile up goroutines.
func (s *StandIn) BlockedStatfs() int64 { return s.blocked.Load() }

// Mount implements mounter.Interface. An "nfs" or "nfs4" mount checks its options
// as mount.nfs would, waits while the server is marked unreachable (in a helper
// process the deadline can kill), refuses versions the server does not speak, and
// then bind-mounts the export directory. Other types go to the real mounter.
func (s *StandIn) Mount(ctx context.Context, source, target, fstype string, options []string) error {
	if fstype != "nfs" && fstype != "nfs4" {
		return s.base.Mount(ctx, source, target, fstype, options)
	}
	command := fmt.Sprintf("mount -t %s -o %s %s %s (NFS stand-in)", fstype, strings.Join(options, ","), source, target)
	server, share, err := ParseSource(source)
	if err != nil {
		return mountNFSError(command, "mount.nfs: remote share not in 'host:dir' format")
	}
	opts, err := parseOptions(options)
	if err != nil {
		return mountNFSError(command, "mount.nfs: an incorrect mount option was specified: "+err.Error())
	}
	if opts.major != 4 {
		return mountNFSError(command, "mount.nfs: requested NFS version or transport protocol is not supported")
	}
	if err := s.waitReachable(ctx, server, "mount.nfs"); err != nil {
		return err
	}
	version, ok := s.negotiate(server, opts.minor)
	if !ok {
		return mountNFSError(command, "mount.nfs: Protocol not supported")
	}
	export := ExportDir(s.dir, server, share)
	if err := os.MkdirAll(export, 0o755); err != nil {
		return fmt.Errorf("creating the stand-in export %s: %w", export, err)
	}
	klog.V(4).InfoS("NFS stand-in: bind-mounting the export instead of NFS", "source", source, "export", export, "target", target, "version", version)
	return s.base.Bind(ctx, export, target, opts.readOnly)
}

// Bind implements mounter.Interface with the real mounter.
func (s *StandIn) Bind(ctx context.Context, source, target string, readOnly bool) error {
	return s.base.Bind(ctx, source, target, readOnly)
}

// Unmount implements mounter.Interface. A plain umount of a mount of an
// unreachable server blocks like umount(8) does while it waits for the server;
// force and lazy unmounts, and everything else, go to the real mounter.
func (s *StandIn) Unmount(ctx context.Context, target string, mode mounter.UnmountMode) error {
	if mode == mounter.UnmountNormal {
		if table, err := s.List(); err == nil {
			if m, ok := mounter.FindMount(table, target); ok && isNFS(m) {
				if server, _, err := ParseSource(m.Source); err == nil {
					if err := s.waitReachable(ctx, server, "umount"); err != nil {
						return err
					}
				}
			}
		}
	}
	return s.base.Unmount(ctx, target, mode)
}

// List implements mounter.Interface: the real table with the stand-in's bind
// mounts shown as NFS mounts (see Translate).
func (s *StandIn) List() ([]mounter.MountPoint, error) {
	table, err := s.base.List()
	if err != nil {
		return nil, err
	}
	return Translate(s.dir, table), nil
}

// Statfs implements mounter.Interface. On a mount of an unreachable server it
// blocks until the server is reachable again, as on a hard NFS mount; on a mount
// whose export was replaced (MakeStale) it fails with ESTALE.
func (s *StandIn) Statfs(path string) (unix.Statfs_t, error) {
	table, err := s.List()
	if err != nil {
		return unix.Statfs_t{}, err
	}
	m, ok := mounter.ContainingMount(table, path)
	if ok && isNFS(m) {
		if server, _, err := ParseSource(m.Source); err == nil {
			s.blockWhileUnreachable(server)
		}
		if strings.HasSuffix(m.Root, "//deleted") {
			return unix.Statfs_t{}, unix.ESTALE
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Nlink == 0 {
			return unix.Statfs_t{}, unix.ESTALE
		}
	}
	return s.base.Statfs(path)
}

func (s *StandIn) blockWhileUnreachable(server string) {
	marker := filepath.Join(s.dir, server+UnreachableSuffix)
	if !exists(marker) {
		return
	}
	s.blocked.Add(1)
	defer s.blocked.Add(-1)
	for exists(marker) {
		time.Sleep(s.poll)
	}
}

// waitReachable runs, while the server is marked unreachable, a helper that
// waits for the marker to go away: a real process group (sh and its sleep
// children) that the runner kills at ctx's deadline, as it would kill a hung
// mount.nfs.
func (s *StandIn) waitReachable(ctx context.Context, server, what string) error {
	marker := filepath.Join(s.dir, server+UnreachableSuffix)
	if !exists(marker) {
		return nil
	}
	klog.V(2).InfoS("NFS stand-in: server marked unreachable, helper waits", "server", server, "helper", what, "marker", marker)
	_, err := s.runner.Run(ctx, "sh", "-c", `while [ -e "$1" ]; do sleep 0.1; done`,
		"pvnfs-stand-in-"+strings.ReplaceAll(what, " ", "-"), marker)
	return err
}

// negotiate returns the version a mount asking for minor version minor (-1: any)
// gets from server.
func (s *StandIn) negotiate(server string, minor int) (string, bool) {
	versions := defaultVersions()
	if b, err := os.ReadFile(filepath.Join(s.dir, server+VersionsSuffix)); err == nil {
		versions = strings.Fields(string(b))
	}
	if minor >= 0 {
		v := fmt.Sprintf("4.%d", minor)
		return v, slices.Contains(versions, v)
	}
	for _, v := range []string{"4.2", "4.1", "4.0"} {
		if slices.Contains(versions, v) {
			return v, true
		}
	}
	return "", false
}

// Translate rewrites the stand-in's bind mounts in a mount table (of any mount
// namespace that sees dir) as NFS mounts: a mount showing the directory
// <dir>/<server><share> of dir's filesystem (a bind of an export, or a bind of
// such a bind) gets Source "<server>:<share>" and FSType "nfs4". dir must be
// resolved (no symlinks).
func Translate(dir string, table []mounter.MountPoint) []mounter.MountPoint {
	holder, ok := mounter.ContainingMount(table, dir)
	if !ok {
		return table
	}
	fsDir := path.Join(holder.Root, strings.TrimPrefix(dir, holder.Path))
	out := slices.Clone(table)
	for i := range out {
		if out[i].Device != holder.Device {
			continue
		}
		rel, ok := strings.CutPrefix(strings.TrimSuffix(out[i].Root, "//deleted"), fsDir+"/")
		if !ok {
			continue
		}
		server, share, ok := strings.Cut(rel, "/")
		if !ok || server == "" || share == "" {
			continue
		}
		out[i].Source = Source(server, "/"+share)
		out[i].FSType = "nfs4"
	}
	return out
}

// ExportDir is the directory that stands for server's export share.
func ExportDir(dir, server, share string) string {
	return filepath.Join(dir, server, share)
}

// Source formats an NFS mount source, with an IPv6 server in brackets.
func Source(server, share string) string {
	if strings.Contains(server, ":") {
		return "[" + server + "]:" + share
	}
	return server + ":" + share
}

// ParseSource splits an NFS mount source "server:/share" or "[v6]:/share".
func ParseSource(source string) (server, share string, err error) {
	if rest, ok := strings.CutPrefix(source, "["); ok {
		server, share, ok = strings.Cut(rest, "]:")
		if !ok {
			return "", "", fmt.Errorf("NFS source %q: no \"]:\" after the IPv6 address", source)
		}
	} else {
		i := strings.Index(source, ":")
		if i < 0 {
			return "", "", fmt.Errorf("NFS source %q is not server:/share", source)
		}
		server, share = source[:i], source[i+1:]
	}
	if server == "" || !strings.HasPrefix(share, "/") || strings.Contains("/"+share+"/", "/../") {
		return "", "", fmt.Errorf("NFS source %q is not server:/share", source)
	}
	return server, path.Clean(share), nil
}

// SetUnreachable marks server as not answering, or answering again.
func SetUnreachable(dir, server string, unreachable bool) error {
	marker := filepath.Join(dir, server+UnreachableSuffix)
	if unreachable {
		return os.WriteFile(marker, []byte("the NFS stand-in treats this server as unreachable while this file exists\n"), 0o644)
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// SetVersions sets the NFS versions server speaks ("4.1", "4.2"); none restores
// the default (4.0, 4.1, 4.2).
func SetVersions(dir, server string, versions ...string) error {
	file := filepath.Join(dir, server+VersionsSuffix)
	if len(versions) == 0 {
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return os.WriteFile(file, []byte(strings.Join(versions, " ")+"\n"), 0o644)
}

// MakeStale replaces the export directory of server's share with a new directory
// holding the same files, as a server whose export comes back with a new file
// system ID. The old directory is deleted, so every existing mount of it is stale
// (its statfs fails with ESTALE, mountinfo shows its root as "//deleted"), while a
// new mount sees the files.
func MakeStale(dir, server, share string) error {
	export := ExportDir(dir, server, share)
	fi, err := os.Stat(export)
	if err != nil {
		return fmt.Errorf("making %s stale: %w", export, err)
	}
	fresh := export + ".pvnfs-stand-in-new"
	if err := os.Mkdir(fresh, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("making %s stale: %w", export, err)
	}
	entries, err := os.ReadDir(export)
	if err != nil {
		return fmt.Errorf("making %s stale: %w", export, err)
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(export, e.Name()), filepath.Join(fresh, e.Name())); err != nil {
			return fmt.Errorf("making %s stale: %w", export, err)
		}
	}
	if err := os.Remove(export); err != nil {
		return fmt.Errorf("making %s stale: %w", export, err)
	}
	return os.Rename(fresh, export)
}

// nfsOptions is what the stand-in takes from NFS mount options.
type nfsOptions struct {
	major, minor int // minor -1: negotiate
	readOnly     bool
}

// knownOption reports whether key is an NFS mount option the Linux client accepts
// (nfs(5)); the stand-in refuses others, as the kernel does with EINVAL.
func knownOption(key string) bool {
	switch key {
	case "vers", "nfsvers", "minorversion", "timeo", "retrans", "rsize", "wsize", "acregmin",
		"acregmax", "acdirmin", "acdirmax", "actimeo", "proto", "port", "nconnect", "lookupcache", "sec",
		"local_lock", "clientaddr", "fsc", "retry", "max_connect", "xprtsec", "write", "namlen", "hard",
		"soft", "softerr", "softreval", "nosoftreval", "resvport", "noresvport", "ro", "rw", "sync",
		"async", "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
		"suid", "nosuid", "dev", "nodev", "exec", "noexec", "intr", "nointr", "bg", "fg", "_netdev",
		"cto", "nocto", "lock", "nolock", "ac", "noac", "rdirplus", "nordirplus", "sharecache",
		"nosharecache", "trunkdiscovery", "notrunkdiscovery", "nofsc", "acl", "noacl", "defaults",
		"nofail", "migration", "nomigration":
		return true
	}
	return false
}

func parseOptions(options []string) (nfsOptions, error) {
	o := nfsOptions{major: 4, minor: -1}
	for _, opt := range options {
		for _, kv := range strings.Split(opt, ",") {
			key, value, hasValue := strings.Cut(strings.TrimSpace(kv), "=")
			if key == "" {
				continue
			}
			if !knownOption(key) {
				return o, fmt.Errorf("unknown option %q", kv)
			}
			switch key {
			case "ro":
				o.readOnly = true
			case "rw":
				o.readOnly = false
			case "vers", "nfsvers":
				major, minor, hasMinor := strings.Cut(value, ".")
				n, err := strconv.Atoi(major)
				if !hasValue || err != nil {
					return o, fmt.Errorf("bad %s=%q", key, value)
				}
				o.major = n
				if hasMinor {
					m, err := strconv.Atoi(minor)
					if err != nil {
						return o, fmt.Errorf("bad %s=%q", key, value)
					}
					o.minor = m
				}
			case "minorversion":
				m, err := strconv.Atoi(value)
				if err != nil {
					return o, fmt.Errorf("bad minorversion=%q", value)
				}
				o.minor = m
			}
		}
	}
	return o, nil
}

// mountNFSError is the error of a mount.nfs that exited with status 32 (mount
// failure) and printed msg.
func mountNFSError(command, msg string) error {
	return &mounter.HelperError{Command: command, Output: msg, ExitCode: 32, Err: errors.New("exit status 32")}
}

func isNFS(m mounter.MountPoint) bool { return m.FSType == "nfs" || m.FSType == "nfs4" }

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
