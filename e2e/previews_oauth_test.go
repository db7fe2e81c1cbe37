package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/agentharness/harness/internal/devissuer"
)

// The OAuth authorization-code flow for a preview environment (issue 18,
// docs/oauth.md "Preview environments"): a copilot asks the gateway's
// authorization server for resource=<public_url>/env/<name>/mcp, and the
// grant lives and dies with that preview.

// previewOAuthBranch is the branch deployed as preview pr-7; its service
// names it in every answer, so a result shows which service answered.
const previewOAuthBranch = "feat-oauth"

// previewOAuthUpstream is the branch's service: the OAuth tests' crm
// reduced to get_customer, whose answer names the branch.
func previewOAuthUpstream(t testing.TB) string {
	t.Helper()
	doc := `{"openapi":"3.1.0","info":{"title":"crm","version":"1"},"paths":{
 "/customers/{id}":{"get":{"operationId":"get_customer","summary":"Read one customer","tags":["customers"],
   "parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"200":{"description":"ok"}}}}}}`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	})
	mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"Ada","branch":%q}`, r.PathValue("id"), previewOAuthBranch)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// startPreviewOAuth is startOAuth's stack (the development IdP as the
// login issuer, production's crm) with an environments section whose CI
// issuer is ci and whose only allowed upstream is branch.
func startPreviewOAuth(t *testing.T, ci *devissuer.Issuer, branch string) *oauthStack {
	t.Helper()
	return startOAuth(t, oauthOptions{extraYAML: fmt.Sprintf(`environments:
  ci_issuers:
    - issuer: %s
      audiences: ["http://{{LISTEN}}"]
      claims: {repository: %q, event_name: pull_request}
  allowed_upstreams: [%q]
  default_ttl: 1h
  max_ttl: 2h
