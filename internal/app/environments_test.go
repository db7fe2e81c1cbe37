package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/devissuer"
	"github.com/agentharness/harness/internal/environments"
	"github.com/agentharness/harness/internal/sampleapi"
)

// TestPreviewEnvironmentsWired: with an environments section the gateway
// mounts the API; a preview an admin creates is served at
// /env/{name}/mcp with its own metadata and a key of its own in the JWKS;
// retired, its metadata is gone and its key leaves the JWKS. Without the
// section the API is 404.
func TestPreviewEnvironmentsWired(t *testing.T) {
	idp, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	branch := httptest.NewServer(sampleapi.New().Handler())
	t.Cleanup(branch.Close)
	dir := t.TempDir()
	const public = "http://127.0.0.1:18080"
	yaml := fmt.Sprintf(`public_url: %s
auth: {issuers: [{issuer: %s}]}
audit: {path: %s}
environments:
  admin_roles: [platform-admin]
  allowed_upstreams: ["http://127.0.0.1:*"]
`, public, idp.URL(), filepath.Join(dir, "audit.log"))
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	a, err := Build(context.Background(), cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	h := a.Server.Handler()
	do := func(method, path, token string, body []byte) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	jwks := func() int {
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(do(http.MethodGet, "/.well-known/jwks.json", "", nil).Body.Bytes(), &set); err != nil {
			t.Fatal(err)
		}
		return len(set.Keys)
	}
	before := jwks()
	admin, err := idp.Mint(map[string]any{"sub": "platform-pat", "aud": public, "roles": []string{"platform-admin"}, "azp": "cli"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"branch": "feat-x", "pull_request": 1, "repository": "acme/crm",
		"upstreams": map[string]any{"crm": map[string]any{"base_url": branch.URL, "openapi": branch.URL + "/openapi.json"}}})
	if rec := do(http.MethodPut, "/environments/pr-1", "", body); rec.Code != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", rec.Code, rec.Body)
	}
	rec := do(http.MethodPut, "/environments/pr-1", admin, body)
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), public+"/env/pr-1/mcp") {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	meta := do(http.MethodGet, "/.well-known/oauth-protected-resource/env/pr-1/mcp", "", nil)
	if meta.Code != http.StatusOK || !strings.Contains(meta.Body.String(), `"resource":"`+public+`/env/pr-1/mcp"`) {
		t.Fatalf("metadata: %d %s", meta.Code, meta.Body)
	}
	// The JWKS is re-read from the store at most every 2s: wait for it
	// (a hang is a failure, not a threshold).
	waitKeys := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); jwks() != want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the JWKS has %d keys, want %d", jwks(), want)
			}
		}
	}
	waitKeys(before + 1) // the preview's key
	if rec := do(http.MethodDelete, "/environments/pr-1", admin, nil); rec.Code != http.StatusOK {
		t.Fatalf("retire: %d %s", rec.Code, rec.Body)
	}
	if meta := do(http.MethodGet, "/.well-known/oauth-protected-resource/env/pr-1/mcp", "", nil); meta.Code != http.StatusNotFound {
		t.Fatalf("metadata after retirement: %d", meta.Code)
	}
	waitKeys(before) // dropped with the preview

	off, err := config.Parse([]byte(fmt.Sprintf("auth: {issuers: [{issuer: %s}]}\naudit: {path: %s}\n", idp.URL(), filepath.Join(dir, "audit2.log"))), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(context.Background(), off, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	for _, p := range []string{"/environments", "/hooks/github"} {
		rec := httptest.NewRecorder()
		b.Server.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s without environments: %d", p, rec.Code)
		}
	}
}

// TestPreviewClientRedirects: a preview's upstream cannot redirect the
// gateway outside allowed_upstreams (to production, say).
func TestPreviewClientRedirects(t *testing.T) {
	prod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("production")) }))
	t.Cleanup(prod.Close)
	branch := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/inside" {
			_, _ = w.Write([]byte("branch"))
			return
		}
		target := prod.URL + "/openapi.json"
		if r.URL.Path == "/stay" {
			target = "/inside"
		}
		http.Redirect(w, r, target, http.StatusFound)
	}))
	t.Cleanup(branch.Close)
	pats, err := environments.ParsePatterns([]string{branch.URL})
	if err != nil {
		t.Fatal(err)
	}
	h := newPreviewHost(nil, http.DefaultClient, pats, "", slog.New(slog.DiscardHandler))
	if resp, err := h.client.Get(branch.URL + "/openapi.json"); err == nil || !strings.Contains(err.Error(), "allowed_upstreams") {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("a redirect to production was followed: %v", err)
	}
	resp, err := h.client.Get(branch.URL + "/stay")
	if err != nil {
		t.Fatalf("a redirect within the preview was refused: %v", err)
	}
	resp.Body.Close()
}
