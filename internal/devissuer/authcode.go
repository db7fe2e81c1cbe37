package devissuer

// The authorization-code flow of the development issuer. DEVELOPMENT ONLY:
// nobody types a password; whoever reaches /authorize picks a user (or
// names one with login_hint) and is signed in as that user.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// User is a person of the development issuer.
type User struct {
	// Subject is the sub claim and the login_hint that selects the user
	// (the email selects it too).
	Subject string
	// Name and Email fill the name and email claims.
	Name, Email string
	// Roles fill the roles claim.
	Roles []string
	// Claims are extra claims of the user's tokens (tenant, groups…).
	Claims map[string]any
}

// Client is a relying party allowed to use /authorize and /token.
type Client struct {
	// ID is the client_id (the aud of the ID token).
	ID string
	// Secret, when set, must be presented at /token (client_secret_basic
	// or client_secret_post); empty: a public client.
	Secret string
	// RedirectURIs are matched exactly.
	RedirectURIs []string
	// TokenExchange lets the client use the RFC 8693 token-exchange grant
	// at /token (see Issuer.tokenExchange); such a client needs a Secret and
	// may have no RedirectURIs.
	TokenExchange bool
}

// codeTTL is the life of an authorization code.
const codeTTL = time.Minute

type authFlow struct {
	mu      sync.Mutex
	users   map[string]User
	order   []string
	clients map[string]Client
	codes   map[string]*pendingCode
	// disabled users cannot sign in or refresh.
	disabled map[string]bool
	// refresh are the live refresh tokens (rotated at every use).
	refresh map[string]*refreshGrant
}

type pendingCode struct {
	clientID, redirectURI, challenge, nonce, scope string
	user                                           User
	expires                                        time.Time
}

func (f *authFlow) init() {
	f.users = map[string]User{}
	f.clients = map[string]Client{}
	f.codes = map[string]*pendingCode{}
	f.disabled = map[string]bool{}
	f.refresh = map[string]*refreshGrant{}
}

// AddUser adds (or replaces) a user who can sign in at /authorize.
func (i *Issuer) AddUser(u User) error {
	if u.Subject == "" {
		return errors.New("devissuer: user without subject")
	}
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	if _, ok := i.flow.users[u.Subject]; !ok {
		i.flow.order = append(i.flow.order, u.Subject)
	}
	u.Roles = slices.Clone(u.Roles)
	u.Claims = maps.Clone(u.Claims)
	i.flow.users[u.Subject] = u
	return nil
}

// AddClient adds (or replaces) a relying party.
func (i *Issuer) AddClient(c Client) error {
	if c.ID == "" || (len(c.RedirectURIs) == 0 && !c.TokenExchange) {
		return errors.New("devissuer: client needs an id and redirect URIs")
	}
	if c.TokenExchange && c.Secret == "" {
		return errors.New("devissuer: a token-exchange client needs a secret")
	}
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	i.flow.clients[c.ID] = c
	return nil
}

func (i *Issuer) lookupClient(id string) (Client, bool) {
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	c, ok := i.flow.clients[id]
	return c, ok
}

func (i *Issuer) users() []User {
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	out := make([]User, 0, len(i.flow.order))
	for _, s := range i.flow.order {
		out = append(out, i.flow.users[s])
	}
	return out
}

func (i *Issuer) hasFlow() bool {
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	return len(i.flow.users) > 0 && len(i.flow.clients) > 0
}

func randomToken() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

