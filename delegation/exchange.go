package delegation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RFC 8693 identifiers.
const (
	// GrantTypeTokenExchange is the RFC 8693 grant_type.
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccessToken is the token type of access tokens and of the tokens issued here.
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	// TokenTypeJWT is the token type of generic JWTs.
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
	// TokenTypeIDToken is the token type of OpenID Connect ID tokens.
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
)

const (
	defaultMaxTTL = 15 * time.Minute
	// maxFormBytes caps the body of /oauth/token and /oauth/revoke.
	maxFormBytes = 64 << 10
	// maxChain bounds how many times a delegation can be re-exchanged.
	maxChain = 8
	// clockLeeway tolerates small clock differences between replicas for nbf.
	clockLeeway = time.Minute
)

// Errors returned by [Exchange.VerifyDelegation].
var (
	// ErrInvalidToken: not a well-formed delegation token of this gateway.
	ErrInvalidToken = errors.New("invalid delegation token")
	// ErrTokenExpired: a delegation token of this gateway past its exp.
	ErrTokenExpired = errors.New("delegation token expired")
	// ErrRevoked: the token, or a grant it was narrowed from, was revoked.
	ErrRevoked = errors.New("delegation revoked")
	// ErrEnvironmentRetired: a token was asked for a preview environment
	// that is not live (retired, or never created).
	ErrEnvironmentRetired = errors.New("environment retired")
)

// Subject is a verified token as the gateway sees it: the human and, when
// known, the agent.
type Subject struct {
	// Issuer is the human's identity provider (for our own delegation tokens:
	// the original issuer, sub_iss).
	Issuer string
	// Subject is the human's subject identifier.
	Subject string
	// Email and Name of the human, if known.
	Email, Name string
	// Roles of the human.
	Roles []string
	// Agent is the agent the token names (agent claim, or act.sub for
	// delegation tokens); may be empty.
	Agent string
	// Claims holds every claim of the token; "exp" and "may_act" are read.
	Claims map[string]any
	// Delegation is non-nil when the token is one of our delegation tokens.
	Delegation *Grant
	// Resource is the protected resource of the preview environment the
	// token is confined to ("" for production): a verified token issued
	// only for a preview has it set, and a token issued for a Subject with
	// it set has that audience.
	Resource string
}

// Resources tells which preview environments are live: Live reports
// whether resource is the protected resource of one
// (public_url/env/{name}/mcp). *server.Server implements it.
type Resources interface {
	Live(resource string) bool
}

// Grant describes a delegation token of this gateway.
type Grant struct {
	// ID is the token's jti.
	ID string
	// Scopes are the granted "tool:<glob>" scopes.
	Scopes []string
	// Actors is the whole act chain, outermost (current agent) first.
	Actors []string
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
	// Chain holds the IDs of the grants this one was narrowed from, root
	// first; revoking any of them revokes this one. May be empty.
	Chain []string
}

// TokenVerifier verifies subject and actor tokens: tokens of the trusted
// issuers and our own delegation tokens (including revocation).
type TokenVerifier interface {
	VerifyToken(ctx context.Context, raw string) (*Subject, error)
}

// RevocationStore records revoked delegation token IDs, shared by replicas.
type RevocationStore interface {
	// Revoke records id as revoked; the record may be dropped after until.
	Revoke(ctx context.Context, id string, until time.Time) error
	// IsRevoked reports whether id was revoked.
	IsRevoked(ctx context.Context, id string) (bool, error)
}

// MemoryRevocations is an in-process [RevocationStore] for one replica and tests.
type MemoryRevocations struct {
	mu  sync.Mutex
	ids map[string]time.Time
	now func() time.Time
}

// NewMemoryRevocations returns an empty in-process revocation store.
func NewMemoryRevocations() *MemoryRevocations {
	return &MemoryRevocations{ids: map[string]time.Time{}, now: time.Now}
}

