package oauth

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
)

// TestBlockedAddresses: each special-purpose range is refused at dial time,
// including those the first blocklist missed (issue 13: 100.64.0.0/10 with
// 100.100.100.200, 192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4, and NAT64
// wrapping 169.254.169.254).
func TestBlockedAddresses(t *testing.T) {
	control := dialControl(false)
	for _, tc := range []struct {
		addr    string
		blocked bool
	}{
		{"0.1.2.3", true}, {"10.1.2.3", true}, {"100.64.0.1", true}, {"100.100.100.200", true},
		{"100.127.255.254", true}, {"127.0.0.1", true}, {"169.254.169.254", true}, {"172.16.0.1", true},
		{"172.31.255.255", true}, {"192.0.0.8", true}, {"192.0.0.170", true}, {"192.0.2.10", true},
		{"192.31.196.1", true}, {"192.52.193.1", true}, {"192.88.99.1", true}, {"192.168.1.1", true},
		{"192.175.48.1", true}, {"198.18.0.1", true}, {"198.19.255.255", true}, {"198.51.100.7", true},
		{"203.0.113.9", true}, {"224.0.0.251", true}, {"239.255.255.250", true}, {"240.0.0.1", true},
		{"255.255.255.255", true},
		{"::", true}, {"::1", true}, {"::10.0.0.1", true}, {"::ffff:8.8.8.8", true}, {"::ffff:169.254.169.254", true},
		{"64:ff9b::a9fe:a9fe", true}, // NAT64 of 169.254.169.254
		{"64:ff9b::7f00:1", true},    // NAT64 of 127.0.0.1
		{"64:ff9b::6464:64c8", true}, // NAT64 of 100.100.100.200
		{"64:ff9b:1::a00:1", true}, {"100::1", true}, {"100:0:0:1::1", true}, {"2001::1", true},
		{"2001:2::1", true}, {"2001:db8::1", true}, {"2002:a9fe:a9fe::1", true}, {"2620:4f:8000::1", true},
		{"3fff::1", true}, {"5f00::1", true}, {"fc00::1", true}, {"fd12:3456::1", true}, {"fe80::1", true},
		{"fec0::1", true}, {"ff02::1", true},
		{"8.8.8.8", false}, {"1.1.1.1", false}, {"100.63.255.255", false}, {"100.128.0.1", false},
		{"172.32.0.1", false}, {"198.20.0.1", false}, {"2606:4700::1111", false},
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8 (an IPv6-only network's path to IPv4)
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := control("tcp", net.JoinHostPort(tc.addr, "443"), nil)
			if blocked := errors.Is(err, errBlockedAddress); blocked != tc.blocked {
				t.Fatalf("blocked = %v (%v), want %v", blocked, err, tc.blocked)
			}
		})
	}
	allowLoopback := dialControl(true)
	for _, a := range []string{"127.0.0.1", "::1"} {
		if err := allowLoopback("tcp", net.JoinHostPort(a, "80"), nil); err != nil {
			t.Errorf("%s with the loopback allowance: %v", a, err)
		}
	}
	if err := allowLoopback("tcp", "10.0.0.1:80", nil); !errors.Is(err, errBlockedAddress) {
		t.Errorf("10.0.0.1 with the loopback allowance: %v", err)
	}
}

// FuzzBlockedAddr: blockedAddr never panics, and an address it lets
// through is in no blocked range, whatever its form.
func FuzzBlockedAddr(f *testing.F) {
	for _, s := range []string{"64:ff9b::a9fe:a9fe", "::ffff:127.0.0.1", "fe80::1%eth0", "100.100.100.200", "8.8.8.8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		if blockedAddr(a) == "" {
			for _, p := range blockedPrefixes {
				if p.Contains(a.WithZone("")) {
					t.Fatalf("%s allowed but in %s", a, p)
				}
			}
		}
	})
}

// fakeDNS answers every A query with a and every other query with no
// answer, over UDP on loopback.
func fakeDNS(t *testing.T, a netip.Addr) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if n < 12 {
				continue
			}
			// The question: the name's labels, then type and class.
			end := 12
			for end < n && q[end] != 0 {
				end += int(q[end]) + 1
			}
			end += 5
			if end > n {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[end-4:])
			resp := append([]byte{}, q[:end]...)
			resp[2], resp[3] = 0x81, 0x80            // response, recursion available, no error
			binary.BigEndian.PutUint16(resp[6:], 0)  // answers
			binary.BigEndian.PutUint16(resp[8:], 0)  // authority
			binary.BigEndian.PutUint16(resp[10:], 0) // additional
			if qtype == 1 {
				binary.BigEndian.PutUint16(resp[6:], 1)
				ip := a.As4()
				resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
				resp = append(resp, ip[:]...)
			}
			_, _ = pc.WriteTo(resp, from)
		}
	}()
	return pc.LocalAddr().String()
}

// TestMetadataFetchRefusedAtDial: a DNS name that resolves to a blocked
// address (100.100.100.200, a cloud metadata service) is refused when it
// is dialled, not merely by looking at the name.
func TestMetadataFetchRefusedAtDial(t *testing.T) {
	dns := fakeDNS(t, netip.MustParseAddr("100.100.100.200"))
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns)
	}}
	if addrs, err := resolver.LookupHost(context.Background(), "cimd.harness-test.example"); err != nil || len(addrs) != 1 || addrs[0] != "100.100.100.200" {
		t.Fatalf("the fake DNS answers %v %v", addrs, err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://cimd.harness-test.example/client.json", nil)
	_, err := newMetadataClient(false, resolver).Do(req)
	if !errors.Is(err, errBlockedAddress) {
		t.Fatalf("fetch from a name resolving to 100.100.100.200: %v, want refused at dial", err)
	}
}
