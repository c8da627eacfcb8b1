package standin

import (
	"fmt"
	"path/filepath"
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
