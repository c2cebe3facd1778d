// Package clientaddr names the client a remote address counts as for
// per-address limits, so that the gateway's connection caps and the login
// throttle of gateway/accounts count the same clients.
package clientaddr

import (
	"net"
	"net/netip"
)

// Key is the client a remote address (host:port, or a bare host) counts as
// for per-address limits: the IPv4 address, or the /64 prefix of an IPv6
// address (one subscriber's usual allocation, so an attacker cannot take a
// fresh address for each attempt). An address that does not parse counts
// as itself.
func Key(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
