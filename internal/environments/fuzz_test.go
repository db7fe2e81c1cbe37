package environments

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzWebhookSignature: CheckSignature accepts a header exactly when it is
// "sha256=" + the hex HMAC of the body (either case), and never panics.
func FuzzWebhookSignature(f *testing.F) {
	body := []byte(`{"action":"closed","number":42}`)
	f.Add(testSecret, sign(testSecret, body), body)
	f.Add(testSecret, "", body)
	f.Add(testSecret, "sha256=", body)
	f.Add(testSecret, "sha256="+strings.Repeat("0", 64), body)
	f.Add("", sign("", body), body)
	f.Add(testSecret, "sha1=abc", []byte{})
	f.Fuzz(func(t *testing.T, secret, header string, body []byte) {
		got := CheckSignature(secret, header, body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		want := secret != "" && strings.EqualFold(header, "sha256="+hex.EncodeToString(mac.Sum(nil))) && strings.HasPrefix(header, "sha256=")
		if got != want {
			t.Fatalf("CheckSignature(%q, %q, %q) = %v, want %v", secret, header, body, got, want)
		}
	})
}

// FuzzEnvironmentRequest: DecodeRequest never panics, and whatever it
// accepts is within bounds: every URL allowed, the TTL within max_ttl,
// names valid, at most MaxUpstreams.
func FuzzEnvironmentRequest(f *testing.F) {
	f.Add([]byte(`{"branch":"feat-x","pull_request":42,"repository":"acme/crm","owner":"alice","ttl":"24h","upstreams":{"crm":{"base_url":"https://x.preview.acme.internal","openapi":"https://x.preview.acme.internal/openapi.json"}}}`))
	f.Add([]byte(`{"upstreams":{"t":{"mcp":"https://t.preview.acme.internal/mcp"}},"policy_bundle":"H4sIAAAAAAAA"}`))
	f.Add([]byte(`{"upstreams":{"t":{"mcp":"https://crm.acme.internal@t.preview.acme.internal/mcp"}}}`))
	f.Add([]byte(`{"ttl":"9999999h","upstreams":{}}`))
	f.Add([]byte(`{"upstreams":{"t":{"mcp":"https://t.preview.acme.internal/../x"}}} trailing`))
	f.Add([]byte(`[]`))
	pats, err := ParsePatterns([]string{"https://*.preview.acme.internal", "http://127.0.0.1:*"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, _, ttl, err := DecodeRequest(body, pats, time.Hour, 2*time.Hour)
		if err != nil {
			return
		}
		if ttl <= 0 || ttl > 2*time.Hour {
			t.Fatalf("ttl %v accepted", ttl)
		}
		if len(req.Upstreams) == 0 || len(req.Upstreams) > MaxUpstreams {
			t.Fatalf("%d upstreams accepted", len(req.Upstreams))
		}
		for n, u := range req.Upstreams {
			if !upstreamRE.MatchString(n) {
				t.Fatalf("upstream name %q accepted", n)
			}
			for _, raw := range []string{u.BaseURL, u.OpenAPI, u.MCP} {
				if raw != "" && CheckUpstreamURL(raw, pats) != nil {
					t.Fatalf("URL %q accepted", raw)
				}
			}
			if u.MCP == "" && (u.BaseURL == "" || u.OpenAPI == "") {
				t.Fatalf("incomplete upstream %+v accepted", u)
			}
		}
	})
}

// FuzzCheckUpstreamURL: whatever the allow-list accepts is, by Go's own
// parser, an https URL without credentials on a host directly under
// preview.acme.internal, on port 443.
func FuzzCheckUpstreamURL(f *testing.F) {
	for _, s := range []string{"https://feat-x.preview.acme.internal/openapi.json", "https://a@b.preview.acme.internal",
		"https://x.preview.acme.internal:443/%2e%2e/", "https://x.preview.acme.internal\\@crm", "https://x.preview.acme.internal.evil"} {
		f.Add(s)
	}
	pats, err := ParsePatterns([]string{"https://*.preview.acme.internal"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if CheckUpstreamURL(raw, pats) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%q accepted but does not parse", raw)
		}
		host := strings.ToLower(u.Hostname())
		label, rest, _ := strings.Cut(host, ".")
		if u.Scheme != "https" || u.User != nil || rest != "preview.acme.internal" || label == "" ||
			(u.Port() != "" && u.Port() != "443") || strings.Contains(u.Path, "..") {
			t.Fatalf("%q accepted: scheme %q host %q port %q path %q", raw, u.Scheme, host, u.Port(), u.Path)
		}
	})
}
