package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/agentharness/harness/internal/devissuer"
	"github.com/agentharness/harness/internal/redistest"
)

// The OAuth tests play a copilot that has never seen Harness, without a
// browser: discovery, registration, authorize, sign-in at the development
// IdP (login_hint picks the user), the consent page (HTML parsed for its
// CSRF token), the code, the token, MCP with the token, refresh and reuse.

const oauthLoginClient = "harness-gw"

// oauthStack is a development IdP, a small Go upstream and a gateway with
// the oauth section on.
type oauthStack struct {
	iss *devissuer.Issuer
	gw  *gateway // the one at public_url
	// replicas are every gateway (gw first), sharing Redis when several.
	replicas []*gateway
}

// oauthUpstream serves four tools with distinct tags and methods, so that
// what the default policy lets a support user list is easy to tell.
func oauthUpstream(t testing.TB) string {
	t.Helper()
	doc := `{"openapi":"3.1.0","info":{"title":"crm","version":"1"},"paths":{
 "/customers/{id}":{"get":{"operationId":"get_customer","summary":"Read one customer","tags":["customers"],
   "parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"200":{"description":"ok"}}},
  "delete":{"operationId":"delete_customer","summary":"Delete a customer","tags":["customers"],
   "parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"200":{"description":"ok"}}}},
 "/invoices":{"get":{"operationId":"list_invoices","summary":"List invoices","tags":["billing"],"responses":{"200":{"description":"ok"}}}},
 "/tickets":{"post":{"operationId":"create_ticket","summary":"Open a ticket","tags":["tickets"],
   "requestBody":{"content":{"application/json":{"schema":{"type":"object","properties":{"subject":{"type":"string"}}}}}},"responses":{"200":{"description":"ok"}}}}}}`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	})
	mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"Ada"}`, r.PathValue("id"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func startOAuthStack(t *testing.T) *oauthStack {
	t.Helper()
	return startOAuthReplicas(t, 1, "")
}

// startOAuthReplicas starts n gateways with one public_url (the first
// one's), sharing redisURL when it is set.
func startOAuthReplicas(t *testing.T, n int, redisURL string) *oauthStack {
	t.Helper()
	return startOAuth(t, oauthOptions{replicas: n, redisURL: redisURL})
}

// oauthOptions shape a stack of startOAuth.
type oauthOptions struct {
	replicas int
	redisURL string
	// recheck is oauth.recheck (default 1h: longer than access_ttl).
	recheck string
	// issuer tunes the development IdP's options.
	issuer func(*devissuer.Options)
	// serve starts the IdP (default: iss.Start on a free port).
	serve func(*devissuer.Issuer)
	// idpSecret is the gateway's client secret registered at the IdP
	// (default: the one the gateway is configured with).
	idpSecret string
	// rolesClaim is auth.issuers[0].roles_claim (default roles).
	rolesClaim string
	// extraYAML is appended to the configuration.
	extraYAML string
}

func startOAuth(t *testing.T, o oauthOptions) *oauthStack {
	t.Helper()
	opts := devissuer.Options{Users: []devissuer.User{
		{Subject: "alice", Name: "Alice Support", Email: "alice@acme.example", Roles: []string{"support"}, Claims: map[string]any{"tenant": "acme"}},
		{Subject: "bob", Name: "Bob Admin", Email: "bob@acme.example", Roles: []string{"admin"}},
	}}
	if o.issuer != nil {
		o.issuer(&opts)
	}
	iss, err := devissuer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if o.serve != nil {
		o.serve(iss)
	} else {
		if err := iss.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = iss.Close() })
	}
	up := oauthUpstream(t)
	redis := ""
	if o.redisURL != "" {
		redis = fmt.Sprintf("ratelimit:\n  redis_url: %q\n", o.redisURL)
	}
	if o.recheck == "" {
		o.recheck = "1h"
	}
	if o.rolesClaim == "" {
		o.rolesClaim = "roles"
	}
	if o.idpSecret == "" {
		o.idpSecret = "s3cret-value"
	}
	cfg := fmt.Sprintf(`listen: {{LISTEN}}
public_url: PUBLIC
auth:
  issuers:
    - issuer: %s
      roles_claim: %s
