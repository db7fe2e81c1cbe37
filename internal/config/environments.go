package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/environments"
)

// validateEnvironments checks the optional environments section.
func (c *Config) validateEnvironments() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	e := c.Environments
	if !e.Enabled() {
		if len(e.AllowedUpstreams) > 0 || e.GitHubWebhookSecret != "" {
			bad("environments", "set ci_issuers or admin_roles: without them nobody may create a preview")
		}
	} else if len(e.AllowedUpstreams) == 0 {
		bad("environments.allowed_upstreams", "required: every preview URL must match one (so a preview can never point at production)")
	}
	seen := map[string]bool{}
	for i, is := range e.CIIssuers {
		p := fmt.Sprintf("environments.ci_issuers[%d]", i)
		if err := checkURL(is.Issuer, false); err != nil {
			bad(p+".issuer", "%v", err)
		} else if err := secureURL(is.Issuer); err != nil {
			bad(p+".issuer", "%v", err)
		}
		if seen[is.Issuer] {
			bad(p+".issuer", "%q is listed twice", is.Issuer)
		}
		seen[is.Issuer] = true
		if len(is.Audiences) == 0 {
			bad(p+".audiences", "at least one audience is required (the aud your CI job asks for)")
		}
		for j, a := range is.Audiences {
			if strings.TrimSpace(a) == "" {
				bad(fmt.Sprintf("%s.audiences[%d]", p, j), "must not be empty")
			}
		}
		if len(is.Claims) == 0 {
			bad(p+".claims", "at least one claim rule is required (e.g. repository: acme/crm): otherwise every job of that CI could create previews")
		}
		for k, v := range is.Claims {
			if k == "" || strings.TrimSpace(v) == "" || v == "*" {
				bad(p+".claims."+k, "must name a value (a trailing * is a prefix match; * alone matches anything and is refused)")
			}
		}
	}
	for i, r := range e.AdminRoles {
		if strings.TrimSpace(r) == "" {
			bad(fmt.Sprintf("environments.admin_roles[%d]", i), "must not be empty")
		}
	}
	for i, s := range e.AllowedUpstreams {
		if _, err := environments.ParsePattern(s); err != nil {
			bad(fmt.Sprintf("environments.allowed_upstreams[%d]", i), "%v", err)
		}
	}
	if e.GitHubWebhookSecret != "" && len(e.GitHubWebhookSecret) < 16 {
		bad("environments.github_webhook_secret", "must be at least 16 characters (a random secret, written as ${VAR})")
	}
	if e.DefaultTTL < Duration(time.Minute) {
		bad("environments.default_ttl", "must be at least 1m, got %s", e.DefaultTTL)
	}
	if e.MaxTTL < Duration(time.Minute) {
		bad("environments.max_ttl", "must be at least 1m, got %s", e.MaxTTL)
	} else if e.MaxTTL < e.DefaultTTL {
		bad("environments.max_ttl", "must not be shorter than environments.default_ttl (%s)", e.DefaultTTL)
	}
	if e.Max <= 0 || e.Max > 10000 {
		bad("environments.max", "must be between 1 and 10000, got %d", e.Max)
	}
	return ps
}