// Revoke implements [RevocationStore].
func (m *MemoryRevocations) Revoke(_ context.Context, id string, until time.Time) error {
	if id == "" {
		return errors.New("revoke: empty id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.ids[id]; !ok || until.After(old) {
		m.ids[id] = until
	}
	return nil
}

// IsRevoked implements [RevocationStore]. Records past their until are forgotten.
func (m *MemoryRevocations) IsRevoked(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.ids[id]
	if !ok {
		return false, nil
	}
	if !until.After(m.now()) {
		delete(m.ids, id)
		return false, nil
	}
	return true, nil
}

// Issued describes a delegation token just issued, for the audit hook.
type Issued struct {
	// ID is the new token's jti; ParentID the jti of the delegation token
	// it was narrowed from, if any.
	ID, ParentID string
	// Subject and SubjectIssuer identify the human; Email and Name name
	// them when known.
	Subject, SubjectIssuer string
	Email, Name            string
	// Agent is the actor; Actors the prior actors, outermost first.
	Agent  string
	Actors []string
	Scopes []string
	// IssuedAt and ExpiresAt bound the token's life.
	IssuedAt, ExpiresAt time.Time
	// Resource is the preview environment's resource the token is for;
	// "" for production.
	Resource string
}

// Exchange is the gateway's RFC 8693 token-exchange and RFC 7009 revocation
// service. Keys, Verifier, Revocations, Issuer and Audience are required.
type Exchange struct {
	// Keys signs and verifies the delegation tokens.
	Keys *Keys
	// Verifier verifies subject and actor tokens.
	Verifier TokenVerifier
	// Revocations records revoked tokens.
	Revocations RevocationStore
	// Issuer is the gateway's public_url (iss of issued tokens).
	Issuer string
	// Audience is what /mcp accepts, public_url + "/mcp" (aud of issued tokens).
	Audience string
	// Resources, when set, lets tokens be issued for live preview
	// environments (resource= of one); nil: for production only.
	Resources Resources
	// MaxTTL is the longest life of a delegation token; default 15m. It is
	// also bounded by the Keys' MaxTokenTTL.
	MaxTTL time.Duration
	// Logger; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnIssue, if set, is called for each token before it is handed out
	// (audit); an error withholds the token (no grant goes unrecorded).
	OnIssue func(ctx context.Context, iss Issued) error
	// OnSecurity, if set, is told of revocations and of exchanges refused
	// for widening a grant (audit); it must not block.
	OnSecurity func(ctx context.Context, ev SecurityEvent)
}

// Claims are the verified claims of a delegation token.
type Claims struct {
	// Subject, Email, Name and Roles describe the human.
	Subject, Email, Name string
	Roles                []string
	// SubjectIssuer is the human's identity provider (sub_iss).
	SubjectIssuer string
	// Agent is the current actor (act.sub).
	Agent string
	// Actors are the prior actors (nested act), outermost first, excluding Agent.
	Actors []string
	// Scopes are the granted "tool:<glob>" scopes.
	Scopes []string
	// ID is the jti.
	ID string
	// Chain holds the IDs of the grants this one was narrowed from, root first.
	Chain []string
	// ExpiresAt is the exp.
	ExpiresAt time.Time
	// Claims holds every claim of the token.
	Claims map[string]any
}

// Grant returns the token as a [Grant] (Actors = Agent then prior actors).
func (c *Claims) Grant() *Grant {
	return &Grant{
		ID:        c.ID,
		Scopes:    append([]string(nil), c.Scopes...),
		Actors:    append([]string{c.Agent}, c.Actors...),
		ExpiresAt: c.ExpiresAt,
		Chain:     append([]string(nil), c.Chain...),
	}
}

// AsSubject returns the token as a [Subject] for a [TokenVerifier]: the human
// with Issuer = SubjectIssuer, Agent, and Delegation = c.Grant().
func (c *Claims) AsSubject() *Subject {
	return &Subject{
		Issuer:     c.SubjectIssuer,
		Subject:    c.Subject,
		Email:      c.Email,
		Name:       c.Name,
		Roles:      append([]string(nil), c.Roles...),
		Agent:      c.Agent,
		Claims:     c.Claims,
		Delegation: c.Grant(),
	}
}

func (e *Exchange) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Exchange) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Exchange) maxTTL() time.Duration {
	ttl := e.MaxTTL
	if ttl <= 0 {
		ttl = defaultMaxTTL
	}
	if e.Keys != nil && e.Keys.opts.MaxTokenTTL < ttl {
		ttl = e.Keys.opts.MaxTokenTTL
	}
	return ttl
}

func (e *Exchange) check() error {
	switch {
	case e.Keys == nil:
		return errors.New("exchange: nil keys")
	case e.Verifier == nil:
		return errors.New("exchange: nil verifier")
	case e.Revocations == nil:
		return errors.New("exchange: nil revocation store")
	case e.Issuer == "" || e.Audience == "":
		return errors.New("exchange: empty issuer or audience")
	}
	return nil
}