upstreams:
  - name: crm
    base_url: %s
    openapi: %s/openapi.json
audit:
  path: {{DIR}}/audit.log
oauth:
  login_issuer: %s
  client_id: %s
  client_secret: ${E2E_OAUTH_SECRET}
  access_ttl: 30m
  refresh_ttl: 2h
  recheck: %s
%s%s`, iss.URL(), o.rolesClaim, up, up, iss.URL(), oauthLoginClient, o.recheck, redis, o.extraYAML)
	s := &oauthStack{iss: iss}
	public := "http://{{LISTEN}}"
	for range max(o.replicas, 1) {
		gw := startGateway(t, strings.Replace(cfg, "PUBLIC", public, 1), "E2E_OAUTH_SECRET=s3cret-value")
		if s.gw == nil {
			s.gw, public = gw, gw.URL
		}
		s.replicas = append(s.replicas, gw)
	}
	if err := iss.AddClient(devissuer.Client{ID: oauthLoginClient, Secret: o.idpSecret, RedirectURIs: []string{s.gw.URL + "/oauth/callback"}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// browser is a cookie-keeping HTTP client that never follows redirects by
// itself.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{
		Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// follow GETs u and follows redirects while they stay on the gateway or
// the IdP; it returns the last response (body read) and its body.
func (b *browser) follow(u string, stay ...string) (*http.Response, string) {
	b.t.Helper()
	for range 10 {
		resp, err := b.c.Get(u)
		if err != nil {
			b.t.Fatalf("GET %s: %v", u, err)
		}
		body := readAll(b.t, resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return resp, body
		}
		next, err := resp.Request.URL.Parse(loc)
		if err != nil {
			b.t.Fatal(err)
		}
		if !slices.ContainsFunc(stay, func(p string) bool { return strings.HasPrefix(next.String(), p) }) {
			return resp, body
		}
		u = next.String()
	}
	b.t.Fatalf("too many redirects from %s", u)
	return nil, ""
}

func (b *browser) postForm(u string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.PostForm(u, form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	return resp, readAll(b.t, resp.Body)
}

var (
	csrfRe    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	requestRe = regexp.MustCompile(`name="request" value="([^"]+)"`)
	grantRe   = regexp.MustCompile(`data-grant="([^"]+)"`)
)

func match(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in page:\n%s", re, body)
	}
	return html.UnescapeString(m[1])
}

// copilot is one OAuth client: its id, its redirect URI and a PKCE verifier.
type copilot struct {
	id, redirect, verifier string
}

func registerClient(t *testing.T, gwURL, name string, redirects ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"client_name": name, "redirect_uris": redirects, "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"}})
	resp, err := http.Post(gwURL+"/oauth/register", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %v %v", resp.StatusCode, out, err)
	}
	id, _ := out["client_id"].(string)
	if id == "" || out["token_endpoint_auth_method"] != "none" {
		t.Fatalf("register answer %v", out)
	}
	return id
}

// authorizeURL is a complete authorization request of c (state "st-<n>").
func (s *oauthStack) authorizeURL(c copilot, state, scope, user string, drop ...string) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {c.id}, "redirect_uri": {c.redirect},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(c.verifier)}, "code_challenge_method": {"S256"},
		"state": {state}, "resource": {s.gw.URL + "/mcp"}, "login_hint": {user},
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	for _, k := range drop {
		q.Del(k)
	}
	return s.gw.URL + "/oauth/authorize?" + q.Encode()
}

