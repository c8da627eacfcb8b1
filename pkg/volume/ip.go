package volume

import "net/netip"

// parseIP returns the canonical form of an IP literal, or "" when s is not one.
// Zones ("fe80::1%eth0") are refused: a ClusterIP never has one.
func parseIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return ""
	}
	return a.String()
}