// oauthError is an RFC 6749 §5.2 error: Code and Description go to the
// client, Err (the cause) only to the log.
type oauthError struct {
	Status      int
	Code        string
	Description string
	Err         error
}

func (e *oauthError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Description + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Description
}

func (e *oauthError) Unwrap() error { return e.Err }

func oerr(status int, code, desc string, cause error) *oauthError {
	return &oauthError{Status: status, Code: code, Description: desc, Err: cause}
}

func badRequest(code, desc string) *oauthError { return oerr(http.StatusBadRequest, code, desc, nil) }

func (e *Exchange) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		oe = oerr(http.StatusInternalServerError, "server_error", "internal error", err)
	}
	level := slog.LevelInfo
	if oe.Status >= 500 {
		level = slog.LevelError
	}
	// The cause never holds a token: verifier errors are logged, tokens are not.
	e.log().Log(r.Context(), level, "oauth request refused", "path", r.URL.Path,
		"error", oe.Code, "description", oe.Description, "cause", oe.Err)
	if oe.Status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	writeJSON(w, oe.Status, map[string]string{"error": oe.Code, "error_description": oe.Description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readForm enforces POST, a form body and the size cap, and returns the body
// parameters (query parameters are ignored).
func readForm(w http.ResponseWriter, r *http.Request, single ...string) (url.Values, error) {
	if r.Method != http.MethodPost {
		return nil, oerr(http.StatusMethodNotAllowed, "invalid_request", "use POST", nil)
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, badRequest("invalid_request", "body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, oerr(http.StatusRequestEntityTooLarge, "invalid_request", "request body too large", nil)
		}
		return nil, oerr(http.StatusBadRequest, "invalid_request", "malformed form body", err)
	}
	for _, k := range single {
		if len(r.PostForm[k]) > 1 {
			return nil, badRequest("invalid_request", "parameter "+k+" repeated")
		}
	}
	return r.PostForm, nil
}

func acceptedInputType(t string) bool {
	return t == TokenTypeAccessToken || t == TokenTypeJWT || t == TokenTypeIDToken
}

func (e *Exchange) acceptsTarget(t string) bool {
	t = strings.TrimSuffix(t, "/")
	return t != "" && (t == strings.TrimSuffix(e.Audience, "/") || t == strings.TrimSuffix(e.Issuer, "/"))
}

type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
}

// TokenHandler serves POST /oauth/token (form body, at most 64 KiB) for the
// RFC 8693 token-exchange grant:
//
//   - subject_token + subject_token_type (access_token, jwt or id_token): the
//     human's token, or one of our delegation tokens to narrow it;
//   - actor_token + actor_token_type (optional): the agent's own token, whose
//     sub names the agent; otherwise the subject token's agent claim does;
//   - scope (required): space-separated "tool:<glob>"; on re-exchange every
//     requested scope must be covered by the existing grant;
//   - resource / audience (optional, repeatable): must be Audience or Issuer;
//   - requested_token_type (optional): access_token or jwt;
//   - expires_in (optional, non-standard): a shorter life in seconds.
//
// A may_act claim in the subject token must name the actor; the issued
// token carries it, so it binds every later exchange too. The issued token
// lives at most MaxTTL and never past the subject token (or the grant it
// narrows). Errors are RFC 6749 §5.2 JSON; every answer is Cache-Control:
// no-store.
func (e *Exchange) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		resp, err := e.exchange(w, r)
		if err != nil {
			e.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

var singleTokenParams = []string{
	"grant_type", "subject_token", "subject_token_type", "actor_token",
	"actor_token_type", "scope", "requested_token_type", "expires_in",
}

func (e *Exchange) exchange(w http.ResponseWriter, r *http.Request) (*tokenResponse, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	form, err := readForm(w, r, singleTokenParams...)
	if err != nil {
		return nil, err
	}
	switch gt := form.Get("grant_type"); {
	case gt == "":
		return nil, badRequest("invalid_request", "missing grant_type")
	case gt != GrantTypeTokenExchange:
		return nil, badRequest("unsupported_grant_type", "only token exchange is supported")
	}
	subjectTok := form.Get("subject_token")
	if subjectTok == "" {
		return nil, badRequest("invalid_request", "missing subject_token")
	}
	if !acceptedInputType(form.Get("subject_token_type")) {
		return nil, badRequest("invalid_request", "subject_token_type missing or unsupported")
	}
	actorTok, actorType := form.Get("actor_token"), form.Get("actor_token_type")
	switch {
	case actorTok != "" && !acceptedInputType(actorType):
		return nil, badRequest("invalid_request", "actor_token_type missing or unsupported")
	case actorTok == "" && actorType != "":
		return nil, badRequest("invalid_request", "actor_token_type without actor_token")
	}
	if rtt := form.Get("requested_token_type"); rtt != "" && rtt != TokenTypeAccessToken && rtt != TokenTypeJWT {
		return nil, badRequest("invalid_request", "requested_token_type unsupported")
	}
	scopes, err := ParseScope(form.Get("scope"))
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_scope", err.Error(), nil)
	}
	target, named, err := e.target(append(form["resource"], form["audience"]...))
	if err != nil {
		return nil, err
	}
	var wantTTL time.Duration
	if s := form.Get("expires_in"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return nil, badRequest("invalid_request", "expires_in must be a positive integer")
		}
		wantTTL = time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}

	ctx := r.Context()
	subj, err := e.Verifier.VerifyToken(ctx, subjectTok)
	if err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "subject token is invalid, expired, revoked or untrusted", err)
	}
	if subj == nil || subj.Subject == "" || subj.Issuer == "" {
		return nil, badRequest("invalid_grant", "subject token names no subject")
	}
	aud, err := e.audienceFor(target, named, subj.Resource)
	if err != nil {
		return nil, err
	}
	agent, agentIss := subj.Agent, subj.Issuer
	if actorTok != "" {
		act, err := e.Verifier.VerifyToken(ctx, actorTok)
		if err != nil {
			return nil, oerr(http.StatusBadRequest, "invalid_grant", "actor token is invalid, expired or untrusted", err)
		}
		if act == nil || act.Subject == "" {
			return nil, badRequest("invalid_grant", "actor token names no subject")
		}
		if act.Delegation != nil {
			return nil, badRequest("invalid_grant", "actor token must be the agent's own token")
		}
		agent, agentIss = act.Subject, act.Issuer
	}
	if agent == "" {
		return nil, badRequest("invalid_request", "no actor: send actor_token or a subject token naming the agent")
	}
	if err := checkMayAct(subj.Claims["may_act"], agent, agentIss); err != nil {
		return nil, oerr(http.StatusBadRequest, "invalid_grant", "actor is not allowed to act for the subject", err)
	}

	now := e.now()
	limit, hasExp := numericDate(subj.Claims["exp"])
	chain := []string{agent}
	var parent string
	var ancestry []string
	if g := subj.Delegation; g != nil {
		if g.ID == "" || g.ExpiresAt.IsZero() || len(g.Actors) == 0 {
			return nil, badRequest("invalid_grant", "subject delegation is incomplete")
		}
		parent = g.ID
		ancestry = append(append([]string(nil), g.Chain...), g.ID)
		if len(ancestry) > maxChain {
			return nil, badRequest("invalid_grant", "delegation re-exchanged too many times")
		}
		for _, id := range ancestry {
			revoked, err := e.Revocations.IsRevoked(ctx, id)
			if err != nil {
				return nil, oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "revocation store unavailable", err)
			}
			if revoked {
				return nil, badRequest("invalid_grant", "subject token is invalid, expired, revoked or untrusted")
			}
		}
		if s, ok := ScopesCover(g.Scopes, scopes); !ok {
			e.security(ctx, SecurityEvent{Event: EventExchangeRefused, Reason: fmt.Sprintf("scope %q exceeds the delegated grant", s),
				Subject: subj.Subject, Agent: agent, ID: g.ID})
			return nil, badRequest("invalid_scope", fmt.Sprintf("scope %q exceeds the delegated grant", s))
		}
		if g.Actors[0] == agent {
			chain = append([]string(nil), g.Actors...)
		} else {
			chain = append(chain, g.Actors...)
		}
		if !hasExp || g.ExpiresAt.Before(limit) {
			limit, hasExp = g.ExpiresAt, true
		}
	}
	if !hasExp {
		return nil, badRequest("invalid_grant", "subject token has no expiry")
	}
	if len(chain) > maxActors {
		return nil, badRequest("invalid_grant", "actor chain too long")
	}
	ttl := e.maxTTL()
	if wantTTL > 0 && wantTTL < ttl {
		ttl = wantTTL
	}
	iat := now.Unix()
	exp := iat + int64(ttl/time.Second)
	if lim := limit.Unix(); lim < exp { // floor: never past the subject's exp
		exp = lim
	}
	if exp-iat < 1 {
		return nil, badRequest("invalid_grant", "subject token is expired or about to expire")
	}

	act, err := actClaim(chain)
	if err != nil {
		return nil, badRequest("invalid_grant", "bad actor chain")
	}
	jti, err := newID()
	if err != nil {
		return nil, err
	}
	scope := strings.Join(scopes, " ")
	claims := map[string]any{
		"iss":       e.Issuer,
		"aud":       aud,
		"sub":       subj.Subject,
		"sub_iss":   subj.Issuer,
		"act":       act,
		"client_id": agent,
		"scope":     scope,
		"jti":       jti,
		"iat":       iat,
		"nbf":       iat,
		"exp":       exp,
	}
	// The human's other claims (a tenant, a department) travel along, so the
	// policy sees the same human through the delegation: a narrower grant
	// must never widen what the policy confines by claims.
	copyClaims(claims, subj.Claims)
	if subj.Email != "" {
		claims["email"] = subj.Email
	}
	if subj.Name != "" {
		claims["name"] = subj.Name
	}
	if len(subj.Roles) > 0 {
		claims["roles"] = append([]string(nil), subj.Roles...)
	}
	if len(ancestry) > 0 {
		claims["delegation_chain"] = ancestry
	}
	carryMayAct(claims, subj.Claims)
	tok, err := e.Keys.sign(ctx, typAccessToken, claims)
	if err != nil {
		return nil, fmt.Errorf("issue delegation token: %w", err)
	}
	e.log().InfoContext(ctx, "delegation issued", "id", jti, "parent", parent,
		"subject", subj.Subject, "email", subj.Email, "name", subj.Name, "subject_issuer", subj.Issuer, "agent", agent,
		"scope", scope, "expires_in", exp-iat, "grant", "token-exchange")
	if e.OnIssue != nil {
		if err := e.OnIssue(ctx, Issued{
			ID: jti, ParentID: parent, Subject: subj.Subject, SubjectIssuer: subj.Issuer,
			Email: subj.Email, Name: subj.Name, Agent: agent, Actors: chain[1:], Scopes: scopes,
			IssuedAt: time.Unix(iat, 0), ExpiresAt: time.Unix(exp, 0), Resource: previewOnly(aud, e.Audience),
		}); err != nil {
			return nil, oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "the grant could not be recorded", err)
		}
	}
	return &tokenResponse{
		AccessToken:     tok,
		IssuedTokenType: TokenTypeAccessToken,
		TokenType:       "Bearer",
		ExpiresIn:       exp - iat,
		Scope:           scope,
	}, nil
}

