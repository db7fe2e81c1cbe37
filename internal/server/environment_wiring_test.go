package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/devissuer"
)

// TestPreviewWithRealTokens wires the real parts as the gateway does: an
// IdP (the development issuer), authn with LiveAudience = Server.Live, the
// gateway's delegation issuer, and token exchange with Resources = the
// Server. A human's production token is exchanged for a preview token,
// which works at the preview only; after retirement neither exchange nor
// the token work.
func TestPreviewWithRealTokens(t *testing.T) {
	ctx := context.Background()
	idp, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	keys, err := delegation.NewKeys(ctx, delegation.NewMemoryKeyStore(), delegation.KeyOptions{MaxTokenTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var srv atomic.Pointer[Server]
	an, err := authn.New(ctx, authn.Config{
		Issuers: []authn.IssuerConfig{
			{Issuer: idp.URL(), Audiences: []string{testPublicURL + "/mcp"}},
			{Issuer: testPublicURL, Audiences: []string{testPublicURL + "/mcp"}, KeySet: keys.AccessTokenKeySet(), Delegation: true},
		},
		LiveAudience: func(aud string) bool { s := srv.Load(); return s != nil && s.Live(aud) },
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{authn: an})
	srv.Store(f.srv)
	pv := newPreview(t)
	e := pv.environment("pr-1")
	e.Created = time.Now().Add(-time.Minute)
	if err := f.srv.OpenEnvironment(ctx, e); err != nil {
		t.Fatal(err)
	}
	ex := &delegation.Exchange{Keys: keys, Verifier: f.srv, Revocations: f.store, Issuer: testPublicURL,
		Audience: testPublicURL + "/mcp", Resources: f.srv}
	human, err := idp.Mint(map[string]any{"sub": "alice", "aud": testPublicURL + "/mcp", "azp": "copilot", "roles": []any{"support"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(subject string, resource string) (int, map[string]any) {
		form := url.Values{"grant_type": {delegation.GrantTypeTokenExchange}, "subject_token": {subject},
			"subject_token_type": {delegation.TokenTypeAccessToken}, "scope": {"tool:*"}}
		if resource != "" {
			form.Set("resource", resource)
		}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		ex.TokenHandler().ServeHTTP(w, r)
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out
	}
	preview := EnvironmentResource(testPublicURL, "pr-1")
	code, out := exchange(human, preview)
	tok, _ := out["access_token"].(string)
	if code != http.StatusOK || tok == "" {
		t.Fatalf("exchange for the preview: %d %v", code, out)
	}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
	post := func(path, token string) (*http.Response, string) {
		return rawDo(t, http.MethodPost, f.url+path, token, list, hdr)
	}
	if resp, body := post("/env/pr-1/mcp", tok); resp.StatusCode != http.StatusOK || !strings.Contains(body, "crm_branch_only") {
		t.Fatalf("preview token at the preview: %d %s", resp.StatusCode, body)
	}
	if resp, body := post("/mcp", tok); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("preview token at production: %d %s, want 401", resp.StatusCode, body)
	}
	if resp, body := post("/env/pr-1/mcp", human); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("production token at the preview: %d %s, want 401", resp.StatusCode, body)
	}
	if resp, body := post("/mcp", human); resp.StatusCode != http.StatusOK {
		t.Errorf("production token at production: %d %s", resp.StatusCode, body)
	}
	if code, out := exchange(tok, testPublicURL+"/mcp"); code != http.StatusBadRequest || out["error"] != "invalid_target" {
		t.Errorf("preview token exchanged for production: %d %v, want invalid_target", code, out)
	}

	f.srv.RetireEnvironment(ctx, "pr-1")
	resp, body := post("/env/pr-1/mcp", tok)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "environment retired") {
		t.Errorf("preview token after retirement: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	if resp, body := post("/mcp", tok); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("retired preview's token at production: %d %s, want 401", resp.StatusCode, body)
	}
	if code, out := exchange(human, preview); code != http.StatusBadRequest || out["error"] != "invalid_target" {
		t.Errorf("exchange for a retired preview: %d %v, want invalid_target", code, out)
	}
}
