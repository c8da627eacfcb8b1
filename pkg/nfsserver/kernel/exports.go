package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
)

// ExportOptions returns the exports(5) options of the volume's export. Each is there
// for a reason that docs/server.md repeats for operators:
//   - rw: the volume is ReadWriteMany.
//   - sync or async: sync replies only once changes are on stable storage; async is
//     an opt-in that loses acknowledged writes when the node crashes.
//   - no_subtree_check: the export is a whole directory tree; subtree checking
//     breaks file handles of files renamed across directories and costs a lookup
//     per request.
//   - insecure: clients mount with noresvport (a new source port on reconnect
//     after a failover), so requests come from ports above 1023.
//   - root_squash or no_root_squash: the StorageClass's choice.
//   - fsid=<uuid>: derived from the volume ID, so file handles stay valid when the
//     pod moves to another node, whose device numbers differ.
//   - sec=sys: AUTH_SYS, as every in-cluster NFS client uses.
func ExportOptions(s engine.Settings) []string {
	opts := []string{"rw"}
	if s.Sync {
		opts = append(opts, "sync")
	} else {
		opts = append(opts, "async")
	}
	opts = append(opts, "no_subtree_check", "insecure")
	if s.RootSquash {
		opts = append(opts, "root_squash")
	} else {
		opts = append(opts, "no_root_squash")
	}
	return append(opts, "fsid="+s.FSIDUUID, "sec=sys")
}

// ExportsFile returns the exports(5) file that exports the volume to its clients:
// the networks of --clients, each with the same options, or every address ("*")
// when none is given. rpc.mountd builds the NFSv4 pseudo-root from the same client
// list, so an address outside it cannot even look up the export's path.
func ExportsFile(s engine.Settings) []byte {
	opts := "(" + strings.Join(ExportOptions(s), ",") + ")"
	clients := []string{"*" + opts}
	if len(s.ClientNetworks) > 0 {
		clients = clients[:0]
		for _, c := range s.ClientNetworks {
			clients = append(clients, c.String()+opts)
		}
	}
	return []byte(fmt.Sprintf("# Written by pvnfs-server for volume %s; rewritten at every start.\n%s %s\n",
		s.VolumeID, escapePath(s.ExportDir), strings.Join(clients, " ")))
}

// escapePath octal-escapes the characters exports(5) would take as separators.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c == '\\' || c == '#' || c == '"' || c >= 0x7f {
			fmt.Fprintf(&b, "\\%03o", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// etabHasExport reports whether exportfs's etab lists the export with its fsid,
// i.e. rpc.mountd will hand it to the kernel.
func etabHasExport(etab []byte, s engine.Settings) error {
	sc := bufio.NewScanner(bytes.NewReader(etab))
	path := escapePath(s.ExportDir)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != path {
			continue
		}
		if !strings.Contains(fields[1], "fsid="+s.FSIDUUID) {
			return fmt.Errorf("etab exports %s without fsid=%s: %s", s.ExportDir, s.FSIDUUID, sc.Text())
		}
		return nil
	}
	return fmt.Errorf("etab does not list %s", s.ExportDir)
}

// VersionsRequest is what the nfsd filesystem's versions file is told: NFSv2 and
// NFSv3 off, NFSv4 on with exactly the configured minor versions.
func VersionsRequest(s engine.Settings) string {
	parts := []string{"-2", "-3", "+4"}
	for m := 0; m <= 2; m++ {
		sign := "-"
		if s.Serves(m) {
			sign = "+"
		}
		parts = append(parts, fmt.Sprintf("%s4.%d", sign, m))
	}
	return strings.Join(parts, " ") + "\n"
}

// checkVersions verifies the versions file's answer. The kernel never reports
// "+4.0" (it is implied by "+4") and may omit versions it was built without, so
// only what must be on or off is checked.
func checkVersions(got string, s engine.Settings) error {
	tokens := map[string]bool{}
	for _, t := range strings.Fields(got) {
		tokens[t] = true
	}
	var errs []string
	if tokens["+2"] || tokens["+3"] {
		errs = append(errs, "NFSv2/NFSv3 are still on")
	}
	if !tokens["+4"] {
		errs = append(errs, "NFSv4 is off")
	}
	for m := 0; m <= 2; m++ {
		off := tokens[fmt.Sprintf("-4.%d", m)]
		if s.Serves(m) && off {
			errs = append(errs, fmt.Sprintf("NFS 4.%d is off", m))
		}
		if !s.Serves(m) && !off {
			errs = append(errs, fmt.Sprintf("NFS 4.%d is not off", m))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("nfsd reports versions %q: %s", strings.TrimSpace(got), strings.Join(errs, "; "))
	}
	return nil
}