// carryMayAct copies the subject token's may_act claim, as it is, into a
// delegation token: the constraint on who may act for the human holds for
// every later exchange of that token too, where [checkMayAct] reads it
// back (a delegation made under may_act {sub: agent-42} cannot be
// re-exchanged to another agent).
func carryMayAct(dst, subject map[string]any) {
	if v, ok := subject["may_act"]; ok && v != nil {
		dst["may_act"] = v
	}
}

// checkMayAct enforces RFC 8693 §4.4: when the subject token carries may_act
// (an object or an array of objects), the actor must match one entry's sub
// (and its iss, when the entry names one).
func checkMayAct(v any, agent, agentIss string) error {
	if v == nil {
		return nil
	}
	var entries []any
	switch m := v.(type) {
	case map[string]any:
		entries = []any{m}
	case []any:
		entries = m
	default:
		return errors.New("may_act is neither an object nor an array")
	}
	for _, x := range entries {
		m, ok := x.(map[string]any)
		if !ok {
			return errors.New("may_act entry is not an object")
		}
		sub, _ := m["sub"].(string)
		if sub == "" || sub != agent {
			continue
		}
		if iss, ok := m["iss"]; ok {
			if s, _ := iss.(string); s != agentIss {
				continue
			}
		}
		return nil
	}
	return errors.New("actor not named in may_act")
}

