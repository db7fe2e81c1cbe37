package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/internal/store"
	"github.com/agentharness/harness/tools"
)

// newPublicServer is a server with no upstream whose extra routes are
// given, for the endpoints that need no token.
func newPublicServer(t *testing.T, yaml string, o Options) (*Server, string) {
	t.Helper()
	cfg, err := config.Parse([]byte("listen: 127.0.0.1:1\nauth: {issuers: [{issuer: https://idp.test}]}\n"+yaml),
		func(k string) (string, bool) {
			v, ok := map[string]string{"ADMIN": "admin-token-0123456789"}[k]
			return v, ok
		})
	if err != nil {
		t.Fatal(err)
	}
	cat := tools.NewCatalog(nil, http.DefaultClient, nil)
	st := store.NewMemory()
	o.Config, o.Authn, o.Catalog, o.Policy, o.Limiter, o.Sessions, o.Audit, o.Revocations =
		cfg, principals, cat, allowAll{}, ratelimit.NewMemory(), st, &recordingAudit{}, st
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

var echoForm = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "read %d bytes", len(b))
})

func TestClientAddr(t *testing.T) {
	trusted := clientAddr{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, tc := range []struct {
		name, peer, xff string
		c               clientAddr
		want            string
	}{
		{"no proxies: the peer", "203.0.113.9:5000", "", clientAddr{}, "203.0.113.9"},
		{"no proxies: the header is ignored", "203.0.113.9:5000", "198.51.100.1", clientAddr{}, "203.0.113.9"},
		{"untrusted peer: the header is ignored", "203.0.113.9:5000", "198.51.100.1", trusted, "203.0.113.9"},
		{"trusted peer, no header", "10.0.0.2:5000", "", trusted, "10.0.0.2"},
		{"trusted peer names the client", "10.0.0.2:5000", "198.51.100.1", trusted, "198.51.100.1"},
		{"spoofed left part is skipped", "10.0.0.2:5000", "6.6.6.6, 198.51.100.1", trusted, "198.51.100.1"},
		{"chain of trusted proxies", "10.0.0.2:5000", "198.51.100.1, 10.1.1.1,10.2.2.2", trusted, "198.51.100.1"},
		{"several header lines", "10.0.0.2:5000", "6.6.6.6\n198.51.100.1, 10.1.1.1", trusted, "198.51.100.1"},
		{"only trusted hops: the leftmost", "10.0.0.2:5000", "10.3.3.3, 10.1.1.1", trusted, "10.3.3.3"},
		{"garbage: the last trusted hop", "10.0.0.2:5000", "198.51.100.1, junk, 10.1.1.1", trusted, "10.1.1.1"},
		{"IPv6 peer", "[2001:db8::1]:5000", "", trusted, "2001:db8::1"},
		{"IPv6 trusted proxy", "[fd00::5]:5000", "2001:db8::7", trusted, "2001:db8::7"},
		{"mapped IPv4 peer", "[::ffff:10.0.0.2]:5000", "198.51.100.1", trusted, "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.peer
			for _, line := range strings.Split(tc.xff, "\n") {
				if line != "" {
					r.Header.Add("X-Forwarded-For", line)
				}
			}
			if got := tc.c.of(r).String(); got != tc.want {
				t.Fatalf("client = %s, want %s", got, tc.want)
			}
		})
	}
	if got := bucketOf(netip.MustParseAddr("2001:db8:1:2:3:4:5:6")); got != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 bucket = %s, want its /64", got)
	}
}

// TestUnauthenticatedEndpointsLimited: the registration flood of issue 13
// from one address gets 429 once the address's budget is spent; a forged
// X-Forwarded-For does not buy a new budget unless the peer is a trusted
// proxy; health and readiness are not limited.
func TestUnauthenticatedEndpointsLimited(t *testing.T) {
	for _, tc := range []struct {
		name    string
		proxies string
		newIP   bool // a new X-Forwarded-For address gets a new budget
	}{
		{"no trusted proxies", "", false},
		{"behind a trusted proxy", "  trusted_proxies: [127.0.0.0/8]\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, url := newPublicServer(t, "server:\n  unauthenticated_rate: {requests: 5, per: 1h}\n"+tc.proxies,
				Options{Routes: map[string]http.Handler{"POST /oauth/register": echoForm}})
			post := func(xff string) *http.Response {
				t.Helper()
				req, _ := http.NewRequest(http.MethodPost, url+"/oauth/register", strings.NewReader(`{}`))
				req.Header.Set("X-Forwarded-For", xff)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			for i := range 5 {
				if resp := post("198.51.100.1"); resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
			}
			resp := post("198.51.100.1")
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("request past the budget: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if got := post("198.51.100.2").StatusCode; (got == http.StatusOK) != tc.newIP {
				t.Fatalf("another forwarded address: %d", got)
			}
			for _, p := range []string{"/healthz", "/readyz"} {
				r, err := http.Get(url + p)
				if err != nil {
					t.Fatal(err)
				}
				r.Body.Close()
				if r.StatusCode != http.StatusOK {
					t.Errorf("%s while limited: %d", p, r.StatusCode)
				}
			}
		})
	}
}