// toConsent runs authorize → IdP → callback and returns the consent page.
func (s *oauthStack) toConsent(t *testing.T, b *browser, c copilot, state, scope, user string) (page, csrf, request string, resp *http.Response) {
	t.Helper()
	resp, page = b.follow(s.authorizeURL(c, state, scope, user), s.gw.URL, s.iss.URL())
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Request.URL.Path, "/oauth/consent") {
		t.Fatalf("expected the consent page, got %d at %s:\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	return page, match(t, csrfRe, page), match(t, requestRe, page), resp
}

// decide posts the consent form and returns the redirect to the client.
func (s *oauthStack) decide(t *testing.T, b *browser, csrf, request, decision string) (*http.Response, url.Values) {
	t.Helper()
	resp, body := b.postForm(s.gw.URL+"/oauth/consent", url.Values{"csrf": {csrf}, "request": {request}, "decision": {decision}})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("consent %s: %d\n%s", decision, resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return resp, loc.Query()
}

// codeFor runs the whole front channel for user and returns the code.
func (s *oauthStack) codeFor(t *testing.T, b *browser, c copilot, user string) string {
	t.Helper()
	_, csrf, req, _ := s.toConsent(t, b, c, "st-code", "", user)
	_, q := s.decide(t, b, csrf, req, "approve")
	if q.Get("code") == "" || q.Get("state") != "st-code" {
		t.Fatalf("approve redirect %v", q)
	}
	return q.Get("code")
}

type tokenAnswer struct {
	status int
	body   map[string]any
}

func (a tokenAnswer) str(k string) string { s, _ := a.body[k].(string); return s }

func postToken(t *testing.T, gwURL string, form url.Values) tokenAnswer {
	t.Helper()
	resp, err := http.PostForm(gwURL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw := readAll(t, resp.Body)
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("token answer %d not JSON: %s", resp.StatusCode, raw)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("token answer Cache-Control = %q", cc)
	}
	return tokenAnswer{resp.StatusCode, out}
}

func (s *oauthStack) redeem(t *testing.T, c copilot, code string) tokenAnswer {
	t.Helper()
	return postToken(t, s.gw.URL, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.redirect},
		"client_id": {c.id}, "code_verifier": {c.verifier}, "resource": {s.gw.URL + "/mcp"},
	})
}

func (s *oauthStack) refresh(t *testing.T, c copilot, rt string) tokenAnswer {
	t.Helper()
	return postToken(t, s.gw.URL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.id}})
}

func wantOK(t *testing.T, what string, a tokenAnswer) {
	t.Helper()
	if a.status != http.StatusOK || a.str("access_token") == "" || a.str("refresh_token") == "" || a.str("token_type") != "Bearer" {
		t.Fatalf("%s: %d %v", what, a.status, a.body)
	}
}

func wantGrantError(t *testing.T, what string, a tokenAnswer, code string) {
	t.Helper()
	if a.status != http.StatusBadRequest || a.str("error") != code {
		t.Fatalf("%s: got %d %v, want 400 %s", what, a.status, a.body, code)
	}
}

