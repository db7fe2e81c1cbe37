// Package authn verifies the bearer tokens presented to the gateway and turns
// them into a Principal.
//
// Verification uses go-oidc against a fixed list of trusted issuers. The
// issuer is chosen from the token's unverified "iss" before any network work,
// so a token from an unknown issuer is refused without a fetch. Discovery and
// key fetching are lazy: an identity provider that is down when the gateway
// starts only makes its own tokens fail (ErrUnavailable) until it is back,
// with a bounded backoff between attempts. Key sets are refetched on an
// unknown kid at most once per MinRefreshInterval per issuer, concurrent
// fetches are coalesced, and verified tokens are cached by their SHA-256 until
// they expire so signature checks leave the hot path.
//
// Only asymmetric signatures (RS*, PS*, ES*, EdDSA) are accepted; "none", HMAC
// algorithms, "crit" headers, tokens without sub or exp, expired or not yet
// valid tokens, and tokens for another audience are refused with
// ErrInvalidToken. Error messages never contain the token.
package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Sentinel errors callers branch on.
var (
	// ErrInvalidToken means the token is not acceptable (401 invalid_token).
	// The error text after this prefix is safe to show to the client.
	ErrInvalidToken = errors.New("invalid token")
	// ErrUnavailable means the issuer's discovery document or keys cannot be
	// fetched right now; the token is refused (503) and the fetch retried later.
	ErrUnavailable = errors.New("identity provider unavailable")
)

// Defaults applied by New.
const (
	// DefaultCacheSize is the number of verified tokens kept when Config.CacheSize is 0.
	DefaultCacheSize = 10000
	// DefaultMinRefreshInterval is the minimum time between two key set
	// fetches of one issuer when Config.MinRefreshInterval is 0.
	DefaultMinRefreshInterval = 30 * time.Second
	// DefaultRolesClaim is where roles come from when IssuerConfig.RolesClaim is empty.
	DefaultRolesClaim = "roles"
	// MaxTokenSize is the longest token accepted, in bytes.
	MaxTokenSize = 16 << 10
	// Leeway is the clock skew tolerated on nbf and iat (none on exp).
	Leeway = time.Minute
	// maxBackoff bounds the wait between attempts to reach an unavailable issuer.
	maxBackoff = time.Minute
	// fetchTimeout bounds one discovery or JWKS fetch.
	fetchTimeout = 10 * time.Second
)

// supportedAlgs are the only signature algorithms accepted.
var supportedAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.EdDSA,
}

// SupportedAlgorithms returns the only signature algorithms accepted: RS*,
// PS*, ES* and EdDSA. "none" and HMAC algorithms are always refused.
func SupportedAlgorithms() []string { return slices.Clone(supportedAlgs) }

// IssuerConfig describes one trusted issuer.
type IssuerConfig struct {
	// Issuer is the exact "iss" value; discovery is fetched from
	// Issuer + "/.well-known/openid-configuration" unless KeySet is set.
	Issuer string
	// Audiences lists the accepted "aud" values; a token must name at least
	// one. Required: the caller supplies defaults (public_url, public_url/mcp).
	Audiences []string
	// RolesClaim names the claim holding roles ("roles" when empty). It may be
	// a dotted path such as "realm_access.roles"; a claim whose name is
	// literally the whole string wins over the path.
	RolesClaim string
	// AgentClaim names the claim holding the agent; when empty "azp", then
	// "client_id". An "act" claim's "sub" takes precedence over either.
	AgentClaim string
	// KeySet, when set, verifies signatures in-process instead of discovery
	// and a remote JWKS (for the gateway's own delegation tokens).
	KeySet oidc.KeySet
	// Delegation marks the gateway's delegation-token issuer: its tokens must
	// carry "jti" and "act", and yield a Principal with Delegation set.
	Delegation bool
}

