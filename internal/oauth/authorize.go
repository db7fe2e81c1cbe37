package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/store"
)

// authRequest is a pending authorization request, between /oauth/authorize
// and the human's decision.
type authRequest struct {
	ClientID    string    `json:"client_id"`
	ClientName  string    `json:"client_name"`
	ClientKind  string    `json:"client_kind"`
	RedirectURI string    `json:"redirect_uri"`
	State       string    `json:"state,omitempty"`
	Challenge   string    `json:"code_challenge"`
	Resource    string    `json:"resource"`
	Scopes      []string  `json:"scopes"`
	Created     time.Time `json:"created"`
}

// loginState binds a sign-in at the IdP to the browser and to what follows it.
type loginState struct {
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	// RequestID is the pending authorization request; empty: go to Return.
	RequestID string `json:"rid,omitempty"`
	Return    string `json:"return,omitempty"`
}

// session is a human signed in at the gateway (a browser).
type session struct {
	Human   Human     `json:"human"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	// IdPRefresh is the login issuer's refresh token from this sign-in,
	// sealed. It goes to the first grant approved in this session; a
	// second approval signs in again for a refresh token of its own.
	IdPRefresh string `json:"idp_refresh,omitempty"`
	// RefreshSpent: IdPRefresh went to a grant.
	RefreshSpent bool `json:"refresh_spent,omitempty"`
}

// errorRedirect sends the client an RFC 6749 §4.1.2.1 error (with RFC 9207 iss).
func (s *Server) errorRedirect(w http.ResponseWriter, r *http.Request, redirectURI, state, code, desc string) {
	s.log.InfoContext(r.Context(), "oauth: authorization refused", "error", code, "description", desc)
	s.redirectToClient(w, r, redirectURI, url.Values{"error": {code}, "error_description": {desc}}, state)
}

func (s *Server) redirectToClient(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid redirect URI", "The application's redirect URI cannot be used.")
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.o.Issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// authorize serves GET /oauth/authorize.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "state", "code_challenge", "code_challenge_method", "scope", "resource"} {
		if len(q[k]) > 1 {
			s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The parameter "+k+" is repeated.")
			return
		}
	}
	// Until client and redirect URI are trusted, errors stay on this page.
	c, err := s.client(ctx, q.Get("client_id"))
	if err != nil {
		if !errors.Is(err, errUnknownClient) {
			s.log.ErrorContext(ctx, "oauth: client lookup failed", "err", err)
			s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Harness cannot reach its state store.")
			return
		}
		s.log.InfoContext(ctx, "oauth: unknown client", "client_id", q.Get("client_id"), "err", err)
		s.errorPage(w, r, http.StatusBadRequest, "Unknown application", "This application is not registered with Harness (or its metadata document could not be used). Nothing was shared.")
		return
	}
	redirectURI := q.Get("redirect_uri")
	if !redirectMatches(c.RedirectURIs, redirectURI) {
		s.log.InfoContext(ctx, "oauth: redirect_uri mismatch", "client_id", c.ID, "redirect_uri", redirectURI)
		s.errorPage(w, r, http.StatusBadRequest, "Wrong redirect address", "The application asked Harness to send you to an address it did not register. Nothing was shared.")
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) { s.errorRedirect(w, r, redirectURI, state, code, desc) }
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case len(q.Get("code_challenge")) < 43 || len(q.Get("code_challenge")) > 128:
		fail("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)")
		return
	}
	resources := q["resource"]
	if len(resources) != 1 {
		fail("invalid_target", "resource must be "+s.o.Resource+" or a live preview environment's")
		return
	}
	resource, ok := s.resource(resources[0])
	if !ok {
		fail("invalid_target", "resource must be "+s.o.Resource+" or a live preview environment's (an unknown or retired environment is refused)")
		return
	}
	scope := strings.TrimSpace(q.Get("scope"))
	if scope == "" {
		scope = "tool:*"
	}
	scopes, err := delegation.ParseScope(scope)
	if err != nil {
		fail("invalid_scope", "scope must be space-separated tool:<glob> values, e.g. tool:* or tool:crm_*")
		return
	}
	ar := authRequest{
		ClientID: c.ID, ClientName: c.Name, ClientKind: c.Kind, RedirectURI: redirectURI, State: state,
		Challenge: q.Get("code_challenge"), Resource: resource, Scopes: scopes, Created: s.now().UTC(),
	}
	rid := randomString(18)
	if err := s.putJSON(ctx, "oauth:req:"+rid, ar, requestTTL); err != nil {
		s.log.ErrorContext(ctx, "oauth: storing a request failed", "err", err)
		fail("temporarily_unavailable", "the authorization server cannot store the request")
		return
	}
	if _, ok := s.currentSession(r); ok {
		http.Redirect(w, r, "/oauth/consent?request="+url.QueryEscape(rid), http.StatusFound)
		return
	}
	s.startLogin(w, r, loginState{RequestID: rid}, q.Get("login_hint"))
}

// --- sign-in at the login issuer ------------------------------------------

type provider struct {
	p        *oidc.Provider
	verifier *oidc.IDTokenVerifier
	config   oauth2.Config
	// offline: offline_access is requested (the issuer offers it).
	offline bool
}

// loginProvider discovers the login issuer once (retrying after failures).
func (s *Server) loginProvider(ctx context.Context) (*provider, error) {
	s.provMu.Lock()
	defer s.provMu.Unlock()
	if s.provider != nil {
		return s.provider, nil
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), s.o.HTTPClient), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, s.o.Login.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery of the login issuer: %w", err)
	}
	// offline_access is asked for when the issuer lists it: its refresh
	// token lets the gateway re-check the human (see recheck).
	var disc struct {
		ScopesSupported []string `json:"scopes_supported"`
	}
	_ = p.Claims(&disc)
	scopes := slices.Clone(s.o.Login.Scopes)
	if slices.Contains(disc.ScopesSupported, scopeOfflineAccess) && !slices.Contains(scopes, scopeOfflineAccess) {
		scopes = append(scopes, scopeOfflineAccess)
	}
	s.provider = &provider{
		p:        p,
		verifier: p.VerifierContext(oidc.ClientContext(context.Background(), s.o.HTTPClient), &oidc.Config{ClientID: s.o.Login.ClientID}),
		config: oauth2.Config{
			ClientID: s.o.Login.ClientID, ClientSecret: s.o.Login.ClientSecret,
			Endpoint: p.Endpoint(), RedirectURL: s.o.Issuer + "/oauth/callback", Scopes: scopes,
		},
		offline: slices.Contains(scopes, scopeOfflineAccess),
	}
	s.log.Info("oauth: login issuer discovered", "issuer", s.o.Login.Issuer, "scopes", strings.Join(scopes, " "), "refresh_tokens", s.provider.offline)
	return s.provider, nil
}

// startLogin sends the browser to the login issuer, binding the attempt to
// it with a cookie.
func (s *Server) startLogin(w http.ResponseWriter, r *http.Request, ls loginState, loginHint string) {
	ctx := r.Context()
	p, err := s.loginProvider(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "oauth: login issuer unavailable", "issuer", s.o.Login.Issuer, "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable", "Harness cannot reach your company's sign-in service right now. Try again in a moment.")
		return
	}
	ls.Nonce = randomString(24)
	ls.Verifier = oauth2.GenerateVerifier()
	state := randomString(24)
	if err := s.putJSON(ctx, "oauth:login:"+hashKey(state), ls, loginTTL); err != nil {
		if errors.Is(err, store.ErrFull) {
			s.log.WarnContext(ctx, "oauth: sign-in refused: too many sign-ins in progress", "err", err)
			s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Too many sign-ins are in progress right now. Try again in a few minutes.")
			return
		}
		s.log.ErrorContext(ctx, "oauth: storing login state failed", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Harness cannot reach its state store.")
		return
	}
	s.setCookie(w, loginCookie, state, loginTTL)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(ls.Verifier), oidc.Nonce(ls.Nonce)}
	if loginHint != "" && len(loginHint) <= 256 {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.config.AuthCodeURL(state, opts...), http.StatusFound)
}

// callback serves GET /oauth/callback, the login issuer's redirect.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	cookie, _ := r.Cookie(s.cookieName(loginCookie))
	if state == "" || cookie == nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(state)) != 1 {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed", "This sign-in was not started in this browser, or it took too long. Start again from your application.")
		return
	}
	var ls loginState
	ok, err := s.getJSON(ctx, "oauth:login:"+hashKey(state), &ls, true)
	if err != nil || !ok {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed", "This sign-in expired or was already used. Start again from your application.")
		return
	}
	s.clearCookie(w, loginCookie)
	if iss := q.Get("iss"); iss != "" && iss != s.o.Login.Issuer {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed", "The answer came from an unexpected identity provider.")
		return
	}
	if e := q.Get("error"); e != "" {
		s.log.InfoContext(ctx, "oauth: sign-in refused by the login issuer", "error", e, "description", q.Get("error_description"))
		s.abortRequest(w, r, ls.RequestID, "access_denied", "the human did not sign in")
		return
	}
	p, err := s.loginProvider(ctx)
	if err != nil {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable", "Harness cannot reach your company's sign-in service right now.")
		return
	}
	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, s.o.HTTPClient), 15*time.Second)
	defer cancel()
	tok, err := p.config.Exchange(xctx, q.Get("code"), oauth2.VerifierOption(ls.Verifier))
	if err != nil {
		s.signInFailed(w, r, ls, exchangeCause(err), err)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := p.verifier.Verify(xctx, rawID)
	if err == nil && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(ls.Nonce)) != 1 {
		err = errors.New("the nonce of the ID token differs from the sign-in's")
	}
	if err != nil {
		s.signInFailed(w, r, ls, idTokenCause(err), err)
		return
	}
	h, err := s.humanFrom(ctx, idt)
	if err != nil {
		s.signInFailed(w, r, ls, "The identity token from your identity provider is malformed.", err)
		return
	}
	if err := s.newSession(w, r, h, s.setRefresh(h, tok.RefreshToken)); err != nil {
		s.log.ErrorContext(ctx, "oauth: storing a session failed", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Harness cannot reach its state store.")
		return
	}
	s.log.InfoContext(ctx, "oauth: human signed in", "subject", h.Subject, "email", h.Email, "name", h.Name, "issuer", h.Issuer, "roles", h.Roles, "refresh_token", tok.RefreshToken != "")
	if ls.RequestID != "" {
		http.Redirect(w, r, "/oauth/consent?request="+url.QueryEscape(ls.RequestID), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, returnPath(ls.Return), http.StatusSeeOther)
}

// abortRequest ends a pending request with an error to its client.
func (s *Server) abortRequest(w http.ResponseWriter, r *http.Request, rid, code, desc string) {
	var ar authRequest
	if rid != "" {
		if ok, _ := s.getJSON(r.Context(), "oauth:req:"+rid, &ar, true); ok {
			s.errorRedirect(w, r, ar.RedirectURI, ar.State, code, desc)
			return
		}
	}
	s.errorPage(w, r, http.StatusBadRequest, "Sign-in cancelled", "Nothing was shared. You can close this window.")
}

// --- sessions and cookies --------------------------------------------------

const (
	sessionCookie = "harness_session"
	loginCookie   = "harness_login"
)

// cookieName adds the __Host- prefix when the gateway is served over https.
func (s *Server) cookieName(base string) string {
	if s.https {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(w http.ResponseWriter, base, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(base), Value: value, Path: "/", MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: s.https, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, base string) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(base), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.https, SameSite: http.SameSiteLaxMode,
	})
}

// setRefresh seals the login issuer's refresh token rt for h ("" stays "").
func (s *Server) setRefresh(h Human, rt string) string {
	if rt == "" {
		return ""
	}
	return s.sealer.seal(rt, refreshAD(h))
}

func (s *Server) newSession(w http.ResponseWriter, r *http.Request, h Human, idpRefresh string) error {
	id := randomString(32)
	ss := session{Human: h, CSRF: randomString(24), Created: s.now().UTC(), IdPRefresh: idpRefresh}
	if err := s.putJSON(r.Context(), "oauth:session:"+hashKey(id), ss, sessionTTL); err != nil {
		return err
	}
	s.setCookie(w, sessionCookie, id, sessionTTL)
	return nil
}

// currentSession returns the browser's session, if any.
func (s *Server) currentSession(r *http.Request) (*session, bool) {
	c, err := r.Cookie(s.cookieName(sessionCookie))
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, false
	}
	var ss session
	ok, err := s.getJSON(r.Context(), "oauth:session:"+hashKey(c.Value), &ss, false)
	if err != nil || !ok {
		return nil, false
	}
	return &ss, true
}

// spendRefresh hands the session's IdP refresh token to a grant: it is
// returned once, and the session remembers it was spent.
func (s *Server) spendRefresh(r *http.Request, ss *session) string {
	rt := ss.IdPRefresh
	if rt == "" {
		return ""
	}
	c, err := r.Cookie(s.cookieName(sessionCookie))
	if err != nil {
		return ""
	}
	ss.IdPRefresh, ss.RefreshSpent = "", true
	left := sessionTTL - s.now().Sub(ss.Created)
	if left < time.Second {
		return rt
	}
	if err := s.putJSON(r.Context(), "oauth:session:"+hashKey(c.Value), ss, left); err != nil {
		s.log.WarnContext(r.Context(), "oauth: updating a session failed", "err", err)
	}
	return rt
}

// checkCSRF verifies the form's csrf token against the session's, and the
// Origin header when the browser sends one.
func (s *Server) checkCSRF(r *http.Request, ss *session) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Scheme != s.issuerURL.Scheme || u.Host != s.issuerURL.Host {
			return false
		}
	}
	got := r.PostForm.Get("csrf")
	return got != "" && len(r.PostForm["csrf"]) == 1 && subtle.ConstantTimeCompare([]byte(got), []byte(ss.CSRF)) == 1
}