// mcpStatus is the status of an unauthenticated-looking tools/list POST.
func mcpStatus(t *testing.T, gwURL, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gwURL+"/mcp", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/list")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitRefused polls /mcp until token is refused with 401 (revocation is
// immediate; the poll only bounds the wait).
func waitRefused(t *testing.T, gwURL, token, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := mcpStatus(t, gwURL, token)
		if st == http.StatusUnauthorized {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still accepted at /mcp (status %d)", what, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func getJSON(t *testing.T, u string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, resp.Header, m
}

// TestOAuthFirstTimeClient is the whole journey of a copilot that has never
// seen Harness.
func TestOAuthFirstTimeClient(t *testing.T) {
	s := startOAuthStack(t)
	gw := s.gw.URL

	// Discovery: 401 → protected-resource metadata → the gateway is the AS.
	st, hdr, _ := getJSON(t, gw+"/mcp")
	if st != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Fatalf("/mcp without token: %d %q", st, hdr.Get("WWW-Authenticate"))
	}
	_, _, prm := getJSON(t, gw+"/.well-known/oauth-protected-resource/mcp")
	as, _ := prm["authorization_servers"].([]any)
	if len(as) == 0 || as[0] != gw || prm["resource"] != gw+"/mcp" {
		t.Fatalf("protected resource metadata %v: want the gateway first among authorization_servers", prm)
	}
	st, _, md := getJSON(t, gw+"/.well-known/oauth-authorization-server")
	if st != 200 || md["issuer"] != gw || md["authorization_endpoint"] != gw+"/oauth/authorize" ||
		md["token_endpoint"] != gw+"/oauth/token" || md["registration_endpoint"] != gw+"/oauth/register" ||
		md["revocation_endpoint"] != gw+"/oauth/revoke" || md["client_id_metadata_document_supported"] != true ||
		md["authorization_response_iss_parameter_supported"] != true {
		t.Fatalf("authorization server metadata %d %v", st, md)
	}
	if m, _ := md["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Errorf("code_challenge_methods_supported = %v", md["code_challenge_methods_supported"])
	}

	// Registration with a loopback redirect without a port; the request
	// uses an ephemeral port (native-app loopback flexibility).
	id := registerClient(t, gw, "E2E Copilot", "http://127.0.0.1/callback")
	c := copilot{id: id, redirect: "http://127.0.0.1:49152/callback", verifier: oauth2.GenerateVerifier()}
	b := newBrowser(t)

	page, csrf, req, resp := s.toConsent(t, b, c, "st-1", "tool:crm_*", "alice")
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("consent page without %s", h)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || strings.Contains(page, "<script") {
		t.Error("the consent page must work without scripts")
	}
	for _, want := range []string{"E2E Copilot", id, "127.0.0.1:49152", "Alice Support", "tool:crm_*", `data-tool="crm_get_customer"`, `data-tool="crm_create_ticket"`, `id="approve"`, `id="deny"`, "30 minutes", "2 hours"} {
		if !strings.Contains(page, html.EscapeString(want)) && !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	// The policy lets a support user neither read billing nor delete customers.
	for _, hidden := range []string{"crm_list_invoices", "crm_delete_customer"} {
		if strings.Contains(page, hidden) {
			t.Errorf("consent page offers %s, which the policy denies alice", hidden)
		}
	}
	for _, sc := range resp.Cookies() {
		t.Logf("cookie %s", sc.Name)
	}

	_, q := s.decide(t, b, csrf, req, "approve")
	if q.Get("state") != "st-1" || q.Get("iss") != gw || q.Get("code") == "" {
		t.Fatalf("authorization response %v: want code, state st-1 and iss %s", q, gw)
	}

	tok := s.redeem(t, c, q.Get("code"))
	wantOK(t, "code redemption", tok)
	if exp, _ := tok.body["expires_in"].(float64); exp <= 0 || exp > 1800 {
		t.Errorf("expires_in = %v, want (0, 1800] for access_ttl 30m", tok.body["expires_in"])
	}
	claims := jwtClaims(t, tok.str("access_token"))
	act, _ := claims["act"].(map[string]any)
	if claims["sub"] != "alice" || act["sub"] != id || claims["aud"] != gw+"/mcp" || claims["scope"] != "tool:crm_*" || claims["iss"] != gw || claims["tenant"] != "acme" {
		t.Errorf("access token claims %v", claims)
	}

	for _, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			mc := connect(t, gw, tok.str("access_token"), e)
			names := listNames(t, mc)
			slices.Sort(names)
			if !slices.Equal(names, []string{"crm_create_ticket", "crm_get_customer"}) {
				t.Errorf("tools/list with the OAuth token = %v", names)
			}
			if r := callTool(t, mc, "crm_get_customer", map[string]any{"id": "c-1"}); r.IsError || !strings.Contains(resultText(r), "Ada") {
				t.Errorf("call = %v %q", r.IsError, resultText(r))
			}
		})
	}

	// Refresh rotates the refresh token.
	r1 := tok.str("refresh_token")
	tok2 := s.refresh(t, c, r1)
	wantOK(t, "refresh", tok2)
	if tok2.str("refresh_token") == r1 || tok2.str("access_token") == tok.str("access_token") {
		t.Fatal("refresh did not rotate the tokens")
	}
	if st := mcpStatus(t, gw, tok2.str("access_token")); st != http.StatusOK {
		t.Fatalf("refreshed access token: status %d", st)
	}
	// Reusing the first refresh token revokes the whole family: the latest
	// access token, the first one, and the latest refresh token.
	wantGrantError(t, "reused refresh token", s.refresh(t, c, r1), "invalid_grant")
	waitRefused(t, gw, tok2.str("access_token"), "latest access token after refresh-token reuse")
	waitRefused(t, gw, tok.str("access_token"), "first access token after refresh-token reuse")
	wantGrantError(t, "latest refresh token after reuse", s.refresh(t, c, tok2.str("refresh_token")), "invalid_grant")

	// The client secret at the IdP is never logged.
	if strings.Contains(s.gw.logs.String(), "s3cret-value") {
		t.Error("the gateway logged oauth.client_secret")
	}
}

