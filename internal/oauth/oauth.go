// Package oauth makes the gateway the OAuth 2.1 authorization server that
// copilots (Claude Desktop, VS Code, Cursor…) discover and connect to.
//
// A copilot finds the gateway's metadata (RFC 9728 → RFC 8414), registers
// (RFC 7591 dynamic registration, or a Client ID Metadata Document), and
// sends the human to /oauth/authorize. The human signs in at the company
// identity provider (OpenID Connect, authorization code + PKCE + nonce, as a
// relying party), then approves this agent, these tools, for this long on a
// consent page. The copilot redeems the single-use code (PKCE S256) for a
// delegation token of the gateway (sub = the human, act.sub = the client,
// scope = what was approved) and a refresh token that rotates on every use;
// reusing an old refresh token revokes the whole grant. The human sees and
// revokes every grant on the "my agents" page.
//
// Every piece of state (clients, pending requests, sessions, codes, grants,
// refresh tokens) lives in the shared store with a TTL, so any replica
// serves any step.
package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agentharness/harness/delegation"
)

// KV is the shared short-lived state (internal/store implements it).
type KV interface {
	Put(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Take(ctx context.Context, key string) ([]byte, bool, error)
	Delete(ctx context.Context, key string) error
}

// Revoker revokes access-token ids (jti) on every replica.
type Revoker interface {
	Revoke(ctx context.Context, id string, until time.Time) error
}

// Minter issues the access tokens: delegation tokens of the gateway
// (*delegation.Exchange implements it).
type Minter interface {
	Issue(ctx context.Context, subject *delegation.Subject, agent string, scopes []string, ttl time.Duration) (string, delegation.Issued, error)
}

// Human is a person signed in at the login issuer.
type Human struct {
	Issuer  string         `json:"iss"`
	Subject string         `json:"sub"`
	Email   string         `json:"email,omitempty"`
	Name    string         `json:"name,omitempty"`
	Roles   []string       `json:"roles,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
	// NoRolesClaim: the ID token had no roles claim at all (as opposed
	// to an empty one): the consent page says so.
	NoRolesClaim bool `json:"no_roles_claim,omitempty"`
}

// Display is the most readable name of h.
func (h Human) Display() string {
	switch {
	case h.Name != "":
		return h.Name
	case h.Email != "":
		return h.Email
	}
	return h.Subject
}

// ToolInfo describes a tool on the consent and "my agents" pages.
type ToolInfo struct {
	Name        string
	Description string
	Tags        []string
	ReadOnly    bool
}

// ToolLister returns the tools that agent, acting for h with scopes, would
// see: those the scopes name and the policy lets h list.
type ToolLister func(ctx context.Context, h Human, agent string, scopes []string) ([]ToolInfo, error)

// Login is the identity provider humans sign in at.
type Login struct {
	// Issuer is the OIDC issuer URL (one of auth.issuers).
	Issuer string
	// ClientID and ClientSecret are the gateway's credentials there
	// (ClientSecret empty for a public client). The secret is never logged.
	ClientID, ClientSecret string
	// RolesClaim names the claim (dotted path allowed) holding the roles in
	// the ID token; default "roles".
	RolesClaim string
	// Scopes requested at sign-in; default openid, profile, email.
	Scopes []string
}

// Options configures [New]. Issuer, Resource, KV, Revocations, Minter and
// Login are required.
type Options struct {
	// Issuer is the gateway's public_url: the authorization server's
	// issuer identifier and the base of every endpoint.
	Issuer string
	// Resource is public_url + "/mcp", production's resource.
	Resource string
	// Resources, when set, lets clients ask for tokens for a live preview
	// environment (resource=public_url/env/{name}/mcp); nil: production's
	// Resource only.
	Resources delegation.Resources
	KV        KV
	// Clients holds dynamically registered clients until their first
	// completed sign-in (then they move to KV for clientTTL); Pending holds
	// pending authorization requests, sign-in state and the metadata
	// document cache. Anyone can create both without signing in: give each
	// a bounded namespace of its own (store.Bounder) so that a flood can
	// never crowd out sessions, grants or revocations. Default: KV.
	Clients, Pending KV
	// Revocations revokes access tokens when a grant ends.
	Revocations Revoker
	Minter      Minter
	Login       Login
	// Tools lists what a grant would give; nil shows the scopes only.
	Tools ToolLister
	// AccessTTL (default 1h) and RefreshTTL (default 24h, counted from the
	// consent: the life of the grant).
	AccessTTL, RefreshTTL time.Duration
	// TokenExchange serves the other grant types at /oauth/token (RFC 8693).
	TokenExchange http.Handler
	// Revoke serves /oauth/revoke for anything but refresh tokens.
	Revoke http.Handler
	// HTTPClient calls the login issuer; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// AllowLoopbackHTTPClientIDs accepts Client ID Metadata Documents at
	// http:// URLs on loopback (and lets their fetch reach loopback). FOR
	// DEVELOPMENT AND TESTS: the gateway turns it on only when its own
	// public_url is plain http on loopback.
	AllowLoopbackHTTPClientIDs bool
	// StateKey (32 bytes) encrypts the IdP refresh tokens kept with the
	// grants. Nil: a key made by New, logged as ephemeral (grants sealed
	// under it sign in again after a restart or on another replica).
	StateKey []byte
	// Recheck (default 15m) is how old the last check of the human at the
	// login issuer may be when a copilot refreshes; older, the gateway
	// refreshes at the issuer first. It caps the life of access tokens too.
	Recheck time.Duration
	// RequestID returns the id of the request in ctx, shown on error pages.
	RequestID func(context.Context) string
	Logger    *slog.Logger
	// OnRevoke, if set, is told of every grant revoked ("My agents",
	// refresh-token or code reuse) with the reason (audit); must not block.
	OnRevoke func(ctx context.Context, h Human, clientID, grantID, reason string)
	Now      func() time.Time
	// Approvals serves the approval pages /approvals and /approvals/{id}
	// when set.
	Approvals Approvals
}

// Lifetimes of the short-lived state.
const (
	codeTTL    = 60 * time.Second
	requestTTL = 10 * time.Minute
	loginTTL   = 10 * time.Minute
	sessionTTL = 8 * time.Hour
	clientTTL  = 30 * 24 * time.Hour
	// newClientTTL is the life of a registered client that no human has
	// completed a sign-in with yet.
	newClientTTL   = 24 * time.Hour
	cimdCacheTTL   = 5 * time.Minute
	usedMarkerTTL  = 10 * time.Minute
	maxFormBytes   = 64 << 10
	maxClientBytes = 64 << 10
	// maxRegistrationBytes bounds an RFC 7591 registration request.
	maxRegistrationBytes = 8 << 10
	// maxRedirectURIs and maxClientName bound a client's metadata.
	maxRedirectURIs = 10
	maxClientName   = 200
)

// Server is the authorization server.
type Server struct {
	o         Options
	log       *slog.Logger
	https     bool
	cimd      *http.Client
	provMu    sync.Mutex
	provider  *provider
	indexMu   sync.Mutex
	issuerURL *url.URL
	sealer    *sealer
}

// New checks o and returns the server; it does no network work (the login
// issuer's discovery happens at the first sign-in, and is retried).
func New(o Options) (*Server, error) {
	switch {
	case o.Issuer == "" || o.Resource == "":
		return nil, errors.New("oauth: issuer and resource are required")
	case o.KV == nil || o.Revocations == nil || o.Minter == nil:
		return nil, errors.New("oauth: kv, revocations and minter are required")
	case o.Login.Issuer == "" || o.Login.ClientID == "":
		return nil, errors.New("oauth: login issuer and client id are required")
	}
	u, err := url.Parse(o.Issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("oauth: issuer %q is not a URL", o.Issuer)
	}
	o.Issuer = strings.TrimSuffix(o.Issuer, "/")
	if o.AccessTTL <= 0 {
		o.AccessTTL = time.Hour
	}
	if o.RefreshTTL <= 0 {
		o.RefreshTTL = 24 * time.Hour
	}
	if o.Login.RolesClaim == "" {
		o.Login.RolesClaim = "roles"
	}
	if len(o.Login.Scopes) == 0 {
		o.Login.Scopes = []string{"openid", "profile", "email"}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Clients == nil {
		o.Clients = o.KV
	}
	if o.Pending == nil {
		o.Pending = o.KV
	}
	if o.Recheck <= 0 {
		o.Recheck = 15 * time.Minute
	}
	key := o.StateKey
	if key == nil {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("oauth: making a state key: %w", err)
		}
		o.Logger.Warn("oauth: no oauth.state_key: the IdP refresh tokens kept with grants are sealed with a key made at start; after a restart, or on another replica, those grants sign in again at their next recheck (set oauth.state_key: a base64 32-byte ${VAR})")
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, log: o.Logger, https: u.Scheme == "https", issuerURL: u, sealer: sl}
	s.cimd = newMetadataClient(o.AllowLoopbackHTTPClientIDs, nil)
	return s, nil
}

// Routes are the endpoints to mount (Go 1.22 patterns). POST /oauth/token
// and POST /oauth/revoke replace the token-exchange handlers: they pass
// what is not theirs on.
func (s *Server) Routes() map[string]http.Handler {
	routes := map[string]http.Handler{
		"GET /oauth/authorize":          http.HandlerFunc(s.authorize),
		"GET /oauth/callback":           http.HandlerFunc(s.callback),
		"GET /oauth/consent":            http.HandlerFunc(s.consentPage),
		"POST /oauth/consent":           http.HandlerFunc(s.consentDecision),
		"GET /oauth/agents":             http.HandlerFunc(s.agentsPage),
		"POST /oauth/agents/revoke":     http.HandlerFunc(s.agentsRevoke),
		"POST /oauth/logout":            http.HandlerFunc(s.logout),
		"GET /oauth/assets/harness.css": http.HandlerFunc(serveCSS),
	}
	if s.o.Approvals != nil {
		routes["GET /approvals"] = http.HandlerFunc(s.approvalsInbox)
		routes["GET /approvals/{id}"] = http.HandlerFunc(s.approvalPage)
		routes["POST /approvals/{id}"] = http.HandlerFunc(s.approvalDecision)
	}
	// The JSON endpoints carry no cookie and are called by browser-based
	// clients too (CORS, RFC 8414 §3, RFC 7591): any origin may call them.
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /.well-known/oauth-authorization-server": s.metadata,
		"POST /oauth/register":                        s.register,
		"POST /oauth/token":                           s.token,
		"POST /oauth/revoke":                          s.revoke,
	} {
		_, path, _ := strings.Cut(pattern, " ")
		routes[pattern] = cors(h)
		routes["OPTIONS "+path] = cors(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
	}
	return routes
}

func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		hd.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Mcp-Protocol-Version")
		hd.Set("Access-Control-Max-Age", "600")
		h.ServeHTTP(w, r)
	})
}

// Scopes the metadata advertises.
var scopesSupported = []string{"tool:*"}

func (s *Server) metadata(w http.ResponseWriter, _ *http.Request) {
	iss := s.o.Issuer
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + "/oauth/authorize",
		"token_endpoint":                                 iss + "/oauth/token",
		"registration_endpoint":                          iss + "/oauth/register",
		"revocation_endpoint":                            iss + "/oauth/revoke",
		"jwks_uri":                                       iss + "/.well-known/jwks.json",
		"scopes_supported":                               scopesSupported,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token", delegation.GrantTypeTokenExchange},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"revocation_endpoint_auth_methods_supported":     []string{"none"},
		"code_challenge_methods_supported":               []string{"S256"},
		"client_id_metadata_document_supported":          true,
		"authorization_response_iss_parameter_supported": true,
		"service_documentation":                          "https://github.com/agentharness/harness/blob/main/docs/oauth.md",
	})
}

// --- small helpers ---------------------------------------------------------

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// kvFor is where key lives: state created without signing in goes to its
// bounded namespace (registered clients to Clients until promoted).
func (s *Server) kvFor(key string) KV {
	switch kind, _, _ := strings.Cut(strings.TrimPrefix(key, "oauth:"), ":"); kind {
	case "req", "login", "cimd":
		return s.o.Pending
	case "client":
		return s.o.Clients
	}
	return s.o.KV
}

func (s *Server) putJSON(ctx context.Context, key string, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.kvFor(key).Put(ctx, key, b, ttl)
}

func (s *Server) getJSON(ctx context.Context, key string, v any, take bool) (bool, error) {
	return s.getJSONIn(ctx, s.kvFor(key), key, v, take)
}

func (s *Server) getJSONIn(ctx context.Context, kv KV, key string, v any, take bool) (bool, error) {
	var (
		b   []byte
		ok  bool
		err error
	)
	if take {
		b, ok, err = kv.Take(ctx, key)
	} else {
		b, ok, err = kv.Get(ctx, key)
	}
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("oauth: stored %s: %w", strings.SplitN(key, ":", 3)[1], err)
	}
	return true, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) now() time.Time { return s.o.Now() }

// accessTTL is the life of an access token: oauth.access_ttl, capped by
// the recheck interval (but not below a minute, which would only make
// copilots refresh in a loop) so that a change at the IdP reaches the
// copilot within Recheck: it must refresh to keep going.
func (s *Server) accessTTL() time.Duration {
	return min(s.o.AccessTTL, max(s.o.Recheck, minAccessTTL))
}

// minAccessTTL is the floor of the recheck cap on access tokens.
const minAccessTTL = time.Minute

func (s *Server) requestID(ctx context.Context) string {
	if s.o.RequestID == nil {
		return ""
	}
	return s.o.RequestID(ctx)
}
