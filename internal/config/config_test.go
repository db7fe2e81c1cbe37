package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const good = `
listen: 127.0.0.1:9090
public_url: https://gw.example.com/
environment: staging
auth:
  issuers:
    - issuer: https://idp.example.com
      roles_claim: groups
policy:
  query: data.harness.decision
delegation:
  max_ttl: 10m
ratelimit:
  default: {requests: 5, per: 1s}
upstreams:
  - name: crm
    base_url: http://127.0.0.1:8000
    openapi: http://127.0.0.1:8000/openapi.json
redaction:
  detectors: [secret, email]
audit:
  path: ${AUDIT_DIR}/audit.log
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse([]byte(good), env(map[string]string{"AUDIT_DIR": "/var/log/harness"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "https://gw.example.com" || cfg.ResourceURL() != "https://gw.example.com/mcp" {
		t.Errorf("public url %q resource %q", cfg.PublicURL, cfg.ResourceURL())
	}
	if got := cfg.Auth.Issuers[0].Audiences; len(got) != 2 || got[1] != "https://gw.example.com/mcp" {
		t.Errorf("default audiences = %v", got)
	}
	if cfg.Audit.Path != "/var/log/harness/audit.log" {
		t.Errorf("audit path = %q", cfg.Audit.Path)
	}
	if cfg.Upstreams[0].Timeout.D() != DefaultUpstreamTimeout {
		t.Errorf("timeout = %v", cfg.Upstreams[0].Timeout)
	}
	if cfg.Delegation.MaxTTL.D() != 10*time.Minute || cfg.RateLimit.Default.Per.D() != time.Second {
		t.Errorf("durations: %v %v", cfg.Delegation.MaxTTL, cfg.RateLimit.Default.Per)
	}
	if cfg.RateLimit.OnError != "deny" || cfg.Audit.OnError != "deny" {
		t.Errorf("fail-closed defaults changed: %q %q", cfg.RateLimit.OnError, cfg.Audit.OnError)
	}
}

func TestEnvOverride(t *testing.T) {
	cfg, err := Parse([]byte(good), env(map[string]string{
		"AUDIT_DIR":                   "/tmp",
		"HARNESS_LISTEN":              "127.0.0.1:7000",
		"HARNESS_RATELIMIT_REDIS_URL": "redis://127.0.0.1:6379/0",
		"HARNESS_REDACTION_DETECTORS": "ssn, iban",
		"HARNESS_DELEGATION_MAX_TTL":  "5m",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7000" || cfg.RateLimit.RedisURL != "redis://127.0.0.1:6379/0" ||
		strings.Join(cfg.Redaction.Detectors, ",") != "ssn,iban" || cfg.Delegation.MaxTTL.D() != 5*time.Minute {
		t.Errorf("overrides not applied: %+v", cfg)
	}
	_, err = Parse([]byte(good), env(map[string]string{"AUDIT_DIR": "/tmp", "HARNESS_DELEGATION_MAX_TTL": "soon"}))
	if err == nil || !strings.Contains(err.Error(), "delegation.max_ttl (from HARNESS_DELEGATION_MAX_TTL)") {
		t.Errorf("bad env override error = %v", err)
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every path that must be reported
	}{
		{"unknown keys everywhere", `