// TestOAuthNegative covers what the authorization server must refuse.
func TestOAuthNegative(t *testing.T) {
	s := startOAuthStack(t)
	gw := s.gw.URL
	id := registerClient(t, gw, "Negative Copilot", "http://127.0.0.1/cb", "https://app.example.com/cb")
	newC := func() copilot {
		return copilot{id: id, redirect: "http://127.0.0.1:50000/cb", verifier: oauth2.GenerateVerifier()}
	}

	t.Run("wrong verifier", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		code := s.codeFor(t, b, c, "alice")
		bad := c
		bad.verifier = oauth2.GenerateVerifier()
		wantGrantError(t, "wrong verifier", s.redeem(t, bad, code), "invalid_grant")
		// The code was spent by the failed attempt.
		wantGrantError(t, "code after a failed attempt", s.redeem(t, c, code), "invalid_grant")
	})

	t.Run("reused code", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		code := s.codeFor(t, b, c, "alice")
		first := s.redeem(t, c, code)
		wantOK(t, "first redemption", first)
		wantGrantError(t, "second redemption", s.redeem(t, c, code), "invalid_grant")
		// RFC 6749 §4.1.2: what the code gave is revoked.
		waitRefused(t, gw, first.str("access_token"), "access token of a reused code")
		wantGrantError(t, "refresh token of a reused code", s.refresh(t, c, first.str("refresh_token")), "invalid_grant")
	})

	t.Run("wrong redirect URI", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		// At /oauth/authorize: an unregistered URI gets an error page, never a redirect.
		for _, ru := range []string{"http://127.0.0.1:50000/other", "https://evil.example/cb", "https://app.example.com/cb/x", "http://localhost:50000/cb"} {
			bad := c
			bad.redirect = ru
			resp, body := b.follow(s.authorizeURL(bad, "st", "", "alice"), gw)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "Wrong redirect address") {
				t.Errorf("redirect_uri %s: %d %q", ru, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		// At /oauth/token: a code is bound to its redirect URI.
		code := s.codeFor(t, b, c, "alice")
		bad := c
		bad.redirect = "http://127.0.0.1:50001/cb"
		wantGrantError(t, "token with another redirect_uri", s.redeem(t, bad, code), "invalid_grant")
	})

	t.Run("missing or wrong resource", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		for name, u := range map[string]string{
			"missing": s.authorizeURL(c, "st-r", "", "alice", "resource"),
			"wrong":   strings.Replace(s.authorizeURL(c, "st-r", "", "alice"), url.QueryEscape(gw+"/mcp"), url.QueryEscape("https://other.example/mcp"), 1),
		} {
			resp, _ := b.follow(u, gw)
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), c.redirect) {
				t.Fatalf("%s resource: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
			}
			if q := loc.Query(); q.Get("error") != "invalid_target" || q.Get("state") != "st-r" || q.Get("iss") != gw {
				t.Errorf("%s resource: redirect %v", name, q)
			}
		}
	})

	t.Run("PKCE required", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		resp, _ := b.follow(s.authorizeURL(c, "st-p", "", "alice", "code_challenge", "code_challenge_method"), gw)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil || loc.Query().Get("error") != "invalid_request" {
			t.Errorf("no PKCE: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("unknown client", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		c.id = "hc_nobody"
		resp, _ := b.follow(s.authorizeURL(c, "st", "", "alice"), gw)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("unknown client: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("CSRF token missing or wrong", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		_, csrf, req, _ := s.toConsent(t, b, c, "st-c", "", "alice")
		for name, form := range map[string]url.Values{
			"missing":  {"request": {req}, "decision": {"approve"}},
			"wrong":    {"request": {req}, "decision": {"approve"}, "csrf": {csrf + "x"}},
			"repeated": {"request": {req}, "decision": {"approve"}, "csrf": {"x", csrf}},
		} {
			resp, body := b.postForm(gw+"/oauth/consent", form)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
				t.Errorf("CSRF %s: %d %q\n%s", name, resp.StatusCode, resp.Header.Get("Location"), body)
			}
		}
		// Another browser (its own session) cannot use this one's token.
		other := newBrowser(t)
		if resp, _ := other.postForm(gw+"/oauth/consent", url.Values{"request": {req}, "decision": {"approve"}, "csrf": {csrf}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("consent without a session: %d", resp.StatusCode)
		}
		// A cross-site Origin is refused even with the right token.
		r, _ := http.NewRequest(http.MethodPost, gw+"/oauth/consent", strings.NewReader(url.Values{"request": {req}, "decision": {"approve"}, "csrf": {csrf}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "https://evil.example")
		resp, err := b.c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site Origin: %d", resp.StatusCode)
		}
		// The refused posts did not spend the request: the real form still works.
		_, q := s.decide(t, b, csrf, req, "approve")
		if q.Get("code") == "" {
			t.Errorf("approve after refused posts: %v", q)
		}
	})

	t.Run("deny", func(t *testing.T) {
		b, c := newBrowser(t), newC()
		_, csrf, req, _ := s.toConsent(t, b, c, "st-d", "", "alice")
		_, q := s.decide(t, b, csrf, req, "deny")
		if q.Get("error") != "access_denied" || q.Get("state") != "st-d" || q.Get("iss") != gw || q.Get("code") != "" {
			t.Errorf("deny redirect %v", q)
		}
	})

	t.Run("registration refuses", func(t *testing.T) {
		for _, ru := range []string{"http://app.example.com/cb", "javascript:alert(1)", "https://app.example.com/cb#frag"} {
			body, _ := json.Marshal(map[string]any{"redirect_uris": []string{ru}})
			resp, err := http.Post(gw+"/oauth/register", "application/json", strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || out["error"] != "invalid_redirect_uri" {
				t.Errorf("register %s: %d %v", ru, resp.StatusCode, out)
			}
		}
	})

	t.Run("token exchange still served", func(t *testing.T) {
		bob := mint(t, s.iss, gw, map[string]any{"sub": "bob", "roles": []string{"admin"}, "azp": "agent-7"})
		a := postToken(t, gw, url.Values{
			"grant_type": {grantTokenExchange}, "subject_token": {bob}, "subject_token_type": {tokenTypeAccess},
			"scope": {"tool:crm_get_customer"},
		})
		if a.status != http.StatusOK || a.str("access_token") == "" {
			t.Errorf("token exchange with oauth on: %d %v", a.status, a.body)
		}
	})
}

// TestOAuthMyAgents: the human sees the agent acting for them and revokes it.
func TestOAuthMyAgents(t *testing.T) {
	s := startOAuthStack(t)
	gw := s.gw.URL
	id := registerClient(t, gw, "Agent Smith", "http://127.0.0.1/cb")
	c := copilot{id: id, redirect: "http://127.0.0.1:50123/cb", verifier: oauth2.GenerateVerifier()}
	b := newBrowser(t)
	tok := s.redeem(t, c, s.codeFor(t, b, c, "bob"))
	wantOK(t, "redemption", tok)

	resp, page := b.follow(gw+"/oauth/agents", gw, s.iss.URL())
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("my agents: %d\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{"Agent Smith", id, `data-testid="since"`, `data-testid="until"`, `data-testid="last-used"`, `data-tool="crm_delete_customer"`} {
		if !strings.Contains(page, want) {
			t.Errorf("my agents page lacks %q", want)
		}
	}
	grant := match(t, grantRe, page)
	csrf := match(t, csrfRe, page)

	// Another human signing in sees nothing of bob's.
	other := newBrowser(t)
	_, otherPage := other.follow(gw+"/oauth/agents?login_hint=alice", gw, s.iss.URL())
	if strings.Contains(otherPage, grant) || !strings.Contains(otherPage, `data-testid="no-agents"`) {
		t.Errorf("alice sees bob's agents:\n%s", otherPage)
	}
	// …nor revoke it with her own session and token.
	if resp, _ := other.postForm(gw+"/oauth/agents/revoke", url.Values{"grant": {grant}, "csrf": {match(t, csrfRe, otherPage)}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice revoking bob's grant: %d", resp.StatusCode)
	}
	if resp, _ := b.postForm(gw+"/oauth/agents/revoke", url.Values{"grant": {grant}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("revoke without CSRF: %d", resp.StatusCode)
	}
	if st := mcpStatus(t, gw, tok.str("access_token")); st != http.StatusOK {
		t.Fatalf("token before revocation: %d", st)
	}

	resp, _ = b.postForm(gw+"/oauth/agents/revoke", url.Values{"grant": {grant}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	waitRefused(t, gw, tok.str("access_token"), "access token after revocation on my agents")
	wantGrantError(t, "refresh after revocation", s.refresh(t, c, tok.str("refresh_token")), "invalid_grant")
	_, page = b.follow(gw+"/oauth/agents", gw)
	if strings.Contains(page, grant) || !strings.Contains(page, `data-testid="no-agents"`) {
		t.Errorf("revoked agent still listed:\n%s", page)
	}

	// Signing out ends the browser's session: the page sends it to sign in again.
	if resp, _ := b.postForm(gw+"/oauth/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	resp, _ = b.follow(gw+"/oauth/agents", gw)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.iss.URL()+"/authorize") {
		t.Errorf("after sign out: %d %q", resp.StatusCode, loc)
	}
}

// TestOAuthClientMetadataDocument: a client whose client_id is the URL of
// its metadata document (served on loopback, which a gateway on plain-http
// loopback accepts).
func TestOAuthClientMetadataDocument(t *testing.T) {
	s := startOAuthStack(t)
	gw := s.gw.URL
	mux := http.NewServeMux()
	docSrv := httptest.NewServer(mux)
	t.Cleanup(docSrv.Close)
	id := docSrv.URL + "/oauth/client.json"
	mux.HandleFunc("GET /oauth/client.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"client_id": id, "client_name": "Metadata Copilot", "redirect_uris": []string{"http://127.0.0.1/cimd-cb"},
			"token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		})
	})
	mux.HandleFunc("GET /oauth/liar.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"client_id": id, "redirect_uris": []string{"http://127.0.0.1/cimd-cb"}})
	})

	c := copilot{id: id, redirect: "http://127.0.0.1:51000/cimd-cb", verifier: oauth2.GenerateVerifier()}
	b := newBrowser(t)
	page, csrf, req, _ := s.toConsent(t, b, c, "st-m", "tool:crm_get_customer", "alice")
	if !strings.Contains(page, "Metadata Copilot") || !strings.Contains(page, html.EscapeString(id)) {
		t.Errorf("consent page does not name the metadata-document client:\n%s", page)
	}
	_, q := s.decide(t, b, csrf, req, "approve")
	tok := s.redeem(t, c, q.Get("code"))
	wantOK(t, "CIMD redemption", tok)
	if act, _ := jwtClaims(t, tok.str("access_token"))["act"].(map[string]any); act["sub"] != id {
		t.Errorf("act = %v, want the document URL", act)
	}
	mc := connect(t, gw, tok.str("access_token"), eras[0])
	if names := listNames(t, mc); !slices.Equal(names, []string{"crm_get_customer"}) {
		t.Errorf("tools/list = %v", names)
	}

	// A document whose client_id is not its own URL is refused, with no redirect.
	liar := copilot{id: docSrv.URL + "/oauth/liar.json", redirect: "http://127.0.0.1:51000/cimd-cb", verifier: oauth2.GenerateVerifier()}
	resp, _ := newBrowser(t).follow(s.authorizeURL(liar, "st", "", "alice"), gw)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("lying metadata document: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A redirect URI outside the document is refused.
	bad := c
	bad.redirect = "http://127.0.0.1:51000/elsewhere"
	if resp, _ := newBrowser(t).follow(s.authorizeURL(bad, "st", "", "alice"), gw); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("redirect outside the document: %d", resp.StatusCode)
	}
}

// TestOAuthReplicas: two gateways on one Redis serve one journey in turns —
// every piece of OAuth state is shared — and a refresh-token reuse seen by
// one revokes the family on both.
func TestOAuthReplicas(t *testing.T) {
	s := startOAuthReplicas(t, 2, redistest.Start(t))
	a, b := s.replicas[0], s.replicas[1]
	// Registered on B, authorized (and signed in) on A.
	id := registerClient(t, b.URL, "Replica Copilot", "http://127.0.0.1/cb")
	c := copilot{id: id, redirect: "http://127.0.0.1:52000/cb", verifier: oauth2.GenerateVerifier()}
	br := newBrowser(t)
	page, csrf, req, _ := s.toConsent(t, br, c, "st-r", "tool:crm_get_customer", "bob")
	if !strings.Contains(page, "Replica Copilot") {
		t.Fatalf("consent on A lacks the client registered on B:\n%s", page)
	}
	// The consent page and decision on B (cookies are per host, not port).
	resp, pageB := br.follow(b.URL+"/oauth/consent?request="+url.QueryEscape(req), b.URL)
	if resp.StatusCode != http.StatusOK || match(t, csrfRe, pageB) != csrf {
		t.Fatalf("consent page on B: %d", resp.StatusCode)
	}
	resp, _ = br.postForm(b.URL+"/oauth/consent", url.Values{"csrf": {csrf}, "request": {req}, "decision": {"approve"}})
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" || loc.Query().Get("iss") != a.URL {
		t.Fatalf("approve on B: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Code redeemed on A, refreshed on B.
	tok := s.redeem(t, c, loc.Query().Get("code"))
	wantOK(t, "redeem on A", tok)
	s2 := *s
	s2.gw = b
	tok2 := s2.refresh(t, c, tok.str("refresh_token"))
	wantOK(t, "refresh on B", tok2)
	for _, g := range s.replicas {
		if st := mcpStatus(t, g.URL, tok2.str("access_token")); st != http.StatusOK {
			t.Fatalf("refreshed token at %s: %d", g.URL, st)
		}
	}
	// The first refresh token again, on A: both replicas refuse the family.
	wantGrantError(t, "reuse on A", s.refresh(t, c, tok.str("refresh_token")), "invalid_grant")
	for _, g := range s.replicas {
		waitRefused(t, g.URL, tok2.str("access_token"), "latest access token at "+g.URL)
	}
	wantGrantError(t, "latest refresh token on B", s2.refresh(t, c, tok2.str("refresh_token")), "invalid_grant")
}

// TestOAuthDemo: `gateway demo` lets a copilot connect by OAuth with the
// development issuer as the company IdP.
func TestOAuthDemo(t *testing.T) {
	cmd := exec.Command(gatewayBin, "demo", "--listen", "127.0.0.1:0", "--audit", filepath.Join(t.TempDir(), "audit.log"))
	p := startProcess(t, "demo", cmd)
	urlRe := regexp.MustCompile(`MCP endpoint\s+(http://\S+)/mcp`)
	issRe := regexp.MustCompile(`dev issuer\s+(http://\S+)`)
	var gwURL, issURL string
	deadline := time.Now().Add(60 * time.Second)
	for gwURL == "" || issURL == "" {
		out := p.logs.String()
		if m := urlRe.FindStringSubmatch(out); m != nil {
			gwURL = m[1]
		}
		if m := issRe.FindStringSubmatch(out); m != nil {
			issURL = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo printed no URLs:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.logs.String(), gwURL+"/oauth/agents") {
		t.Errorf("demo does not point to My agents:\n%s", p.logs.String())
	}
	iss, err := devissuer.New(devissuer.Options{Issuer: issURL}) // only for its URL in the helpers
	if err != nil {
		t.Fatal(err)
	}
	s := &oauthStack{iss: iss, gw: &gateway{URL: gwURL}}
	id := registerClient(t, gwURL, "Demo Copilot", "http://127.0.0.1/cb")
	c := copilot{id: id, redirect: "http://127.0.0.1:53000/cb", verifier: oauth2.GenerateVerifier()}
	tok := s.redeem(t, c, s.codeFor(t, newBrowser(t), c, "carol"))
	wantOK(t, "demo redemption", tok)
	mc := connect(t, gwURL, tok.str("access_token"), eras[0])
	if names := listNames(t, mc); !slices.Contains(names, "crm_get_customer") || slices.Contains(names, "crm_create_ticket") {
		t.Errorf("carol (viewer) through OAuth sees %v", names)
	}
}