var pickTmpl = template.Must(template.New("pick").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Development sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{{.Nonce}}">
body{font:15px/1.5 system-ui,sans-serif;background:#fff7ed;color:#1c1917;margin:0;padding:2rem}
main{max-width:32rem;margin:auto;background:#fff;border:2px solid #ea580c;border-radius:10px;padding:1.5rem}
.warn{background:#ea580c;color:#fff;padding:.5rem .75rem;border-radius:6px;font-weight:600}
button{display:block;width:100%;text-align:left;margin:.5rem 0;padding:.6rem .8rem;border:1px solid #d6d3d1;border-radius:6px;background:#fafaf9;font:inherit;cursor:pointer}
button:hover{background:#f5f5f4}.roles{color:#57534e;font-size:13px}.err{color:#b91c1c}
</style></head><body><main>
<p class="warn">DEVELOPMENT ISSUER — no passwords, not for production</p>
<h1>Sign in as…</h1>
<p>Client <code>{{.ClientID}}</code> asks you to sign in.</p>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="get" action="">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}
{{range .Users}}<button type="submit" name="login_hint" value="{{.Subject}}" id="user-{{.Subject}}" data-testid="dev-user">
<strong>{{if .Name}}{{.Name}}{{else}}{{.Subject}}{{end}}</strong> <span class="roles">{{.Subject}}{{if .Email}} · {{.Email}}{{end}}{{if .Roles}} · roles: {{range $j, $r := .Roles}}{{if $j}}, {{end}}{{$r}}{{end}}{{end}}</span>
</button>
{{end}}
</form></main></body></html>`))

// authorize serves /authorize: it checks client_id, redirect_uri,
// response_type=code and a PKCE S256 challenge, then signs in the user named
// by login_hint (redirecting straight back with a code) or shows a page to
// pick one.
func (i *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	if !i.hasFlow() {
		http.Error(w, "development issuer: no interactive login (configure Options.Users and Options.Clients)", http.StatusNotImplemented)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	c, ok := i.lookupClient(q.Get("client_id"))
	if !ok {
		http.Error(w, "development issuer: unknown client_id", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(c.RedirectURIs, redirect) {
		http.Error(w, "development issuer: redirect_uri not registered for this client", http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		u, _ := url.Parse(redirect)
		v := u.Query()
		for k, vs := range params {
			v[k] = vs
		}
		if s := q.Get("state"); s != "" {
			v.Set("state", s)
		}
		v.Set("iss", i.URL())
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) { back(url.Values{"error": {code}, "error_description": {desc}}) }
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code")
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "scope must include openid")
		return
	}
	hint := q.Get("login_hint")
	i.flow.mu.Lock()
	u, known := i.flow.users[hint]
	if !known && hint != "" { // a login_hint may be the email too
		for _, cand := range i.flow.users {
			if cand.Email != "" && strings.EqualFold(cand.Email, hint) {
				u, known = cand, true
			}
		}
	}
	disabled := i.flow.disabled[u.Subject]
	i.flow.mu.Unlock()
	if known && disabled {
		fail("access_denied", "the user is disabled")
		return
	}
	if !known {
		params := map[string]string{}
		for k := range q {
			if k != "login_hint" {
				params[k] = q.Get(k)
			}
		}
		nonce := randomToken()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// form-action names the redirect's origin too: browsers apply it to
		// the redirect that follows the form submission.
		ru, _ := url.Parse(redirect)
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; form-action 'self' "+ru.Scheme+"://"+ru.Host+"; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		data := map[string]any{"ClientID": c.ID, "Params": params, "Users": i.users(), "Nonce": nonce}
		if hint != "" {
			data["Error"] = "No user " + hint + " here; pick one."
		}
		_ = pickTmpl.Execute(w, data)
		return
	}
	code := randomToken()
	i.flow.mu.Lock()
	now := i.now()
	for k, pc := range i.flow.codes {
		if now.After(pc.expires) {
			delete(i.flow.codes, k)
		}
	}
	i.flow.codes[code] = &pendingCode{
		clientID: c.ID, redirectURI: redirect, challenge: q.Get("code_challenge"),
		nonce: q.Get("nonce"), scope: q.Get("scope"), user: u, expires: now.Add(codeTTL),
	}
	i.flow.mu.Unlock()
	back(url.Values{"code": {code}})
}

// token serves /token for grant_type=authorization_code (and the token-exchange
// grant, see tokenExchange): the code (single
// use, 60 s) with the same client and redirect_uri and the PKCE verifier
// gives an ID token (aud = client_id, nonce) and an access token for the user.
func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	tokenErr := func(status int, code, desc string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		tokenErr(http.StatusBadRequest, "invalid_request", "development issuer: POST grant_type=authorization_code (or mint tokens with Issuer.Mint)")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		tokenErr(http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") == GrantTokenExchange {
		i.tokenExchange(w, r)
		return
	}
	if gt := f.Get("grant_type"); gt != "authorization_code" && (gt != "refresh_token" || i.noRefresh) {
		tokenErr(http.StatusBadRequest, "unsupported_grant_type", "only authorization_code, refresh_token and "+GrantTokenExchange)
		return
	}
	clientID, secret := clientCredentials(r)
	c, ok := i.lookupClient(clientID)
	if !ok || (c.Secret != "" && subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1) {
		tokenErr(http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	if f.Get("grant_type") == "refresh_token" {
		i.refreshGrant(w, c, f.Get("refresh_token"))
		return
	}
	i.flow.mu.Lock()
	pc, ok := i.flow.codes[f.Get("code")]
	delete(i.flow.codes, f.Get("code"))
	i.flow.mu.Unlock()
	if !ok || i.now().After(pc.expires) || pc.clientID != c.ID || pc.redirectURI != f.Get("redirect_uri") {
		tokenErr(http.StatusBadRequest, "invalid_grant", "code unknown, used, expired, or issued to another client or redirect_uri")
		return
	}
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(pc.challenge)) != 1 {
		tokenErr(http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
		return
	}
	i.flow.mu.Lock()
	u, known := i.flow.users[pc.user.Subject]
	disabled := i.flow.disabled[pc.user.Subject]
	i.flow.mu.Unlock()
	if !known || disabled {
		tokenErr(http.StatusBadRequest, "invalid_grant", "the user is disabled")
		return
	}
	i.answerTokens(w, c, u, pc.nonce, pc.scope)
}

// answerTokens writes a token response for u: an ID token (with nonce when
// set), an access token and, when scope holds offline_access and the
// issuer offers it, a new refresh token.
func (i *Issuer) answerTokens(w http.ResponseWriter, c Client, u User, nonce, scope string) {
	claims := maps.Clone(u.Claims)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["sub"] = u.Subject
	if u.Name != "" {
		claims["name"] = u.Name
	}
	if u.Email != "" {
		claims["email"] = u.Email
	}
	if len(u.Roles) > 0 {
		claims["roles"] = slices.Clone(u.Roles)
	}
	claims["aud"] = c.ID
	claims["azp"] = c.ID
	idClaims := maps.Clone(claims)
	if nonce != "" {
		idClaims["nonce"] = nonce
	}
	idClaims["auth_time"] = i.now().Unix()
	const ttl = time.Hour
	idToken, err := i.Mint(idClaims, ttl)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "minting failed"})
		return
	}
	access, err := i.Mint(claims, ttl)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "minting failed"})
		return
	}
	resp := map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(ttl / time.Second),
		"id_token": idToken, "scope": scope,
	}
	if !i.noRefresh && slices.Contains(strings.Fields(scope), ScopeOfflineAccess) {
		rt := randomToken()
		i.flow.mu.Lock()
		i.flow.refresh[rt] = &refreshGrant{clientID: c.ID, subject: u.Subject, scope: scope}
		i.flow.mu.Unlock()
		resp["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, resp)
}

// String describes the user for logs and pages.
func (u User) String() string {
	if u.Name != "" {
		return fmt.Sprintf("%s (%s)", u.Name, u.Subject)
	}
	return u.Subject
}

// clientCredentials reads a token request's client id and secret: HTTP Basic
// (RFC 6749 §2.3.1, form-encoded) or the client_id/client_secret parameters.
func clientCredentials(r *http.Request) (id, secret string) {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		return id, secret
	}
	return r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
}
