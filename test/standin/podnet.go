package standin

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
)

// The pod network stand-in, FOR TESTS ONLY: simulated server pods (kwok) have IPs
// that nothing routes to, so a test build of the controller (flag
// --server-network-stand-in-dir) reaches a server pod's health port <ip>:<port>
// through the unix socket HealthSocket(dir, ip, port) instead, where the test's
// simulated server serves pvnfs-server's real HTTP handlers (the flush endpoint).

// HealthSocket is the unix socket standing for a server pod's health port.
func HealthSocket(dir, podIP string, port int) string {
	return filepath.Join(dir, fmt.Sprintf("%s_%d.sock", podIP, port))
}

// HealthDialer dials <ip>:<port> through HealthSocket(dir, ip, port); its signature
// is net.Dialer.DialContext's.
func HealthDialer(dir string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, _, address string) (net.Conn, error) {
		host, p, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		port, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("port of %q: %w", address, err)
		}
		return (&net.Dialer{}).DialContext(ctx, "unix", HealthSocket(dir, host, port))
	}
}