// Config configures an Authenticator.
type Config struct {
	// Issuers are the trusted issuers; at least one.
	Issuers []IssuerConfig
	// HTTPClient fetches discovery documents and key sets; default: a client
	// with a 10 s timeout.
	HTTPClient *http.Client
	// CacheSize bounds the verified-token cache (DefaultCacheSize when 0,
	// no caching when negative).
	CacheSize int
	// MinRefreshInterval is the minimum time between key set fetches of one
	// issuer (DefaultMinRefreshInterval when 0).
	MinRefreshInterval time.Duration
	// Logger receives diagnostics (never tokens); default: discard.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// LiveAudience, when set, accepts besides an issuer's Audiences any
	// "aud" it reports as the protected resource of a live environment (a
	// preview). Such a token's Principal has LiveAudienceOnly set: the
	// caller must check it is presented at that very environment.
	LiveAudience func(aud string) bool
}

// Principal is the verified identity behind a token. Treat it as read-only.
type Principal struct {
	// Issuer, Subject, Email and Name come from iss, sub, email and name.
	Issuer, Subject, Email, Name string
	// Roles come from IssuerConfig.RolesClaim.
	Roles []string
	// Claims holds every claim of the token.
	Claims map[string]any
	// Agent is the acting agent: act.sub, else the agent claim; may be empty.
	Agent string
	// Delegation is set for tokens of a delegation issuer and nil otherwise.
	Delegation *Delegation
	// TokenID is the "jti" claim, if any.
	TokenID string
	// ExpiresAt is the token's "exp".
	ExpiresAt time.Time
	// IssuedAt is the token's "iat"; zero when it has none.
	IssuedAt time.Time
	// Audiences are the token's "aud" values.
	Audiences []string
	// LiveAudienceOnly is true when "aud" names none of the issuer's
	// configured audiences and only Config.LiveAudience accepted it (a
	// token for a preview environment, not for production).
	LiveAudienceOnly bool
}

// Delegation describes a delegation grant carried by a gateway-issued token.
type Delegation struct {
	// ID is the grant's token id (jti).
	ID string
	// Scopes are the space-separated entries of the "scope" claim.
	Scopes []string
	// ExpiresAt is when the grant ends.
	ExpiresAt time.Time
	// Actors are prior actors from nested "act" claims, nearest first; the
	// current actor is Principal.Agent.
	Actors []string
}

// issuer is the verification state of one trusted issuer.
type issuer struct {
	cfg      IssuerConfig
	roles    string
	verifier *oidc.IDTokenVerifier
	remote   *remoteKeySet // nil with IssuerConfig.KeySet
}

// Authenticator verifies bearer tokens. It is safe for concurrent use.
type Authenticator struct {
	issuers map[string]*issuer
	order   []string
	cache   *cache
	client  *http.Client
	log     *slog.Logger
	now     func() time.Time
	live    func(string) bool
}

