package engine

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/pvnfs/pvnfs/pkg/serverconfig"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// Settings are what every engine serves: the volume's validated server settings
// (serverconfig.Config, as the flags gave them) and what the server derives from
// them, so that switching engines never changes what clients see: the exported
// directory, its stable filesystem ID, sync, squash and the NFS versions.
type Settings struct {
	serverconfig.Config
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
	// MinorVersions are the NFSv4 minor versions served, ascending.
	MinorVersions []int
	// BindAddress is the address NFS listens on; "" means every address.
	BindAddress string
	// ClientNetworks are Clients parsed: the networks the export admits; none
	// admits every address.
	ClientNetworks []netip.Prefix
}

// NewSettings checks the configuration (serverconfig.Config.Validate: the server's
// one check of its flags) and derives the export settings from it. bindAddress is
// the server-only --bind-address ("" for every address).
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
		m, _ := serverconfig.MinorVersion(v) // Validate refused any other
		if !seen[m] {
			seen[m] = true
			minors = append(minors, m)
		}
	}
	sort.Ints(minors)
	clients, _ := serverconfig.ParseClients(c.Clients) // Validate refused any other
	major, minor := serverconfig.FSIDMajorMinor(c.VolumeID)
	return Settings{
		Config:         c,
		ExportDir:      c.ExportDir(),
		StateDir:       c.StateDir(),
		FSIDUUID:       serverconfig.FSIDUUID(c.VolumeID),
		FSIDMajor:      major,
		FSIDMinor:      minor,
		ServerName:     volume.ObjectName(c.VolumeID),
		MinorVersions:  minors,
		BindAddress:    bindAddress,
		ClientNetworks: clients,
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
