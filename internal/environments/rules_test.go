package environments

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMatchClaims: every rule must match; a trailing * is a prefix match;
// a missing or non-string claim fails; the error names the claim.
func TestMatchClaims(t *testing.T) {
	rules := map[string]string{"repository": "acme/crm", "ref": "refs/pull/*", "event_name": "pull_request"}
	good := map[string]any{"repository": "acme/crm", "ref": "refs/pull/42/merge", "event_name": "pull_request", "actor": "alice"}
	for _, tc := range []struct {
		name   string
		change map[string]any
		want   string // "" = match
	}{
		{"all match", nil, ""},
		{"other repository", map[string]any{"repository": "acme/crm-fork"}, `"repository"`},
		{"repository prefix is not equality", map[string]any{"repository": "acme/crm/x"}, `"repository"`},
		{"case differs", map[string]any{"repository": "ACME/crm"}, `"repository"`},
		{"prefix fails", map[string]any{"ref": "refs/heads/main"}, `"ref"`},
		{"prefix exact", map[string]any{"ref": "refs/pull/"}, ""},
		{"missing claim", map[string]any{"event_name": nil}, `no string claim "event_name"`},
		{"non-string claim", map[string]any{"event_name": 42.0}, `no string claim "event_name"`},
		{"array claim", map[string]any{"repository": []any{"acme/crm"}}, `no string claim "repository"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := map[string]any{}
			for k, v := range good {
				claims[k] = v
			}
			for k, v := range tc.change {
				if v == nil {
					delete(claims, k)
				} else {
					claims[k] = v
				}
			}
			err := MatchClaims(rules, claims)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestCheckUpstreamURL: preview URLs must match allowed_upstreams, parsed
// strictly; hostile URLs that other parsers read differently are refused.
func TestCheckUpstreamURL(t *testing.T) {
	pats, err := ParsePatterns([]string{"https://*.preview.acme.internal", "http://127.0.0.1:*", "https://api.acme.test/previews"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url     string
		allowed bool
	}{
		{"https://feat-x.preview.acme.internal", true},
		{"https://feat-x.preview.acme.internal/openapi.json", true},
		{"https://feat-x.preview.acme.internal:443/x", true},
		{"https://FEAT-X.Preview.Acme.Internal/x", true},
		{"http://127.0.0.1:8001/openapi.json", true},
		{"https://api.acme.test/previews/pr-1/openapi.json", true},
		{"https://api.acme.test/previews", true},
		// outside
		{"https://crm.acme.internal", false},                               // production
		{"https://preview.acme.internal", false},                           // * takes at least one character
		{"https://a.b.preview.acme.internal", false},                       // * is one label
		{"http://feat-x.preview.acme.internal", false},                     // scheme must match
		{"https://feat-x.preview.acme.internal:8443", false},               // port must match
		{"https://feat-x.preview.acme.internal.evil.test", false},          // suffix
		{"https://evilpreview.acme.internal", false},                       // label boundary
		{"https://api.acme.test/previewsx/openapi.json", false},            // path prefix at a /
		{"https://api.acme.test/production", false},                        // other path
		{"https://api.acme.test/previews/../production", false},            // dot segments
		{"https://api.acme.test/previews/%2e%2e/production", false},        // escaped dot segments
		{"https://api.acme.test/previews/..%2fproduction", false},          // escaped slash
		{"https://feat-x.preview.acme.internal@crm.acme.internal/", false}, // userinfo
		{"https://user:pw@feat-x.preview.acme.internal/", false},           // credentials
		{"https://crm.acme.internal#@feat-x.preview.acme.internal", false},
		{"https://crm.acme.internal\\@feat-x.preview.acme.internal", false},
		{"https://feat-x.preview.acme.internal%2ecrm.acme.internal", false},
		{"https://feat-x.preview.acme.internal:99999", false},
		{"https://feat-x.preview.acme.internal:", false},
		{"https:feat-x.preview.acme.internal", false},       // opaque
		{"//feat-x.preview.acme.internal", false},           // no scheme
		{"ftp://feat-x.preview.acme.internal", false},       // scheme
		{"https://feat-x.preview.acme.internal\n.x", false}, // control characters
		{"https://127.0.0.1.nip.io:8001", false},
		{"http://127.0.0.1.:8001", false},
		{"http://0x7f.0.0.1:8001", false},
		{"http://[::1]:8001", false},
		{"", false},
	} {
		err := CheckUpstreamURL(tc.url, pats)
		if (err == nil) != tc.allowed {
			t.Errorf("%q: err = %v, want allowed %v", tc.url, err, tc.allowed)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("%q: the error repeats a password: %v", tc.url, err)
		}
	}
}

// TestCheckName: [a-z0-9-]{1,40}, "default" reserved.
func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"pr-42": true, "a": true, strings.Repeat("a", 40): true,
		"": false, "default": false, strings.Repeat("a", 41): false, "PR-42": false, "pr_42": false,
		"pr.42": false, "pr/42": false, "../x": false, "pr 42": false, "pr-42\n": false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("%q: err = %v, want ok %v", name, err, ok)
		}
	}
}

// TestDecodeRequest: strict JSON, field checks, TTL bounds, the allow-list
// (forbidden, not bad), and base64 bundles.
func TestDecodeRequest(t *testing.T) {
	pats, _ := ParsePatterns([]string{"https://*.preview.acme.internal"})
	const up = `"upstreams": {"crm": {"base_url": "https://x.preview.acme.internal", "openapi": "https://x.preview.acme.internal/openapi.json"}}`
	for _, tc := range []struct {
		name, body string
		forbid     bool
		want       string
	}{
		{"good", `{"branch": "b", "pull_request": 1, ` + up + `}`, false, ""},
		{"mcp", `{"upstreams": {"tools": {"mcp": "https://t.preview.acme.internal/mcp"}}}`, false, ""},
		{"unknown field", `{"branchh": "b", ` + up + `}`, false, "unknown field"},
		{"two values", `{` + up + `} {}`, false, "more than one JSON value"},
		{"not json", `{`, false, "not the expected JSON"},
		{"empty", ``, false, "empty body"},
		{"wrong type", `{"pull_request": "42", ` + up + `}`, false, "pull_request must be int"},
		{"negative pr", `{"pull_request": -1, ` + up + `}`, false, "must not be negative"},
		{"control chars", `{"branch": "a\u0000b", ` + up + `}`, false, "branch must be"},
		{"ttl too long", `{"ttl": "200h", ` + up + `}`, false, "longer than environments.max_ttl"},
		{"ttl bad", `{"ttl": "soon", ` + up + `}`, false, "not a duration"},
		{"no upstreams", `{"upstreams": {}}`, false, "at least one is required"},
		{"both kinds", `{"upstreams": {"crm": {"mcp": "https://x.preview.acme.internal/mcp", "base_url": "https://x.preview.acme.internal"}}}`, false, "either mcp"},
		{"base without openapi", `{"upstreams": {"crm": {"base_url": "https://x.preview.acme.internal"}}}`, false, "needs base_url and openapi"},
		{"bad upstream name", `{"upstreams": {"c r m": {"mcp": "https://x.preview.acme.internal/mcp"}}}`, false, "must be 1-32 characters"},
		{"outside allow-list", `{"upstreams": {"crm": {"base_url": "https://x.preview.acme.internal", "openapi": "https://crm.acme.internal/openapi.json"}}}`, true, "upstreams.crm.openapi"},
		{"bad base64", `{"policy_bundle": "***", ` + up + `}`, false, "not standard base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, ttl, err := DecodeRequest([]byte(tc.body), pats, 24*time.Hour, 168*time.Hour)
			if tc.want == "" {
				if err != nil || ttl != 24*time.Hour {
					t.Fatalf("err = %v ttl %v", err, ttl)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			var fe *forbiddenError
			if errors.As(err, &fe) != tc.forbid {
				t.Fatalf("forbidden = %v, want %v (%v)", !tc.forbid, tc.forbid, err)
			}
		})
	}
}

// TestCheckSignature: the exact HMAC of the exact body; anything else,
// including an empty secret, fails.
func TestCheckSignature(t *testing.T) {
	body := []byte(`{"action":"closed"}`)
	good := sign(testSecret, body)
	for _, tc := range []struct {
		name, secret, header string
		body                 []byte
		ok                   bool
	}{
		{"correct", testSecret, good, body, true},
		{"upper-case hex", testSecret, "sha256=" + strings.ToUpper(good[7:]), body, true},
		{"other body", testSecret, good, []byte(`{"action":"closed" }`), false},
		{"other secret", "another-secret-of-16", good, body, false},
		{"missing", testSecret, "", body, false},
		{"sha1", testSecret, "sha1=" + good[7:47], body, false},
		{"truncated", testSecret, good[:len(good)-2], body, false},
		{"not hex", testSecret, "sha256=" + strings.Repeat("z", 64), body, false},
		{"empty secret", "", "sha256=" + sign("", body)[7:], body, false},
	} {
		if got := CheckSignature(tc.secret, tc.header, tc.body); got != tc.ok {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.ok)
		}
	}
}