// TestReadyzDetailsNeedAdminToken: /readyz once printed the failing
// dependency's error (an internal address) to anyone; now only the admin
// token sees it.
func TestReadyzDetailsNeedAdminToken(t *testing.T) {
	_, url := newPublicServer(t, "server:\n  admin_token: ${ADMIN}\n", Options{Ready: map[string]func(context.Context) error{
		"redis": func(context.Context) error { return fmt.Errorf(`dial tcp 10.1.2.3:6379: connect: connection refused`) },
	}})
	get := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+"/readyz", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tok := range []string{"", "wrong-token-0123456789", "admin-token-012345678"} {
		status, body := get(tok)
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil || status != http.StatusServiceUnavailable || len(got) != 1 || got["ready"] != false {
			t.Errorf("token %q: %d %s", tok, status, body)
		}
	}
	status, body := get("admin-token-0123456789")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "10.1.2.3:6379") {
		t.Errorf("admin: %d %s", status, body)
	}
}

// TestMetricsListen: with server.metrics_listen, /metrics is not served on
// the main address, only on the separate one.
func TestMetricsListen(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "harness_up 1") })
	_, open := newPublicServer(t, "", Options{Metrics: metrics})
	srv, closed := newPublicServer(t, "server:\n  metrics_listen: 127.0.0.1:0\n", Options{Metrics: metrics})
	for url, want := range map[string]int{open: 200, closed: 404} {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s/metrics: %d, want %d", url, resp.StatusCode, want)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeMetrics(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "harness_up") {
		t.Errorf("metrics listener: %d %s", resp.StatusCode, b)
	}
}

// TestSlowBodyCutOff: a client that sends its body a byte at a time (300
// such connections stayed open for 35 s in issue 13) gets 408 and a closed
// connection once server.read_timeout passes, long before it is done.
func TestSlowBodyCutOff(t *testing.T) {
	_, url := newPublicServer(t, "server:\n  read_timeout: 300ms\n", Options{Routes: map[string]http.Handler{"POST /oauth/token": echoForm}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 200
	fmt.Fprintf(conn, "POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", size)
	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			close(answered)
			return
		}
		answered <- resp
	}()
	tick := time.NewTicker(50 * time.Millisecond) // 10 s for the whole body
	defer tick.Stop()
	for sent := 0; sent < size; sent++ {
		select {
		case resp, ok := <-answered:
			if !ok {
				t.Fatalf("connection closed without an answer after %d of %d bytes", sent, size)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("answer after %d of %d bytes: %d, want 408", sent, size, resp.StatusCode)
			}
			if _, err := conn.Write([]byte("x")); err == nil {
				// The close may take a moment to be seen; a read tells.
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := conn.Read(make([]byte, 1)); n > 0 || err == nil {
					t.Fatal("connection still open after 408")
				}
			}
			return
		case <-tick.C:
			if _, err := conn.Write([]byte("a")); err != nil {
				t.Fatalf("connection closed without an answer after %d of %d bytes: %v", sent, size, err)
			}
		}
	}
	t.Fatal("the whole slow body was read: no read deadline")
}

// TestSlowBodyDeadlineLifted: a body read in time lifts the deadline, so a
// response streamed for longer than read_timeout (a POST /mcp answered
// with an event stream) is not cut.
func TestSlowBodyDeadlineLifted(t *testing.T) {
	streamed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		for i := range 3 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			fmt.Fprintf(w, "event %d\n", i)
			http.NewResponseController(w).Flush()
		}
	})
	_, url := newPublicServer(t, "server:\n  read_timeout: 100ms\n", Options{Routes: map[string]http.Handler{"POST /oauth/stream": streamed}})
	resp, err := http.Post(url+"/oauth/stream", "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "event 2") {
		t.Fatalf("stream cut: %d %q", resp.StatusCode, b)
	}
}

// FuzzClientAddr: whatever X-Forwarded-For holds, the client address is the
// peer or one of the header's addresses, and never a header address when
// the peer is not a trusted proxy.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"198.51.100.1", "6.6.6.6, 198.51.100.1, 10.0.0.3", "junk,,", "::ffff:1.2.3.4", "fe80::1%eth0, 10.0.0.1", ""} {
		f.Add(s, true)
	}
	c := clientAddr{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, xff string, trustedPeer bool) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "203.0.113.9:1"
		if trustedPeer {
			r.RemoteAddr = "10.0.0.2:1"
		}
		r.Header.Set("X-Forwarded-For", xff)
		got := c.of(r)
		if !got.IsValid() {
			t.Fatalf("no address for %q", xff)
		}
		if !trustedPeer && got.String() != "203.0.113.9" {
			t.Fatalf("untrusted peer: client %s from %q", got, xff)
		}
		if trustedPeer && got.String() != "10.0.0.2" {
			found := false
			for _, h := range strings.Split(xff, ",") {
				if a, err := netip.ParseAddr(strings.TrimSpace(h)); err == nil && a.Unmap() == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("client %s is neither the peer nor in %q", got, xff)
			}
		}
	})
}
