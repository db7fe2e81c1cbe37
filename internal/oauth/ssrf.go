package oauth

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// errBlockedAddress reports a metadata document fetch that would connect to
// an address outside the public internet.
var errBlockedAddress = errors.New("refusing to fetch client metadata from a non-public address")

// blockedPrefixes are every special-purpose range of the IANA IPv4 and IPv6
// Special-Purpose Address Registries (RFC 6890 and successors), plus
// multicast and the deprecated site-local and IPv4-compatible ranges: none
// of them holds a client's public metadata document, several reach the
// gateway's own network (cloud metadata at 169.254.169.254 and
// 100.100.100.200, carrier-grade NAT, benchmarking networks, NAT64 to a
// private address).
var blockedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		// IPv4 (iana-ipv4-special-registry)
		"0.0.0.0/8",          // "this network"
		"10.0.0.0/8",         // private use
		"100.64.0.0/10",      // shared address space (CGN; Alibaba cloud metadata)
		"127.0.0.0/8",        // loopback
		"169.254.0.0/16",     // link local (cloud metadata)
		"172.16.0.0/12",      // private use
		"192.0.0.0/24",       // IETF protocol assignments
		"192.0.2.0/24",       // documentation (TEST-NET-1)
		"192.31.196.0/24",    // AS112-v4
		"192.52.193.0/24",    // AMT
		"192.88.99.0/24",     // deprecated 6to4 relay anycast
		"192.168.0.0/16",     // private use
		"192.175.48.0/24",    // direct delegation AS112
		"198.18.0.0/15",      // benchmarking
		"198.51.100.0/24",    // documentation (TEST-NET-2)
		"203.0.113.0/24",     // documentation (TEST-NET-3)
		"224.0.0.0/4",        // multicast
		"240.0.0.0/4",        // reserved
		"255.255.255.255/32", // limited broadcast
		// IPv6 (iana-ipv6-special-registry)
		"::/128",            // unspecified
		"::1/128",           // loopback
		"::/96",             // deprecated IPv4-compatible
		"::ffff:0:0/96",     // IPv4-mapped
		"64:ff9b:1::/48",    // local-use IPv4/IPv6 translation
		"100::/64",          // discard-only
		"100:0:0:1::/64",    // dummy prefix
		"2001::/23",         // IETF protocol assignments (Teredo, benchmarking, ORCHID…)
		"2001:db8::/32",     // documentation
		"2002::/16",         // 6to4 (embeds any IPv4 address)
		"2620:4f:8000::/48", // direct delegation AS112
		"3fff::/20",         // documentation
		"5f00::/16",         // segment routing SIDs
		"fc00::/7",          // unique local
		"fe80::/10",         // link local
		"fec0::/10",         // deprecated site local
		"ff00::/8",          // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// nat64 is the well-known NAT64 prefix (RFC 6052): it is blocked when the
// IPv4 address it embeds is, and allowed otherwise (IPv6-only networks
// with DNS64 reach every IPv4 host through it).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// blockedAddr reports why a is not a public address a metadata document may
// be fetched from ("" when it is).
func blockedAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "not an IP address"
	}
	a = a.WithZone("")
	if nat64.Contains(a) {
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		if why := blockedAddr(v4); why != "" {
			return "NAT64 of " + v4.String() + " (" + why + ")"
		}
		return ""
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return "in special-purpose range " + p.String()
		}
	}
	return ""
}

// dialControl is the metadata client's net.Dialer.Control: it checks the
// address actually dialled (after DNS, on every connection, so a name that
// resolves or rebinds to a blocked address is refused too).
func dialControl(allowLoopback bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return fmt.Errorf("%w: %q", errBlockedAddress, address)
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("%w: %q is not an IP address", errBlockedAddress, host)
		}
		if allowLoopback && a.Unmap().IsLoopback() {
			return nil
		}
		if why := blockedAddr(a); why != "" {
			return fmt.Errorf("%w: %s is %s", errBlockedAddress, a, why)
		}
		return nil
	}
}
