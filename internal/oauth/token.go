package oauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentharness/harness/delegation"
)

// codeRecord is what an authorization code stands for (stored for 60 s,
// taken once).
type codeRecord struct {
	Human       Human     `json:"human"`
	ClientID    string    `json:"client_id"`
	ClientName  string    `json:"client_name"`
	RedirectURI string    `json:"redirect_uri"`
	Challenge   string    `json:"code_challenge"`
	Resource    string    `json:"resource"`
	Scopes      []string  `json:"scopes"`
	ConsentAt   time.Time `json:"consent_at"`
	// IdPRefresh is the login issuer's refresh token, sealed; CheckedAt
	// when the human was last confirmed there.
	IdPRefresh string    `json:"idp_refresh,omitempty"`
	CheckedAt  time.Time `json:"checked_at"`
}

// Grant is one approval: a human let a client use some tools until Expires.
// It is the refresh-token family: every access and refresh token issued
// under it ends when it is revoked.
type Grant struct {
	ID         string     `json:"id"`
	Human      Human      `json:"human"`
	ClientID   string     `json:"client_id"`
	ClientName string     `json:"client_name"`
	Redirect   string     `json:"redirect_host"`
	Scopes     []string   `json:"scopes"`
	Created    time.Time  `json:"created"`
	Expires    time.Time  `json:"expires"`
	LastUsed   time.Time  `json:"last_used"`
	Refresh    string     `json:"refresh"` // hash of the current refresh token
	Tokens     []tokenRef `json:"tokens"`  // access tokens still alive
	// IdPRefresh is the login issuer's refresh token for the human, sealed
	// (AES-GCM under oauth.state_key); empty when the issuer gave none.
	IdPRefresh string `json:"idp_refresh,omitempty"`
	// CheckedAt is when the human was last confirmed at the login issuer
	// (sign-in or refresh there); Human's roles and claims are from then.
	CheckedAt time.Time `json:"checked_at"`
	// Resource is the preview environment's resource the grant is for;
	// "" for production. The grant ends when that preview is retired.
	Resource string `json:"resource,omitempty"`
}

type tokenRef struct {
	ID  string    `json:"jti"`
	Exp time.Time `json:"exp"`
}

type refreshRecord struct {
	GrantID  string `json:"grant"`
	ClientID string `json:"client_id"`
}

const refreshPrefix = "hrt_"

type tokenError struct {
	status     int
	code, desc string
	cause      error
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func terr(code, desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: code, desc: desc}
}

func unavailable(cause error) *tokenError {
	return &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "state store unavailable", cause: cause}
}

func (s *Server) writeTokenError(w http.ResponseWriter, r *http.Request, err error) {
	var te *tokenError
	if !errors.As(err, &te) {
		te = &tokenError{status: http.StatusInternalServerError, code: "server_error", desc: "internal error", cause: err}
	}
	if te.status >= 500 {
		s.log.ErrorContext(r.Context(), "oauth: token request failed", "error", te.code, "cause", te.cause)
	} else {
		s.log.InfoContext(r.Context(), "oauth: token request refused", "error", te.code, "description", te.desc)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, te.status, map[string]string{"error": te.code, "error_description": te.desc})
}

// readBody reads a form body (at most 64 KiB) and restores it, so that a
// handler it is passed on to can read it again.
func readBody(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return nil, terr("invalid_request", "body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		return nil, terr("invalid_request", "request body unreadable or too large")
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, terr("invalid_request", "malformed form body")
	}
	return form, nil
}

