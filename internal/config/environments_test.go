package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const envBase = `
public_url: https://gw.example.com
auth:
  issuers:
    - issuer: https://idp.example.com
`

// TestEnvironmentsSection: defaults, ${VAR} for the secret, and one
// problem per wrong key, all at once.
func TestEnvironmentsSection(t *testing.T) {
	good := envBase + `
environments:
  ci_issuers:
    - issuer: https://token.actions.githubusercontent.com
      audiences: [https://gw.example.com]
      claims: {repository: acme/crm, ref: "refs/heads/*"}
  admin_roles: [platform-admin]
  allowed_upstreams: ["https://*.preview.acme.internal", "http://127.0.0.1:*"]
  github_webhook_secret: ${HOOK}
`
	cfg, err := Parse([]byte(good), env(map[string]string{"HOOK": "0123456789abcdef0123"}))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Environments
	if !e.Enabled() || e.DefaultTTL.D() != 24*time.Hour || e.MaxTTL.D() != 168*time.Hour || e.Max != 50 {
		t.Errorf("defaults: %+v", e)
	}
	if e.GitHubWebhookSecret != "0123456789abcdef0123" || e.CIIssuers[0].Claims["ref"] != "refs/heads/*" {
		t.Errorf("values: %+v", e)
	}
	off, err := Parse([]byte(envBase), env(nil))
	if err != nil || off.Environments.Enabled() {
		t.Fatalf("absent section: enabled=%v err=%v", off.Environments.Enabled(), err)
	}

	bad := envBase + `
environments:
  ci_issuers:
    - issuer: http://ci.example.com
      claims: {repository: "*"}
  allowed_upstreams: ["ftp://x.example.com", "https://*.internal", "https://a.example.com/../b"]
  github_webhook_secret: s3cr3t-x
  default_ttl: 48h
  max_ttl: 24h
  max: 0
  colour: blue
`
	_, err = Parse([]byte(bad), env(nil))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"environments.colour: unknown key",
		"environments.ci_issuers[0].issuer: \"http://ci.example.com\" must use https",
		"environments.ci_issuers[0].audiences: at least one audience",
		"environments.ci_issuers[0].claims.repository: must name a value",
		"environments.allowed_upstreams[0]: \"ftp://x.example.com\" must start with",
		"environments.allowed_upstreams[1]: \"https://*.internal\" is too broad",
		"environments.allowed_upstreams[2]: \"https://a.example.com/../b\" has a bad path",
		"environments.github_webhook_secret: must be at least 16 characters",
		"environments.max_ttl: must not be shorter than environments.default_ttl",
		"environments.max: must be between 1 and 10000",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "s3cr3t-x") {
		t.Errorf("the secret is echoed: %v", err)
	}
	noCallers := envBase + `
environments:
  allowed_upstreams: ["https://*.preview.acme.internal"]
`
	if _, err := Parse([]byte(noCallers), env(nil)); err == nil || !strings.Contains(err.Error(), "set ci_issuers or admin_roles") {
		t.Errorf("no callers: %v", err)
	}
	noUpstreams := envBase + `
environments:
  admin_roles: [platform-admin]
`
	if _, err := Parse([]byte(noUpstreams), env(nil)); err == nil || !strings.Contains(err.Error(), "environments.allowed_upstreams: required") {
		t.Errorf("no allowed upstreams: %v", err)
	}
}
