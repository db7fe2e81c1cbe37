package environments

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/agentharness/harness/internal/authn"
)

// CIIssuer is one trusted CI OIDC issuer and the claims its tokens must
// carry.
type CIIssuer struct {
	Issuer    string
	Audiences []string
	// Claims: each must match the token's string claim of that name:
	// equal, or for a value ending in *, start with what precedes it.
	Claims map[string]string
}

// Humans authenticates a human's bearer token (the gateway's
// authn.Authenticator).
type Humans interface {
	Authenticate(ctx context.Context, raw string) (*authn.Principal, error)
}

// Caller is who called the API, never with the token.
type Caller struct {
	// Admin is set for a human with one of environments.admin_roles.
	Admin bool
	// Issuer and Subject of the token; Email and Name of a human.
	Issuer, Subject, Email, Name string
	// Repository is a CI token's repository (GitHub) or project_path
	// (GitLab) claim.
	Repository string
	// Actor is a CI token's actor (GitHub) or user_login (GitLab).
	Actor string
}

// who is what created_by holds: the CI actor, else the human's email or
// subject.
func (c Caller) who() string {
	for _, s := range []string{c.Actor, c.Email, c.Subject} {
		if s != "" {
			return s
		}
	}
	return "unknown"
}

// mayManage reports whether c may see, update and retire e: an admin
// every environment, a CI caller those its own repository's CI created
// (same issuer, same repository claim).
func (c *Caller) mayManage(e *Env) bool {
	return c.Admin || (e.CreatorRepository != "" && e.CreatorIssuer == c.Issuer && e.CreatorRepository == c.Repository)
}

// apiError is an error answered to the caller: status, code and a clear,
// safe description.
type apiError struct {
	status int
	code   string
	desc   string
}

func (e *apiError) Error() string { return e.code + ": " + e.desc }

func unauthorized(desc string) error {
	return &apiError{http.StatusUnauthorized, "invalid_token", desc}
}

func forbidden(desc string) error { return &apiError{http.StatusForbidden, "forbidden", desc} }

func badRequest(desc string) error { return &apiError{http.StatusBadRequest, "invalid_request", desc} }

// ciVerifier verifies one CI issuer's tokens with go-oidc: discovery at
// first use (retried on failure), then the issuer's remote key set.
type ciVerifier struct {
	cfg    CIIssuer
	client *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	lastTry  time.Time
}

// get returns the verifier, running discovery when it has not succeeded
// yet (at most once a second).
func (v *ciVerifier) get(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier != nil {
		return v.verifier, nil
	}
	if time.Since(v.lastTry) < time.Second {
		return nil, errors.New("the CI issuer's discovery failed moments ago")
	}
	v.lastTry = time.Now()
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, v.client), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, v.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery at the CI issuer: %w", err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return nil, errors.New("the CI issuer's discovery names no jwks_uri")
	}
	// The key set lives as long as the process; it fetches with v.client.
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), v.client), meta.JWKSURI)
	v.verifier = oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
		SkipClientIDCheck:    true, // audiences are checked against the list below
		SupportedSigningAlgs: authn.SupportedAlgorithms(),
	})
	return v.verifier, nil
}

// authenticator tells CI tokens from humans' and checks each.
type authenticator struct {
	ci         map[string]*ciVerifier
	humans     Humans
	adminRoles []string
}

func newAuthenticator(issuers []CIIssuer, humans Humans, adminRoles []string, client *http.Client) *authenticator {
	if client == nil {
		client = http.DefaultClient
	}
	a := &authenticator{ci: map[string]*ciVerifier{}, humans: humans, adminRoles: adminRoles}
	for _, is := range issuers {
		a.ci[is.Issuer] = &ciVerifier{cfg: is, client: client}
	}
	return a
}

// maxToken bounds a bearer token.
const maxToken = 16 << 10

// caller authenticates the request's bearer token. A token of a CI issuer
// must pass its audience and claim rules (403 when only the claims fail);
// any other token must be a human's (not a delegation token) with an
// admin role.
func (a *authenticator) caller(r *http.Request) (*Caller, error) {
	raw, ok := bearer(r)
	if !ok {
		return nil, unauthorized("a bearer token is required: a CI OIDC token or an admin's token")
	}
	if len(raw) > maxToken {
		return nil, unauthorized("the token is too large")
	}
	if v, ok := a.ci[authn.TokenIssuer(raw)]; ok {
		return v.verify(r.Context(), raw)
	}
	if a.humans == nil || len(a.adminRoles) == 0 {
		return nil, unauthorized("the token is not from one of environments.ci_issuers")
	}
	p, err := a.humans.Authenticate(r.Context(), raw)
	if err != nil {
		return nil, unauthorized("the token is neither a valid CI token nor a valid token of a trusted issuer")
	}
	if p.Delegation != nil {
		return nil, forbidden("an agent's delegation token may not manage environments: use your own token or CI's")
	}
	if p.LiveAudienceOnly {
		return nil, forbidden("a token issued for a preview environment may not manage environments: use a token for this gateway")
	}
	if !slices.ContainsFunc(p.Roles, func(r string) bool { return slices.Contains(a.adminRoles, r) }) {
		return nil, forbidden("your roles include none of environments.admin_roles")
	}
	return &Caller{Admin: true, Issuer: p.Issuer, Subject: p.Subject, Email: p.Email, Name: p.Name}, nil
}

// verify checks a CI token: signature, issuer, expiry (go-oidc), one of
// the audiences, then every claim rule.
func (v *ciVerifier) verify(ctx context.Context, raw string) (*Caller, error) {
	ver, err := v.get(ctx)
	if err != nil {
		return nil, &apiError{http.StatusServiceUnavailable, "temporarily_unavailable", "the CI issuer cannot be reached to verify the token; retry"}
	}
	tok, err := ver.Verify(ctx, raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return nil, unauthorized("the CI token has expired")
		}
		return nil, unauthorized("the CI token's signature or issuer is invalid")
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
		return nil, unauthorized("the CI token is not issued for this gateway (aud)")
	}
	claims := map[string]any{}
	if err := tok.Claims(&claims); err != nil {
		return nil, unauthorized("the CI token's claims are malformed")
	}
	if err := MatchClaims(v.cfg.Claims, claims); err != nil {
		return nil, forbidden(err.Error())
	}
	c := &Caller{Issuer: tok.Issuer, Subject: tok.Subject}
	c.Repository = firstString(claims, "repository", "project_path")
	c.Actor = firstString(claims, "actor", "user_login")
	return c, nil
}

// MatchClaims checks every rule against claims: the claim must be a string
// equal to the rule, or, when the rule ends in *, start with what precedes
// the *. The error names the first claim that fails, never its value.
func MatchClaims(rules map[string]string, claims map[string]any) error {
	keys := make([]string, 0, len(rules))
	for k := range rules {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		want := rules[k]
		got, ok := claims[k].(string)
		if !ok {
			return fmt.Errorf("the CI token has no string claim %q, which environments.ci_issuers requires", k)
		}
		if prefix, wild := strings.CutSuffix(want, "*"); wild {
			if !strings.HasPrefix(got, prefix) {
				return fmt.Errorf("the CI token's claim %q does not match %q", k, want)
			}
			continue
		}
		if got != want {
			return fmt.Errorf("the CI token's claim %q does not match %q", k, want)
		}
	}
	return nil
}

func firstString(claims map[string]any, names ...string) string {
	for _, n := range names {
		if s, ok := claims[n].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