// token serves POST /oauth/token: authorization_code and refresh_token here,
// every other grant type (token exchange) to Options.TokenExchange.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	form, err := readBody(w, r)
	if err != nil {
		s.writeTokenError(w, r, err)
		return
	}
	// Repeated parameters are refused for the grants served here; token
	// exchange allows repeated resource and audience and checks its own.
	if gt := form.Get("grant_type"); gt == "authorization_code" || gt == "refresh_token" {
		for k, v := range form {
			if len(v) > 1 {
				s.writeTokenError(w, r, terr("invalid_request", "parameter "+k+" repeated"))
				return
			}
		}
	}
	var resp map[string]any
	switch form.Get("grant_type") {
	case "authorization_code":
		resp, err = s.redeemCode(r.Context(), form)
	case "refresh_token":
		resp, err = s.refresh(r.Context(), form)
	default:
		if s.o.TokenExchange != nil {
			s.o.TokenExchange.ServeHTTP(w, r)
			return
		}
		err = terr("unsupported_grant_type", "grant types: authorization_code, refresh_token")
	}
	if err != nil {
		s.writeTokenError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for i := 0; i < len(verifier); i++ {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// redeemCode is the authorization_code grant: the code is taken (single
// use), then client, redirect URI, resource and PKCE must match. A code used
// twice revokes what it gave (RFC 6749 §4.1.2).
func (s *Server) redeemCode(ctx context.Context, f url.Values) (map[string]any, error) {
	code := f.Get("code")
	if code == "" || f.Get("client_id") == "" || f.Get("code_verifier") == "" || f.Get("redirect_uri") == "" {
		return nil, terr("invalid_request", "code, client_id, redirect_uri and code_verifier are required")
	}
	key := hashKey(code)
	var cr codeRecord
	ok, err := s.getJSON(ctx, "oauth:code:"+key, &cr, true)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		if gid, used, err := s.o.KV.Get(ctx, "oauth:code-used:"+key); err == nil && used && len(gid) > 0 {
			s.log.WarnContext(ctx, "oauth: authorization code reused: revoking its grant", "grant", string(gid))
			if err := s.revokeGrant(ctx, string(gid), "authorization code reused"); err != nil {
				return nil, unavailable(err)
			}
		}
		return nil, terr("invalid_grant", "the code is unknown, expired or already used")
	}
	now := s.now()
	gid := "g_" + randomString(18)
	if err := s.o.KV.Put(ctx, "oauth:code-used:"+key, []byte(gid), usedMarkerTTL); err != nil {
		return nil, unavailable(err)
	}
	switch {
	case f.Get("client_id") != cr.ClientID:
		return nil, terr("invalid_grant", "the code was issued to another client")
	case f.Get("redirect_uri") != cr.RedirectURI:
		return nil, terr("invalid_grant", "redirect_uri differs from the authorization request")
	case !pkceOK(f.Get("code_verifier"), cr.Challenge):
		return nil, terr("invalid_grant", "PKCE verification failed")
	}
	if res := f.Get("resource"); res != "" && strings.TrimSuffix(res, "/") != cr.Resource {
		return nil, terr("invalid_target", "resource must be "+cr.Resource)
	}
	if cr.Resource != s.o.Resource && !s.live(cr.Resource) {
		return nil, terr("invalid_grant", delegation.ErrEnvironmentRetired.Error())
	}
	g := &Grant{
		ID: gid, Human: cr.Human, ClientID: cr.ClientID, ClientName: cr.ClientName,
		Redirect: redirectHost(cr.RedirectURI), Scopes: cr.Scopes,
		Created: cr.ConsentAt, Expires: cr.ConsentAt.Add(s.o.RefreshTTL),
		IdPRefresh: cr.IdPRefresh, CheckedAt: cr.CheckedAt,
	}
	if cr.Resource != s.o.Resource {
		g.Resource = cr.Resource
	}
	if !g.Expires.After(now.Add(time.Second)) {
		return nil, terr("invalid_grant", "the approval has expired")
	}
	resp, err := s.issue(ctx, g, g.Scopes)
	if err != nil {
		return nil, err
	}
	s.addToIndex(ctx, g.Human, g.ID, g.Expires)
	s.promoteClient(ctx, g.ClientID)
	s.log.InfoContext(ctx, "oauth: grant created", "grant", g.ID, "subject", g.Human.Subject, "client_id", g.ClientID, "scope", strings.Join(g.Scopes, " "), "until", g.Expires)
	return resp, nil
}

// issue mints an access token and a new refresh token under g and stores g.
func (s *Server) issue(ctx context.Context, g *Grant, scopes []string) (map[string]any, error) {
	now := s.now()
	ttl := min(s.accessTTL(), g.Expires.Sub(now))
	if ttl < time.Second {
		return nil, terr("invalid_grant", "the approval has expired")
	}
	ttl = ttl.Truncate(time.Second)
	subj := &delegation.Subject{
		Issuer: g.Human.Issuer, Subject: g.Human.Subject, Email: g.Human.Email, Name: g.Human.Name,
		Roles: g.Human.Roles, Claims: g.Human.Claims, Resource: g.Resource,
	}
	tok, issued, err := s.o.Minter.Issue(ctx, subj, g.ClientID, scopes, ttl)
	if err != nil {
		return nil, &tokenError{status: http.StatusInternalServerError, code: "server_error", desc: "cannot issue a token", cause: err}
	}
	refresh := refreshPrefix + randomString(32)
	rh := hashKey(refresh)
	life := g.Expires.Sub(now)
	kept := g.Tokens[:0]
	for _, t := range g.Tokens {
		if t.Exp.After(now) {
			kept = append(kept, t)
		}
	}
	g.Tokens = append(kept, tokenRef{ID: issued.ID, Exp: issued.ExpiresAt})
	g.Refresh = rh
	g.LastUsed = now.UTC()
	if err := s.putJSON(ctx, "oauth:refresh:"+rh, refreshRecord{GrantID: g.ID, ClientID: g.ClientID}, life); err != nil {
		return nil, unavailable(err)
	}
	if err := s.putJSON(ctx, "oauth:grant:"+g.ID, g, life); err != nil {
		return nil, unavailable(err)
	}
	// A revocation that raced with this issue wins: its tombstone is checked
	// after the grant is written.
	if _, dead, err := s.o.KV.Get(ctx, "oauth:grant-revoked:"+g.ID); err != nil || dead {
		_ = s.o.Revocations.Revoke(ctx, issued.ID, issued.ExpiresAt)
		_ = s.o.KV.Delete(ctx, "oauth:refresh:"+rh)
		return nil, terr("invalid_grant", "the approval was revoked")
	}
	return map[string]any{
		"access_token":  tok,
		"token_type":    "Bearer",
		"expires_in":    int64(issued.ExpiresAt.Sub(issued.IssuedAt) / time.Second),
		"refresh_token": refresh,
		"scope":         strings.Join(issued.Scopes, " "),
	}, nil
}

// refresh is the refresh_token grant. The token is taken (single use) and
// replaced; presenting a used one revokes the whole grant (RFC 9700 §4.14).
func (s *Server) refresh(ctx context.Context, f url.Values) (map[string]any, error) {
	rt := f.Get("refresh_token")
	if rt == "" || f.Get("client_id") == "" {
		return nil, terr("invalid_request", "refresh_token and client_id are required")
	}
	rh := hashKey(rt)
	var rr refreshRecord
	ok, err := s.getJSON(ctx, "oauth:refresh:"+rh, &rr, true)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		if gid, used, err := s.o.KV.Get(ctx, "oauth:refresh-used:"+rh); err == nil && used && len(gid) > 0 {
			s.log.WarnContext(ctx, "oauth: refresh token reused: revoking the grant and its tokens", "grant", string(gid))
			if err := s.revokeGrant(ctx, string(gid), "refresh token reused"); err != nil {
				return nil, unavailable(err)
			}
		}
		return nil, terr("invalid_grant", "the refresh token is unknown, expired, revoked or already used")
	}
	var g Grant
	ok, err = s.getJSON(ctx, "oauth:grant:"+rr.GrantID, &g, false)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		return nil, terr("invalid_grant", "the approval has ended")
	}
	if err := s.o.KV.Put(ctx, "oauth:refresh-used:"+rh, []byte(g.ID), max(g.Expires.Sub(s.now()), time.Second)); err != nil {
		return nil, unavailable(err)
	}
	if f.Get("client_id") != g.ClientID || g.Refresh != rh {
		return nil, terr("invalid_grant", "the refresh token was issued to another client")
	}
	if g.Resource != "" && !s.live(g.Resource) { // its preview was retired: the grant ends
		if err := s.revokeGrant(ctx, g.ID, delegation.ErrEnvironmentRetired.Error()); err != nil {
			return nil, unavailable(err)
		}
		return nil, terr("invalid_grant", delegation.ErrEnvironmentRetired.Error())
	}
	scopes := g.Scopes
	if sc := f.Get("scope"); sc != "" {
		req, err := delegation.ParseScope(sc)
		if err != nil {
			return nil, terr("invalid_scope", "scope must be tool:<glob> values")
		}
		if x, ok := delegation.ScopesCover(g.Scopes, req); !ok {
			return nil, terr("invalid_scope", "scope "+x+" was not approved")
		}
		scopes = req
	}
	if s.now().Sub(g.CheckedAt) >= s.o.Recheck {
		why, err := s.recheck(ctx, &g)
		switch {
		case why != "":
			s.log.InfoContext(ctx, "oauth: refresh refused after the re-check at the identity provider", "grant", g.ID, "subject", g.Human.Subject, "email", g.Human.Email, "reason", why)
			if err := s.revokeGrant(ctx, g.ID, why); err != nil {
				return nil, unavailable(err)
			}
			return nil, terr("invalid_grant", why)
		case err != nil:
			// The IdP could not be asked: nothing is issued on stale roles,
			// the refresh token is put back for a later try.
			_ = s.putJSON(ctx, "oauth:refresh:"+rh, rr, max(g.Expires.Sub(s.now()), time.Second))
			_ = s.o.KV.Delete(ctx, "oauth:refresh-used:"+rh)
			return nil, err
		}
	}
	return s.issue(delegation.WithGrant(ctx, "refresh_token"), &g, scopes)
}