// RevokeHandler serves POST /oauth/revoke (RFC 7009, token=...). A delegation
// token of this gateway with a valid signature (even expired) has its jti
// revoked until its exp; every replica then refuses it and every token
// narrowed from it. Any other token also gets 200, as RFC 7009 requires; a
// malformed request gets 400, a failing revocation store 503.
func (e *Exchange) RevokeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if err := e.revoke(w, r); err != nil {
			e.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

func (e *Exchange) revoke(w http.ResponseWriter, r *http.Request) error {
	if err := e.check(); err != nil {
		return err
	}
	form, err := readForm(w, r, "token", "token_type_hint")
	if err != nil {
		return err
	}
	raw := form.Get("token")
	if raw == "" {
		return badRequest("invalid_request", "missing token")
	}
	ctx := r.Context()
	c, err := e.parse(ctx, raw, true)
	if err != nil {
		e.log().DebugContext(ctx, "revocation of a token that is not ours ignored", "error", err)
		return nil
	}
	if !c.ExpiresAt.After(e.now()) {
		return nil // already dead
	}
	if err := e.Revocations.Revoke(ctx, c.ID, c.ExpiresAt); err != nil {
		return oerr(http.StatusServiceUnavailable, "temporarily_unavailable", "revocation store unavailable", err)
	}
	e.log().InfoContext(ctx, "delegation revoked", "id", c.ID, "subject", c.Subject, "agent", c.Agent)
	e.security(ctx, SecurityEvent{Event: EventRevocation, Reason: "delegation revoked (RFC 7009)", Subject: c.Subject, Agent: c.Agent, ID: c.ID})
	return nil
}

// Events of SecurityEvent.Event.
const (
	EventRevocation      = "revocation"
	EventExchangeRefused = "exchange_refused"
)

// SecurityEvent is a security-relevant outcome of the exchange the gateway
// audits: a revocation, or an exchange refused for widening a grant.
type SecurityEvent struct {
	Event   string
	Reason  string
	Subject string
	Agent   string
	// ID is the delegation concerned (jti).
	ID string
}

func (e *Exchange) security(ctx context.Context, ev SecurityEvent) {
	if e.OnSecurity != nil {
		e.OnSecurity(ctx, ev)
	}
}

// VerifyDelegation verifies a delegation token of this gateway: signature
// (any replica's key), typ at+jwt, iss = Issuer, aud ∋ Audience, exp, nbf,
// and that neither it nor a grant it was narrowed from is revoked. Errors
// wrap [ErrInvalidToken], [ErrTokenExpired] or [ErrRevoked] (or the
// revocation store's error: fail closed).
func (e *Exchange) VerifyDelegation(ctx context.Context, raw string) (*Claims, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	c, err := e.parse(ctx, raw, false)
	if err != nil {
		return nil, err
	}
	for _, id := range append(append([]string(nil), c.Chain...), c.ID) {
		revoked, err := e.Revocations.IsRevoked(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("verify delegation: revocation store: %w", err)
		}
		if revoked {
			return nil, fmt.Errorf("verify delegation: %w", ErrRevoked)
		}
	}
	return c, nil
}

// parse verifies signature and claims of one of our delegation tokens,
// accepting an expired one when allowExpired is set.
func (e *Exchange) parse(ctx context.Context, raw string, allowExpired bool) (*Claims, error) {
	payload, typ, err := e.Keys.verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if typ != typAccessToken {
		return nil, fmt.Errorf("%w: typ %q", ErrInvalidToken, typ)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, what) }
	if iss, _ := m["iss"].(string); iss != e.Issuer {
		return nil, bad("wrong issuer")
	}
	if !audContains(m["aud"], e.Audience) && !e.previewAudience(m["aud"]) {
		return nil, bad("wrong audience")
	}
	exp, ok := numericDate(m["exp"])
	if !ok {
		return nil, bad("no exp")
	}
	now := e.now()
	if !allowExpired && !now.Before(exp) {
		return nil, fmt.Errorf("verify delegation: %w", ErrTokenExpired)
	}
	if v, present := m["nbf"]; present {
		nbf, ok := numericDate(v)
		if !ok || now.Add(clockLeeway).Before(nbf) {
			return nil, bad("not valid yet")
		}
	}
	c := &Claims{ExpiresAt: exp, Claims: m}
	c.ID, _ = m["jti"].(string)
	c.Subject, _ = m["sub"].(string)
	c.SubjectIssuer, _ = m["sub_iss"].(string)
	if c.ID == "" || c.Subject == "" || c.SubjectIssuer == "" {
		return nil, bad("missing jti, sub or sub_iss")
	}
	chain, err := parseAct(m["act"])
	if err != nil || len(chain) == 0 {
		return nil, bad("bad act")
	}
	c.Agent, c.Actors = chain[0], chain[1:]
	scope, _ := m["scope"].(string)
	if c.Scopes, err = ParseScope(scope); err != nil {
		return nil, bad("bad scope")
	}
	c.Email, _ = m["email"].(string)
	c.Name, _ = m["name"].(string)
	if c.Roles, ok = stringList(m["roles"]); !ok {
		return nil, bad("bad roles")
	}
	if c.Chain, ok = stringList(m["delegation_chain"]); !ok || len(c.Chain) > maxChain {
		return nil, bad("bad delegation_chain")
	}
	return c, nil
}

