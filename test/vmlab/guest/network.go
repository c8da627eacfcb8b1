package guest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// The cluster network: one bridge in the guest's root network namespace, and
// every node and pod sandbox a network namespace with a veth on it, all in one
// /16. Services get addresses from ServiceCIDR, reachable only through the DNAT
// rules RouteService installs in a node, as kube-proxy does.
const (
	bridge     = "lab0"
	gatewayIP  = "10.244.0.1"
	podPrefix  = "/16"
	pvnfsNFSPt = 2049
)

// ClusterIP is the address of the volume's Service in the lab.
const ClusterIP = "10.96.0.10"

var vethSeq atomic.Int32

func setupNetwork(ctx context.Context) error {
	for _, args := range [][]string{
		{"link", "add", bridge, "type", "bridge"},
		{"addr", "add", gatewayIP + podPrefix, "dev", bridge},
		{"link", "set", bridge, "up"},
	} {
		if _, err := Run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// NetNS is a named network namespace on the cluster network: a node's host
// network or a pod's sandbox (what the pause container holds).
type NetNS struct {
	Name string
	IP   string
}

// NewNetNS creates the namespace with a veth on the bridge at ip, loopback up and
// a default route through the bridge.
func NewNetNS(ctx context.Context, name, ip string) (*NetNS, error) {
	n := &NetNS{Name: name, IP: ip}
	host := fmt.Sprintf("veth%d", vethSeq.Add(1))
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"link", "set", host, "master", bridge, "up"},
		{"-n", name, "addr", "add", ip + podPrefix, "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "route", "add", "default", "via", gatewayIP},
	}
	for _, args := range steps {
		if _, err := Run(ctx, "ip", args...); err != nil {
			_ = n.Remove(ctx)
			return nil, err
		}
	}
	return n, nil
}

// Path is the namespace's bind mount, for nsenter --net.
func (n *NetNS) Path() string { return filepath.Join("/run/netns", n.Name) }

// Exec runs a program in the namespace.
func (n *NetNS) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return Run(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Remove deletes the namespace; its veth goes with it. The kernel frees the
// namespace once nothing else holds it.
func (n *NetNS) Remove(ctx context.Context) error {
	if _, err := os.Stat(n.Path()); os.IsNotExist(err) {
		return nil
	}
	_, err := Run(ctx, "ip", "netns", "del", n.Name)
	return err
}

// nft loads an nftables script in the namespace.
func (n *NetNS) nft(ctx context.Context, script string) error {
	f, err := os.CreateTemp(WorkDir, "nft-*.conf")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = n.Exec(ctx, "nft", "-f", f.Name())
	return err
}

// RouteService points the Service address vip at backend, the way kube-proxy
// rewrites a node's rules when the Service's endpoint changes: one atomic rule
// swap, then the connection-tracking entries of the old endpoint are deleted, so
// that no packet follows a stale translation.
func (n *NetNS) RouteService(ctx context.Context, vip, backend string) error {
	script := fmt.Sprintf(`table ip lab-svc {}
flush table ip lab-svc
table ip lab-svc {
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr %[1]s tcp dport %[3]d dnat to %[2]s:%[3]d
	}
}
`, vip, backend, pvnfsNFSPt)
	if err := n.nft(ctx, script); err != nil {
		return err
	}
	// conntrack exits 1 when there was nothing to delete.
	if out, err := n.Exec(ctx, "conntrack", "-D", "-d", vip); err != nil && !strings.Contains(out, "0 flow entries") {
		return err
	}
	return nil
}

// Block drops every NFS packet that reaches the namespace: a server that has
// become unreachable without closing its connections.
func (n *NetNS) Block(ctx context.Context) error {
	return n.nft(ctx, fmt.Sprintf(`table inet lab-outage {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport %d drop
	}
}
`, pvnfsNFSPt))
}

// Unblock ends Block.
func (n *NetNS) Unblock(ctx context.Context) error {
	_, err := n.Exec(ctx, "nft", "delete", "table", "inet", "lab-outage")
	return err
}
