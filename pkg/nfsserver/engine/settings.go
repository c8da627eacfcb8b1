package engine

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Settings are the export settings every engine derives from the same flags, so
// that switching engines never changes what clients see: the exported directory,
// its stable filesystem ID, sync, squash and the NFS versions.
type Settings struct {
	// VolumeID is the pvnfs volume ID.
	VolumeID string
	// ExportDir is the exported directory. It is also the path clients mount (the
	// NFSv4 pseudo path), e.g. /data/export, whichever engine serves it.
	ExportDir string
	// StateDir holds the server's state on the backend volume.
	StateDir string
	// FSIDUUID is the export's filesystem ID as the kernel's exports(5) takes it.
	FSIDUUID string
	// FSIDMajor and FSIDMinor are the same ID as NFS-Ganesha's Filesystem_id takes it.
	FSIDMajor, FSIDMinor uint64
	// ServerName identifies the server to NFSv4.1 clients (server owner and scope).
	// It derives from the volume ID only, because a client reclaims its state after
	// a failover only from a server with the same scope.
	ServerName string
	// Sync exports with sync; RootSquash maps client root to the anonymous user.
	Sync, RootSquash bool
	// MinorVersions are the NFSv4 minor versions served, ascending.
	MinorVersions []int
	// Threads, LeaseSeconds, GraceSeconds and NFSPort come from the flags as they are.
	Threads, LeaseSeconds, GraceSeconds, NFSPort int
	// BindAddress is the address NFS listens on; "" means every address.
	BindAddress string
	// Clients are the networks the export admits; none admits every address.
	Clients []netip.Prefix
}

// NewSettings derives the export settings from a validated configuration.
// bindAddress is the server-only --bind-address ("" for every address).
func NewSettings(c serverconfig.Config, bindAddress string) (Settings, error) {
	if err := c.Validate(); err != nil {
		return Settings{}, err
	}
	if bindAddress != "" {
		if _, err := netip.ParseAddr(bindAddress); err != nil {
			return Settings{}, fmt.Errorf("--bind-address: %q is not an IP address", bindAddress)
		}
	}
	seen := map[int]bool{}
	var minors []int
	for _, v := range c.NFSVersions {
		m, err := serverconfig.MinorVersion(v)
		if err != nil {
			return Settings{}, err
		}
		if !seen[m] {
			seen[m] = true
			minors = append(minors, m)
		}
	}
	sort.Ints(minors)
	clients, err := serverconfig.ParseClients(c.Clients)
	if err != nil {
		return Settings{}, err // Validate refused it already
	}
	major, minor := serverconfig.FSIDMajorMinor(c.VolumeID)
	return Settings{
		VolumeID:      c.VolumeID,
		ExportDir:     c.ExportDir(),
		StateDir:      c.StateDir(),
		FSIDUUID:      serverconfig.FSIDUUID(c.VolumeID),
		FSIDMajor:     major,
		FSIDMinor:     minor,
		ServerName:    volume.ObjectName(c.VolumeID),
		Sync:          c.Sync,
		RootSquash:    c.RootSquash,
		MinorVersions: minors,
		Threads:       c.Threads,
		LeaseSeconds:  c.LeaseSeconds,
		GraceSeconds:  c.GraceSeconds,
		NFSPort:       c.NFSPort,
		BindAddress:   bindAddress,
		Clients:       clients,
	}, nil
}

// Serves reports whether NFSv4 minor version m is served.
func (s Settings) Serves(m int) bool {
	for _, v := range s.MinorVersions {
		if v == m {
			return true
		}
	}
	return false
}