// revokeGrant ends a grant: a tombstone, every live access token's jti
// revoked, the current refresh token deleted, the grant forgotten.
func (s *Server) revokeGrant(ctx context.Context, gid, why string) error {
	if err := s.o.KV.Put(ctx, "oauth:grant-revoked:"+gid, []byte(why), s.o.RefreshTTL); err != nil {
		return err
	}
	var g Grant
	ok, err := s.getJSON(ctx, "oauth:grant:"+gid, &g, false)
	if err != nil {
		return err
	}
	if !ok {
		return nil
	}
	now := s.now()
	for _, t := range g.Tokens {
		if t.Exp.After(now) {
			if err := s.o.Revocations.Revoke(ctx, t.ID, t.Exp); err != nil {
				return err
			}
		}
	}
	if g.Refresh != "" {
		if err := s.o.KV.Delete(ctx, "oauth:refresh:"+g.Refresh); err != nil {
			return err
		}
	}
	if err := s.o.KV.Delete(ctx, "oauth:grant:"+gid); err != nil {
		return err
	}
	s.removeFromIndex(ctx, g.Human, gid)
	s.log.InfoContext(ctx, "oauth: grant revoked", "grant", gid, "subject", g.Human.Subject, "client_id", g.ClientID, "reason", why, "tokens", len(g.Tokens))
	if s.o.OnRevoke != nil {
		s.o.OnRevoke(ctx, g.Human, g.ClientID, gid, why)
	}
	return nil
}