listen: 127.0.0.1:1
auth: {issuers: [{issuer: https://idp, audience: x}]}
upstream: []
ratelimit: {default: {requests: 1, per: 1m, burst: 3}}
`, []string{"auth.issuers[0].audience: unknown key", "upstream: unknown key", "ratelimit.default.burst: unknown key"}},
		{"types and values", `
listen: nowhere
public_url: ftp://x
auth: {issuers: [{issuer: http://idp.example.com}]}
delegation: {max_ttl: forever}
ratelimit: {default: {requests: many, per: 0s}, on_error: shrug}
upstreams:
  - {name: "bad name", base_url: "/relative", timeout: -1s}
  - {name: crm, base_url: http://x, openapi: a.json}
  - {name: crm, base_url: http://x, openapi: a.json}
redaction: {detectors: [secret, dna]}
audit: {on_error: maybe}
`, []string{"listen:", "public_url:", "auth.issuers[0].issuer: \"http://idp.example.com\" must use https",
			"delegation.max_ttl:", "ratelimit.default.requests:", "ratelimit.on_error:",
			"upstreams[0].name:", "upstreams[0].base_url:", "upstreams[0]: one of openapi", "upstreams[0].timeout:",
			"upstreams[2].name: \"crm\" is used twice", "redaction.detectors[1]: unknown detector \"dna\"", "audit.on_error:"}},
		{"no issuer", `listen: 127.0.0.1:1`, []string{"auth.issuers: at least one"}},
		{"missing env", `auth: {issuers: [{issuer: "${IDP}"}]}`, []string{"auth.issuers[0].issuer: environment variable IDP is not set"}},
		{"oauth without login issuer", "oauth: {client_id: x}\nauth: {issuers: [{issuer: https://i}]}", []string{"oauth.login_issuer: required when"}},
		{"oauth bad", "oauth: {login_issuer: https://other, access_ttl: 48h, refresh_ttl: 0s, scope: x}\nauth: {issuers: [{issuer: https://i}]}",
			[]string{"oauth.login_issuer: \"https://other\" must be one of auth.issuers", "oauth.client_id: required", "oauth.access_ttl:", "oauth.refresh_ttl:", "oauth.scope: unknown key"}},
		{"wrong shapes", "auth: [1]\nupstreams: {name: x}", []string{"auth: must be a mapping", "upstreams: must be a list"}},
		{"duplicate key", "listen: a:1\nlisten: b:2\nauth: {issuers: [{issuer: https://i}]}", []string{"listen: duplicate key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), env(nil))
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("err = %v, want Problems", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("missing %q in:\n%s", w, msg)
				}
			}
		})
	}
}

func TestOAuthSection(t *testing.T) {
	cfg, err := Parse([]byte(`
auth: {issuers: [{issuer: https://idp.example.com}]}
oauth:
  login_issuer: https://idp.example.com
  client_id: harness
  client_secret: ${SECRET}
`), env(map[string]string{"SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.OAuth
	if !o.Enabled() || o.ClientID != "harness" || o.ClientSecret != "s3cret" || o.AccessTTL.D() != time.Hour || o.RefreshTTL.D() != 24*time.Hour {
		t.Errorf("oauth = %+v", o)
	}
	cfg, err = Parse([]byte("auth: {issuers: [{issuer: https://idp.example.com}]}"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OAuth.Enabled() {
		t.Error("oauth enabled without login_issuer")
	}
	_, err = Parse([]byte("auth: {issuers: [{issuer: https://i}]}\noauth: {login_issuer: https://i, client_id: h, access_ttl: 2h, refresh_ttl: 1h}"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "oauth.refresh_ttl: must not be shorter") {
		t.Errorf("refresh shorter than access: %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("auth: {issuers: [{issuer: https://idp.example.com}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "http://127.0.0.1:8080" {
		t.Errorf("derived public_url = %q", cfg.PublicURL)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := Parse([]byte("listen: [unclosed"), env(nil)); err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Errorf("bad yaml error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("auth: {issuers: [{issuer: ${X}}]}"))
	f.Add([]byte("&a [*a, *a]"))
	f.Add([]byte("upstreams: [{name: a, timeout: 1s}, null]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, env(map[string]string{"X": "https://i"}))
		if err == nil && len(cfg.Validate()) > 0 {
			t.Fatalf("Parse accepted an invalid config")
		}
	})
}

func TestUpstreamTokenExchange(t *testing.T) {
	const base = "auth: {issuers: [{issuer: https://idp.example.com}]}\nupstreams:\n  - name: hr\n    base_url: http://127.0.0.1:8001\n    openapi: x.json\n"
	cfg, err := Parse([]byte(base+"    token_exchange: {token_url: https://idp.example.com/token, client_id: gw, client_secret: '${HR_SECRET}', scope: hr.read}\n"),
		env(map[string]string{"HR_SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	te := cfg.Upstreams[0].TokenExchange
	if !te.Enabled() || te.ClientSecret != "s3cret" || te.Audience != "hr" || te.Scope != "hr.read" || te.ClientID != "gw" {
		t.Errorf("token_exchange = %+v (audience defaults to the upstream name)", te)
	}
	cfg, err = Parse([]byte(base), env(nil))
	if err != nil || cfg.Upstreams[0].TokenExchange.Enabled() {
		t.Errorf("absent token_exchange: %v %+v", err, cfg)
	}
	for yaml, want := range map[string]string{
		"    token_exchange: {token_url: http://idp.example.com/token, client_id: gw}\n":          "upstreams[0].token_exchange.token_url",
		"    token_exchange: {client_id: gw}\n":                                                   "upstreams[0].token_exchange.token_url: required",
		"    token_exchange: {token_url: https://idp.example.com/token}\n":                        "upstreams[0].token_exchange.client_id: required",
		"    token_exchange: {token_url: https://i/t, client_id: gw, audince: x}\n":               "upstreams[0].token_exchange.audince: unknown key",
		"    token_exchange: {token_url: https://i/t, client_id: gw, client_secret: '${NOPE}'}\n": "NOPE is not set",
	} {
		_, err := Parse([]byte(base+yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", yaml, err, want)
		}
	}
	if _, err := Parse([]byte(base+"    token_exchange: {token_url: http://127.0.0.1:9/token, client_id: gw}\n"), env(nil)); err != nil {
		t.Errorf("http on loopback refused: %v", err)
	}
}

// TestProblemsNeverEchoPasswords: a URL with credentials is refused without
// printing them, and the Redis URL is judged by the limiter's own parser.
func TestProblemsNeverEchoPasswords(t *testing.T) {
	_, err := Parse([]byte(`auth: {issuers: [{issuer: "https://u:hunter2@idp.example.com"}]}
upstreams: [{name: crm, base_url: "http://svc:hunter2@crm:8000", openapi: a.json}]
ratelimit: {redis_url: "redis://:hunter2@redis:6379/0?bogus=1"}
`), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if strings.Contains(msg, "hunter2") {
		t.Errorf("a password is echoed:\n%s", msg)
	}
	for _, want := range []string{"auth.issuers[0].issuer:", "must not carry credentials", "upstreams[0].base_url:", "ratelimit.redis_url:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if _, err := Parse([]byte("auth: {issuers: [{issuer: https://idp.example.com}]}\nratelimit: {redis_url: \"rediss+cluster://h1:7000?addr=h2:7000\"}\n"), env(nil)); err != nil {
		t.Errorf("a TLS cluster URL was refused: %v", err)
	}
}

func TestUpstreamMCPKinds(t *testing.T) {
	const head = "auth: {issuers: [{issuer: https://idp.example.com}]}\nupstreams:\n"
	cfg, err := Parse([]byte(head+`  - name: docs
    mcp: http://127.0.0.1:9000/mcp
    headers: {X-Api-Key: "${DOCS_KEY}"}
    timeout: 30s
  - name: files
    command: [npx, -y, server-filesystem, /srv]
    env: {LOG_LEVEL: warn}
    prefix: ""
    pin: warn
`), env(map[string]string{"DOCS_KEY": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	docs, files := cfg.Upstreams[0], cfg.Upstreams[1]
	if docs.Kind() != "mcp" || docs.Headers["X-Api-Key"] != "k" || docs.ToolPrefix() != "docs_" || docs.Pin != "strict" {
		t.Errorf("docs = %+v (prefix %q)", docs, docs.ToolPrefix())
	}
	if files.Kind() != "command" || files.Env["LOG_LEVEL"] != "warn" || files.ToolPrefix() != "" || files.Pin != "warn" || len(files.Command) != 4 {
		t.Errorf("files = %+v (prefix %q)", files, files.ToolPrefix())
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"none":            {"  - name: a\n", "upstreams[0]: one of openapi"},
		"two kinds":       {"  - name: a\n    mcp: http://127.0.0.1/mcp\n    command: [x]\n", "upstreams[0]: only one of openapi, mcp and command"},
		"bad pin":         {"  - name: a\n    mcp: http://127.0.0.1/mcp\n    pin: maybe\n", "upstreams[0].pin: must be strict, warn or off"},
		"plain http":      {"  - name: a\n    mcp: http://docs.example.com/mcp\n", "upstreams[0].mcp:"},
		"credentials":     {"  - name: a\n    mcp: https://u:p@docs.example.com/mcp\n", "must not carry credentials"},
		"headers stdio":   {"  - name: a\n    command: [x]\n    headers: {A: b}\n", "upstreams[0].headers: applies only to an mcp upstream"},
		"env http":        {"  - name: a\n    mcp: http://127.0.0.1/mcp\n    env: {A: b}\n", "upstreams[0].env: applies only to a command upstream"},
		"prefix openapi":  {"  - name: a\n    base_url: http://127.0.0.1\n    openapi: x.json\n    prefix: b_\n", "upstreams[0].prefix: applies only"},
		"bad prefix":      {"  - name: a\n    command: [x]\n    prefix: 'a b'\n", "upstreams[0].prefix:"},
		"empty program":   {"  - name: a\n    command: ['']\n", "upstreams[0].command: the program"},
		"bad header name": {"  - name: a\n    mcp: http://127.0.0.1/mcp\n    headers: {'a b': c}\n", "is not a valid header name"},
		"headers list":    {"  - name: a\n    mcp: http://127.0.0.1/mcp\n    headers: [a]\n", "upstreams[0].headers: must be a mapping"},
		"missing secret":  {"  - name: a\n    mcp: http://127.0.0.1/mcp\n    headers: {A: '${NOPE}'}\n", "NOPE is not set"},
	} {
		_, err := Parse([]byte(head+tc.yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "${NOPE}") {
			t.Errorf("%s: error echoes the reference", name)
		}
	}
}