`, ci.URL(), previewRepo, branch)})
}

// forResource is an authorization URL of s.authorizeURL asking for
// resource instead of production's.
func (s *oauthStack) forResource(c copilot, state, user, resource string) string {
	return strings.Replace(s.authorizeURL(c, state, "", user), "resource="+url.QueryEscape(s.gw.URL+"/mcp"), "resource="+url.QueryEscape(resource), 1)
}

// TestPreviewOAuth: CI creates preview pr-7; a copilot runs the whole
// authorization-code flow with resource= the preview's resource; the token
// works at the preview only, a production token does not; the grant
// refreshes while the preview lives and ends when it is retired.
func TestPreviewOAuth(t *testing.T) {
	ci := startIssuer(t)
	branch := previewOAuthUpstream(t)
	s := startPreviewOAuth(t, ci, branch)
	gw := s.gw.URL
	resource := gw + "/env/pr-7/mcp"
	ciTok, err := ci.Mint(devissuer.GitHubActionsClaims(devissuer.GitHubActions{
		Repository: previewRepo, Actor: "alice", PullRequest: 7, HeadRef: previewOAuthBranch, Audience: gw,
	}), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	// 1. CI creates the preview.
	status, m := apiCall(t, http.MethodPut, gw+"/environments/pr-7", ciTok, map[string]any{
		"branch": previewOAuthBranch, "pull_request": 7, "repository": previewRepo, "owner": "alice",
		"upstreams": map[string]any{"crm": map[string]any{"base_url": branch, "openapi": branch + "/openapi.json"}},
	})
	if status != http.StatusCreated || m["resource"] != resource || m["mcp_url"] != resource {
		t.Fatalf("PUT /environments/pr-7: %d %v, want 201 with resource %s", status, m, resource)
	}

	// 2. The authorization-code flow for the preview's resource.
	id := registerClient(t, gw, "Preview Copilot", "http://127.0.0.1/cb")
	c := copilot{id: id, redirect: "http://127.0.0.1:54000/cb", verifier: oauth2.GenerateVerifier()}
	b := newBrowser(t)
	resp, page := b.follow(s.forResource(c, "st-pv", "alice", resource), gw, s.iss.URL())
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Request.URL.Path, "/oauth/consent") {
		t.Fatalf("authorize with resource=%s: want the consent page, got %d at %s:\n%s", resource, resp.StatusCode, resp.Request.URL, page)
	}
	_, q := s.decide(t, b, match(t, csrfRe, page), match(t, requestRe, page), "approve")
	if q.Get("code") == "" || q.Get("state") != "st-pv" || q.Get("iss") != gw {
		t.Fatalf("approve redirect %v", q)
	}
	tok := postToken(t, gw, url.Values{
		"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {c.redirect},
		"client_id": {c.id}, "code_verifier": {c.verifier}, "resource": {resource},
	})
	wantOK(t, "redeeming the preview's code", tok)
	access := tok.str("access_token")
	if claims := jwtClaims(t, access); claims["aud"] != resource || claims["sub"] != "alice" || claims["iss"] != gw {
		t.Errorf("the preview's access token claims %v, want aud %s", claims, resource)
	}
	if st := mcpStatus(t, gw+"/env/pr-7", access); st != http.StatusOK {
		t.Errorf("the preview's token at /env/pr-7/mcp: %d, want 200", st)
	}
	for _, e := range eras {
		mc := connect(t, gw+"/env/pr-7", access, e)
		r := callTool(t, mc, "crm_get_customer", map[string]any{"id": "c-7"})
		if txt := resultText(r); r.IsError || !strings.Contains(txt, `"id":"c-7"`) || !strings.Contains(txt, `"branch":"`+previewOAuthBranch+`"`) {
			t.Errorf("%s: crm_get_customer at the preview = %v %q, want the branch's service's answer", e.name, r.IsError, txt)
		}
	}
	if st := mcpStatus(t, gw, access); st != http.StatusUnauthorized {
		t.Errorf("the preview's token at /mcp: %d, want 401", st)
	}

	// 3. A token of the same flow for production's resource: fine at /mcp,
	// refused at the preview.
	pc := copilot{id: id, redirect: "http://127.0.0.1:54001/cb", verifier: oauth2.GenerateVerifier()}
	prod := s.redeem(t, pc, s.codeFor(t, newBrowser(t), pc, "alice"))
	wantOK(t, "redeeming production's code", prod)
	if st := mcpStatus(t, gw, prod.str("access_token")); st != http.StatusOK {
		t.Errorf("production's token at /mcp: %d, want 200", st)
	}
	if st := mcpStatus(t, gw+"/env/pr-7", prod.str("access_token")); st != http.StatusUnauthorized {
		t.Errorf("production's token at /env/pr-7/mcp: %d, want 401", st)
	}

	// 4. Refresh while the preview lives: a new token for the preview.
	ref := s.refresh(t, c, tok.str("refresh_token"))
	wantOK(t, "refresh while the preview lives", ref)
	access = ref.str("access_token")
	if aud := jwtClaims(t, access)["aud"]; aud != resource {
		t.Errorf("refreshed access token aud = %v, want %s", aud, resource)
	}
	if st := mcpStatus(t, gw+"/env/pr-7", access); st != http.StatusOK {
		t.Errorf("the refreshed token at /env/pr-7/mcp: %d, want 200", st)
	}

	// 5. CI retires the preview: the grant ends with it.
	if status, m := apiCall(t, http.MethodDelete, gw+"/environments/pr-7", ciTok, nil); status != http.StatusOK || m["retired"] != true {
		t.Fatalf("DELETE /environments/pr-7: %d %v", status, m)
	}
	if status, h, body := mcpRPC(t, resource, access, "", "initialize"); !refusedRetired(status, h, body) {
		t.Errorf("the preview's token after retirement: %d %q %s, want 401 environment retired", status, h.Get("WWW-Authenticate"), body)
	}
	after := s.refresh(t, c, ref.str("refresh_token"))
	wantGrantError(t, "refresh after retirement", after, "invalid_grant")
	if d := after.str("error_description"); !strings.Contains(d, "environment retired") {
		t.Errorf("refresh after retirement: error_description %q, want environment retired", d)
	}
	resp, _ = newBrowser(t).follow(s.forResource(c, "st-gone", "alice", resource), gw)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), c.redirect) {
		t.Fatalf("authorize for the retired preview: %d %q, want a redirect to the client", resp.StatusCode, resp.Header.Get("Location"))
	}
	if q := loc.Query(); q.Get("error") != "invalid_target" || q.Get("state") != "st-gone" || q.Get("code") != "" {
		t.Errorf("authorize for the retired preview: redirect %v, want error=invalid_target", q)
	}
	// Production's grant is untouched.
	if st := mcpStatus(t, gw, prod.str("access_token")); st != http.StatusOK {
		t.Errorf("production's token after retiring the preview: %d, want 200", st)
	}
}