// New validates cfg and returns an Authenticator. It does no network work:
// discovery and keys are fetched on first use (or by Ready).
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	_ = ctx // reserved: construction does no I/O.
	var errs []error
	if len(cfg.Issuers) == 0 {
		errs = append(errs, errors.New("no issuers configured"))
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.MinRefreshInterval < 0 {
		errs = append(errs, errors.New("min refresh interval must not be negative"))
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{
		issuers: make(map[string]*issuer, len(cfg.Issuers)),
		cache:   newCache(cfg.CacheSize),
		client:  cfg.HTTPClient,
		log:     cfg.Logger.With("component", "authn"),
		now:     cfg.Now,
		live:    cfg.LiveAudience,
	}
	for n, ic := range cfg.Issuers {
		if err := validateIssuer(ic); err != nil {
			errs = append(errs, fmt.Errorf("issuer %d: %w", n, err))
			continue
		}
		if _, dup := a.issuers[ic.Issuer]; dup {
			errs = append(errs, fmt.Errorf("issuer %d: duplicate issuer %q", n, ic.Issuer))
			continue
		}
		ic.Audiences = slices.Clone(ic.Audiences)
		is := &issuer{cfg: ic, roles: ic.RolesClaim}
		if is.roles == "" {
			is.roles = DefaultRolesClaim
		}
		ks := ic.KeySet
		if ks == nil {
			is.remote = newRemoteKeySet(ic.Issuer, cfg.HTTPClient, cfg.MinRefreshInterval, cfg.Now,
				cfg.Logger.With("component", "authn", "issuer", ic.Issuer))
			ks = is.remote
		}
		is.verifier = oidc.NewVerifier(ic.Issuer, ks, &oidc.Config{
			SkipClientIDCheck:    true, // several audiences: checked in Authenticate
			SkipExpiryCheck:      true, // exp/nbf/iat: checked in Authenticate with Now and Leeway
			SupportedSigningAlgs: SupportedAlgorithms(),
			Now:                  cfg.Now,
		})
		a.issuers[ic.Issuer] = is
		a.order = append(a.order, ic.Issuer)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("authn config: %w", err)
	}
	return a, nil
}

func validateIssuer(ic IssuerConfig) error {
	var errs []error
	if ic.Issuer == "" {
		errs = append(errs, errors.New("issuer is empty"))
	} else if ic.KeySet == nil && !strings.HasPrefix(ic.Issuer, "https://") && !strings.HasPrefix(ic.Issuer, "http://") {
		errs = append(errs, fmt.Errorf("issuer %q is not an http(s) url", ic.Issuer))
	}
	if len(ic.Audiences) == 0 {
		errs = append(errs, errors.New("no audiences"))
	}
	if slices.Contains(ic.Audiences, "") {
		errs = append(errs, errors.New("empty audience"))
	}
	return errors.Join(errs...)
}

// Issuers returns the trusted issuer URLs in configuration order.
func (a *Authenticator) Issuers() []string { return slices.Clone(a.order) }

// Ready reports whether every issuer's keys are cached or can be fetched now.
// It may trigger a fetch (respecting the backoff); the error wraps
// ErrUnavailable and names the failing issuers.
func (a *Authenticator) Ready(ctx context.Context) error {
	var errs []error
	for _, name := range a.order {
		is := a.issuers[name]
		if is.remote == nil {
			continue
		}
		if err := is.remote.ensure(ctx); err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// invalid returns ErrInvalidToken with a reason safe to show to the client.
func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// Authenticate verifies raw (the bearer token, without "Bearer ") and returns
// its Principal. Errors wrap ErrInvalidToken or ErrUnavailable. The returned
// Principal may be shared with other callers: do not modify it.
func (a *Authenticator) Authenticate(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" {
		return nil, invalid("empty token")
	}
	if len(raw) > MaxTokenSize {
		return nil, invalid("token too large")
	}
	now := a.now()
	key := cacheKey(raw)
	if p, ok := a.cache.get(key, now); ok {
		return p, nil
	}
	iss, err := peek(raw)
	if err != nil {
		return nil, err
	}
	is, ok := a.issuers[iss]
	if !ok {
		return nil, invalid("untrusted issuer")
	}
	rep := &fetchReport{}
	vctx := oidc.ClientContext(context.WithValue(ctx, fetchReportKey{}, rep), a.client)
	tok, err := is.verifier.Verify(vctx, raw)
	if err != nil {
		if rep.err != nil {
			return nil, rep.err
		}
		a.log.DebugContext(ctx, "token verification failed", "issuer", iss, "error", err)
		if strings.HasPrefix(err.Error(), "oidc: failed to unmarshal claims") {
			return nil, invalid("malformed claims")
		}
		return nil, invalid("signature verification failed")
	}
	claims := map[string]any{}
	if err := tok.Claims(&claims); err != nil {
		return nil, invalid("malformed claims")
	}
	p, err := is.principal(claims, now, a.live)
	if err != nil {
		return nil, err
	}
	a.cache.put(key, p, now)
	return p, nil
}

// peek checks the token's shape and header without verifying it and returns
// its unverified issuer.
func peek(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", invalid("malformed token")
	}
	var hdr struct {
		Alg  string           `json:"alg"`
		Crit *json.RawMessage `json:"crit"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return "", invalid("malformed token header")
	}
	if hdr.Crit != nil {
		return "", invalid("critical header parameters are not supported")
	}
	if !slices.Contains(supportedAlgs, hdr.Alg) {
		return "", invalid("unsupported signature algorithm")
	}
	var body struct {
		Iss string `json:"iss"`
	}
	if err := decodeSegment(parts[1], &body); err != nil {
		return "", invalid("malformed token payload")
	}
	if body.Iss == "" {
		return "", invalid("missing issuer")
	}
	if parts[2] == "" {
		return "", invalid("missing signature")
	}
	return body.Iss, nil
}