func audContains(v any, want string) bool {
	return audAny(v, func(s string) bool { return s == want })
}

// audAny reports whether an "aud" claim (a string, or an array of them)
// holds a value for which f is true.
func audAny(v any, f func(string) bool) bool {
	switch a := v.(type) {
	case string:
		return f(a)
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && f(s) {
				return true
			}
		}
	}
	return false
}

// stringList reads an optional JSON array of non-empty strings.
func stringList(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	a, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(a))
	for _, x := range a {
		s, ok := x.(string)
		if !ok || s == "" {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// reservedClaims are the claims [Exchange.Issue] sets itself or that describe
// the human's original token rather than the human; they are never copied
// from the subject's claims.
var reservedClaims = map[string]bool{
	"iss": true, "aud": true, "sub": true, "sub_iss": true, "act": true, "client_id": true,
	"scope": true, "jti": true, "iat": true, "nbf": true, "exp": true, "email": true,
	"name": true, "roles": true, "delegation_chain": true, "azp": true, "nonce": true,
	"at_hash": true, "c_hash": true, "auth_time": true, "acr": true, "amr": true, "sid": true,
	"may_act": true, "cnf": true, "typ": true,
}

// copyClaims copies src's claims that are not reserved into dst, without
// replacing any dst already has.
func copyClaims(dst, src map[string]any) {
	for k, v := range src {
		if _, set := dst[k]; !set && !reservedClaims[k] {
			dst[k] = v
		}
	}
}

type grantKey struct{}

// WithGrant names, for Issue's log line, the OAuth grant a token is issued
// under (authorization_code, the default, or refresh_token).
func WithGrant(ctx context.Context, grant string) context.Context {
	return context.WithValue(ctx, grantKey{}, grant)
}

func grantFrom(ctx context.Context) string {
	if g, ok := ctx.Value(grantKey{}).(string); ok && g != "" {
		return g
	}
	return "authorization_code"
}

// Issue mints a delegation token for an authorization the gateway granted
// itself (the OAuth authorization-code flow, after the human's consent):
// sub = the human, act.sub = agent, the given scopes, aud = Audience,
// lifetime ttl. It has the claims of token exchange, plus the subject's
// other claims (a tenant, say) so the policy sees the same human; claims
// describing the original token (exp, nonce, azp…) are not copied.
//
// ttl is bounded only by the Keys' MaxTokenTTL, not by MaxTTL (which caps
// token exchange). OnIssue is called as for token exchange.
func (e *Exchange) Issue(ctx context.Context, subject *Subject, agent string, scopes []string, ttl time.Duration) (string, Issued, error) {
	if err := e.check(); err != nil {
		return "", Issued{}, err
	}
	switch {
	case subject == nil || subject.Subject == "" || subject.Issuer == "":
		return "", Issued{}, errors.New("issue: subject without issuer or subject")
	case agent == "":
		return "", Issued{}, errors.New("issue: empty agent")
	case ttl < time.Second:
		return "", Issued{}, errors.New("issue: ttl under 1s")
	case e.Keys != nil && ttl > e.Keys.opts.MaxTokenTTL:
		return "", Issued{}, fmt.Errorf("issue: ttl %s beyond the keys' MaxTokenTTL %s", ttl, e.Keys.opts.MaxTokenTTL)
	}
	sc, err := ParseScope(strings.Join(scopes, " "))
	if err != nil {
		return "", Issued{}, fmt.Errorf("issue: %w", err)
	}
	act, err := actClaim([]string{agent})
	if err != nil {
		return "", Issued{}, fmt.Errorf("issue: %w", err)
	}
	jti, err := newID()
	if err != nil {
		return "", Issued{}, err
	}
	aud := e.Audience
	if r := subject.Resource; r != "" {
		if e.Resources == nil || !e.Resources.Live(r) {
			return "", Issued{}, fmt.Errorf("issue: %s is not a live environment (%w)", r, ErrEnvironmentRetired)
		}
		aud = r
	}
	iat := e.now().Unix()
	exp := iat + int64(ttl/time.Second)
	scope := strings.Join(sc, " ")
	claims := map[string]any{}
	copyClaims(claims, subject.Claims)
	for k, v := range map[string]any{
		"iss": e.Issuer, "aud": aud, "sub": subject.Subject, "sub_iss": subject.Issuer,
		"act": act, "client_id": agent, "scope": scope, "jti": jti, "iat": iat, "nbf": iat, "exp": exp,
	} {
		claims[k] = v
	}
	if subject.Email != "" {
		claims["email"] = subject.Email
	}
	if subject.Name != "" {
		claims["name"] = subject.Name
	}
	if len(subject.Roles) > 0 {
		claims["roles"] = append([]string(nil), subject.Roles...)
	}
	carryMayAct(claims, subject.Claims)
	tok, err := e.Keys.sign(ctx, typAccessToken, claims)
	if err != nil {
		return "", Issued{}, fmt.Errorf("issue delegation token: %w", err)
	}
	iss := Issued{
		ID: jti, Subject: subject.Subject, SubjectIssuer: subject.Issuer, Email: subject.Email, Name: subject.Name, Agent: agent,
		Scopes: sc, IssuedAt: time.Unix(iat, 0), ExpiresAt: time.Unix(exp, 0), Resource: subject.Resource,
	}
	e.log().InfoContext(ctx, "delegation issued", "id", jti, "subject", subject.Subject, "email", subject.Email, "name", subject.Name,
		"subject_issuer", subject.Issuer, "agent", agent, "scope", scope, "expires_in", exp-iat, "grant", grantFrom(ctx))
	if e.OnIssue != nil {
		if err := e.OnIssue(ctx, iss); err != nil {
			return "", Issued{}, fmt.Errorf("issue: the grant could not be recorded: %w", err)
		}
	}
	return tok, iss, nil
}

// target checks the resource and audience parameters of a token request:
// each must name this gateway (production) or a live preview environment,
// and all the same one. It returns the preview's resource, or "" for
// production, and whether any was named.
func (e *Exchange) target(ts []string) (string, bool, error) {
	chosen, named := "", false
	for _, t := range ts {
		var this string
		switch {
		case e.acceptsTarget(t):
		case e.Resources != nil && e.Resources.Live(t):
			this = t
		case e.previewAudience(t):
			return "", false, badRequest("invalid_target", fmt.Sprintf("resource %q: no such environment (%s)", t, ErrEnvironmentRetired))
		default:
			return "", false, badRequest("invalid_target", "resource or audience is neither this gateway nor a live preview environment")
		}
		if named && this != chosen {
			return "", false, badRequest("invalid_target", "resource and audience name different environments: ask for one")
		}
		chosen, named = this, true
	}
	return chosen, named, nil
}

// audienceFor is the aud of a token issued for target ("" production;
// named: it was asked for) to a subject whose token is confined to the
// preview resource confined ("" when it is production's): a preview's
// token is exchanged only for that preview, never for production or
// another preview.
func (e *Exchange) audienceFor(target string, named bool, confined string) (string, error) {
	switch {
	case confined != "" && named && target != confined:
		return "", badRequest("invalid_target", "a token for a preview environment can only be exchanged for that environment")
	case confined != "":
		target = confined
	}
	if target == "" {
		return e.Audience, nil
	}
	if e.Resources == nil || !e.Resources.Live(target) {
		return "", badRequest("invalid_target", ErrEnvironmentRetired.Error())
	}
	return target, nil
}

// previewAudience reports whether aud (a string, or an array of them)
// names a preview environment of this gateway: Issuer/env/{name}/mcp. It
// says nothing of whether that preview is live.
func (e *Exchange) previewAudience(aud any) bool {
	prefix := strings.TrimSuffix(e.Issuer, "/") + "/env/"
	return audAny(aud, func(s string) bool {
		rest, ok := strings.CutPrefix(s, prefix)
		name, ok2 := strings.CutSuffix(rest, "/mcp")
		return ok && ok2 && name != "" && !strings.Contains(name, "/")
	})
}

// previewOnly is aud when it is not the production audience, else "".
func previewOnly(aud, production string) string {
	if aud == production {
		return ""
	}
	return aud
}