// revoke serves POST /oauth/revoke: a refresh token of ours ends its whole
// grant; anything else goes to Options.Revoke (delegation tokens).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	form, err := readBody(w, r)
	if err != nil {
		s.writeTokenError(w, r, err)
		return
	}
	tok := form.Get("token")
	if !strings.HasPrefix(tok, refreshPrefix) {
		if s.o.Revoke != nil {
			s.o.Revoke.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx := r.Context()
	var rr refreshRecord
	ok, err := s.getJSON(ctx, "oauth:refresh:"+hashKey(tok), &rr, false)
	if err != nil {
		s.writeTokenError(w, r, unavailable(err))
		return
	}
	if ok && (form.Get("client_id") == "" || form.Get("client_id") == rr.ClientID) {
		if err := s.revokeGrant(ctx, rr.GrantID, "revoked by the client"); err != nil {
			s.writeTokenError(w, r, unavailable(err))
			return
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// --- the human's index of grants -------------------------------------------

func humanKey(h Human) string { return "oauth:human:" + hashKey(h.Issuer+"\x00"+h.Subject) }

// addToIndex records gid among h's grants. The index is read-modify-write:
// two approvals by the same human at the same instant on two replicas can
// lose one entry from the "my agents" list (never from revocation).
func (s *Server) addToIndex(ctx context.Context, h Human, gid string, until time.Time) {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	var ids []string
	_, _ = s.getJSON(ctx, humanKey(h), &ids, false)
	if !slices.Contains(ids, gid) {
		ids = append(ids, gid)
	}
	if err := s.putJSON(ctx, humanKey(h), ids, max(s.o.RefreshTTL, time.Until(until))); err != nil {
		s.log.WarnContext(ctx, "oauth: updating the human's grant index failed", "err", err)
	}
}

func (s *Server) removeFromIndex(ctx context.Context, h Human, gid string) {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	var ids []string
	if ok, _ := s.getJSON(ctx, humanKey(h), &ids, false); !ok {
		return
	}
	ids = slices.DeleteFunc(ids, func(x string) bool { return x == gid })
	_ = s.putJSON(ctx, humanKey(h), ids, s.o.RefreshTTL)
}

// grantsOf returns h's live grants, oldest first.
func (s *Server) grantsOf(ctx context.Context, h Human) ([]*Grant, error) {
	var ids []string
	if _, err := s.getJSON(ctx, humanKey(h), &ids, false); err != nil {
		return nil, err
	}
	var out []*Grant
	for _, id := range ids {
		var g Grant
		ok, err := s.getJSON(ctx, "oauth:grant:"+id, &g, false)
		if err != nil {
			return nil, err
		}
		if ok && g.Human.Issuer == h.Issuer && g.Human.Subject == h.Subject {
			out = append(out, &g)
		}
	}
	slices.SortFunc(out, func(a, b *Grant) int { return a.Created.Compare(b.Created) })
	return out, nil
}

func redirectHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Host == "" {
		return u.Scheme + ":"
	}
	return u.Host
}

// live reports whether resource is a live preview environment's.
func (s *Server) live(resource string) bool {
	return s.o.Resources != nil && s.o.Resources.Live(resource)
}

// resource is the resource a client asked for, normalised: production's,
// or a live preview's; false for anything else.
func (s *Server) resource(asked string) (string, bool) {
	r := strings.TrimSuffix(asked, "/")
	switch {
	case r == s.o.Resource:
		return r, true
	case s.live(r):
		return r, true
	}
	return "", false
}
