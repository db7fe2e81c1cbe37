package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// Finding is one line of an identity-provider check: what was found, and
// whether it is a problem.
type Finding struct {
	Problem bool
	Msg     string
}

// CheckIssuer is what `gateway validate --check-idp` checks of one issuer:
// discovery (whose issuer must equal ic.Issuer), the JWKS, the scopes it
// offers, and, when token is set (a token of that issuer, ID or access),
// whether it verifies and maps to roles: which, or why none (the claim
// missing, and the scope that usually releases it). loginScopes are the
// scopes the gateway asks for at sign-in when this is oauth.login_issuer
// (nil otherwise). The token is never printed.
func CheckIssuer(ctx context.Context, client *http.Client, ic IssuerConfig, loginScopes []string, token string) []Finding {
	var out []Finding
	ok := func(format string, a ...any) { out = append(out, Finding{Msg: fmt.Sprintf(format, a...)}) }
	bad := func(format string, a ...any) {
		out = append(out, Finding{Problem: true, Msg: fmt.Sprintf(format, a...)})
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	octx := oidc.ClientContext(ctx, client)
	p, err := oidc.NewProvider(octx, ic.Issuer)
	if err != nil {
		bad("discovery at %s/.well-known/openid-configuration failed: %v", strings.TrimSuffix(ic.Issuer, "/"), err)
		return out
	}
	var disc struct {
		JWKSURI string   `json:"jwks_uri"`
		Scopes  []string `json:"scopes_supported"`
		Claims  []string `json:"claims_supported"`
	}
	_ = p.Claims(&disc)
	ok("discovery: issuer matches, jwks_uri %s", disc.JWKSURI)
	if n, err := countKeys(ctx, client, disc.JWKSURI); err != nil {
		bad("JWKS: %v", err)
	} else if n == 0 {
		bad("JWKS: no signing key published")
	} else {
		ok("JWKS: %d key(s)", n)
	}
	rolesClaim := ic.RolesClaim
	if rolesClaim == "" {
		rolesClaim = DefaultRolesClaim
	}
	if loginScopes != nil {
		if slices.Contains(disc.Scopes, "offline_access") {
			ok("sign-in: the IdP offers offline_access: Harness keeps its refresh token to re-check humans (oauth.recheck)")
		} else {
			ok("sign-in: the IdP lists no offline_access: copilots' humans sign in again after oauth.recheck")
		}
		if rolesClaim == "groups" && slices.Contains(disc.Scopes, "groups") && !slices.Contains(loginScopes, "groups") {
			bad("sign-in: the IdP offers a groups scope that oauth.scopes does not request (%s): the ID token will likely lack groups", strings.Join(loginScopes, " "))
		}
	}
	if token == "" {
		ok("roles come from the %q claim; pass --token-file with a sample token to see what it maps to", rolesClaim)
		return out
	}
	// A sample token may be old: its signature, issuer and claims are
	// checked, its expiry only reported.
	v := p.VerifierContext(octx, &oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true})
	idt, err := v.Verify(octx, token)
	if err != nil {
		bad("sample token: not verified against %s: %v", ic.Issuer, err)
		return out
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		bad("sample token: claims unreadable: %v", err)
		return out
	}
	ok("sample token: signature verified, sub %q", idt.Subject)
	if time.Now().After(idt.Expiry) {
		ok("sample token: expired at %s (fine for this check; the gateway refuses it)", idt.Expiry.UTC().Format(time.RFC3339))
	}
	if len(ic.Audiences) > 0 && !slices.ContainsFunc(idt.Audience, func(a string) bool { return slices.Contains(ic.Audiences, a) }) {
		ok("sample token: aud %v is none of audiences %v (fine for an ID token of the sign-in client; an agent's token would be refused)", idt.Audience, ic.Audiences)
	}
	switch roles := ClaimRoles(claims, rolesClaim); {
	case !HasClaim(claims, rolesClaim):
		bad("sample token: no %q claim, so no roles: %s", rolesClaim, RolesClaimHint(rolesClaim))
	case len(roles) == 0:
		bad("sample token: the %q claim is empty or not strings: no roles", rolesClaim)
	default:
		ok("sample token: roles %s (from %q)", strings.Join(roles, ", "), rolesClaim)
	}
	agentClaim := ic.AgentClaim
	agent, _ := claims[agentClaim].(string)
	if agentClaim == "" {
		agentClaim = "azp or client_id"
		agent, _ = claims["azp"].(string)
		if agent == "" {
			agent, _ = claims["client_id"].(string)
		}
	}
	if agent == "" {
		bad("sample token: no agent (%s): at /mcp it would be refused; an ID token of the sign-in client is expected to lack it", agentClaim)
	} else {
		ok("sample token: agent %q", agent)
	}
	for _, c := range []string{"email", "name"} {
		if s, _ := claims[c].(string); s == "" {
			ok("sample token: no %s claim: audit records will name the human by sub only (request the %s scope)", c, map[string]string{"email": "email", "name": "profile"}[c])
		}
	}
	return out
}

func countKeys(ctx context.Context, client *http.Client, uri string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s answered %s", uri, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return 0, fmt.Errorf("%s: %w", uri, err)
	}
	return len(set.Keys), nil
}

// TokenIssuer reads the unverified iss claim of a JWT, to pick the issuer
// to check it against.
func TokenIssuer(token string) string {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Iss
}
