package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

const testPublicURL = "http://127.0.0.1:1" // the fixture's public_url

// Tokens for the preview pr-1 (the fixture's authenticator maps them):
// alice's, one issued long before pr-1 was created, one without iat, and
// one for another preview.
func init() {
	pr1 := EnvironmentResource(testPublicURL, "pr-1")
	base := authn.Principal{Issuer: "https://idp.test", Subject: "alice", Roles: []string{"support"}, Agent: "copilot",
		Claims: map[string]any{}, LiveAudienceOnly: true, Audiences: []string{pr1}, IssuedAt: time.Now()}
	add := func(tok string, f func(p *authn.Principal)) {
		p := base
		f(&p)
		principals[tok] = &p
	}
	add("pv-alice", func(*authn.Principal) {})
	add("pv-old", func(p *authn.Principal) { p.IssuedAt = time.Now().Add(-3 * time.Hour) })
	add("pv-noiat", func(p *authn.Principal) { p.IssuedAt = time.Time{} })
	add("pv-other", func(p *authn.Principal) { p.Audiences = []string{EnvironmentResource(testPublicURL, "pr-2")} })
}

// recordingAsserter signs nothing: it records the assertions asked of it.
type recordingAsserter struct {
	tag string
	mu  sync.Mutex
	got []delegation.Assertion
}

func (r *recordingAsserter) Assert(_ context.Context, a delegation.Assertion) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, a)
	return r.tag + "-assertion", nil
}

func (r *recordingAsserter) assertions() []delegation.Assertion {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// recordingPolicy allows everything and records what it was asked.
type recordingPolicy struct {
	allowAll
	mu     sync.Mutex
	inputs []policy.Input
}

func (p *recordingPolicy) Decide(ctx context.Context, in *policy.Input) (policy.Decision, error) {
	p.mu.Lock()
	p.inputs = append(p.inputs, *in)
	p.mu.Unlock()
	return p.allowAll.Decide(ctx, in)
}

func (p *recordingPolicy) Allowed(ctx context.Context, in *policy.Input, ts []policy.Tool) (map[string]bool, error) {
	p.mu.Lock()
	p.inputs = append(p.inputs, *in)
	p.mu.Unlock()
	return p.allowAll.Allowed(ctx, in, ts)
}

func (p *recordingPolicy) seen() []policy.Input {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.inputs)
}

// preview is a branch's deployment: the production API plus one
// operation, answering differently.
type preview struct {
	hits    atomic.Int64
	authz   atomic.Value // the last Authorization header
	catalog *tools.Catalog
	policy  *recordingPolicy
	ident   *recordingAsserter
	created time.Time
}

const previewDoc = `{"openapi":"3.1.0","info":{"title":"t","version":"2"},"paths":{
 "/customers/{id}":{"get":{"operationId":"get_customer","tags":["customers"],"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"200":{"description":"ok"}}}},
 "/branch":{"get":{"operationId":"branch_only","tags":["customers"],"responses":{"200":{"description":"ok"}}}}}}`

func newPreview(t *testing.T) *preview {
	t.Helper()
	pv := &preview{policy: &recordingPolicy{}, ident: &recordingAsserter{tag: "preview"}, created: time.Now().Add(-time.Hour)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, previewDoc) })
	mux.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		pv.hits.Add(1)
		pv.authz.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"customer_id":%q,"served_by":"branch feat-x"}`, r.PathValue("id"))
	})
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)
	pv.catalog = tools.NewCatalog([]tools.Upstream{{Name: "crm", BaseURL: up.URL, OpenAPI: up.URL + "/openapi.json"}}, up.Client(), nil)
	if err := pv.catalog.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pv
}

func (pv *preview) environment(name string) Environment {
	return Environment{
		Name: name, Catalog: pv.catalog, Policy: pv.policy, Identity: pv.ident, Created: pv.created,
		Preview: &policy.Preview{Name: name, Branch: "feat-x", PullRequest: 42, Repository: "acme/crm", Owner: "alice",
			CreatedBy: "ci", ExpiresAt: "2030-01-01T00:00:00Z"},
	}
}

// openPreview runs a fixture (production with its own identity and a
// recording policy) with preview pr-1 open.
func openPreview(t *testing.T) (*fixture, *preview, *recordingAsserter, *recordingPolicy) {
	t.Helper()
	prodIdent, prodPolicy := &recordingAsserter{tag: "production"}, &recordingPolicy{}
	f := newFixture(t, fixtureOpts{identity: prodIdent, policy: prodPolicy})
	pv := newPreview(t)
	if err := f.srv.OpenEnvironment(context.Background(), pv.environment("pr-1")); err != nil {
		t.Fatal(err)
	}
	return f, pv, prodIdent, prodPolicy
}

func clientAt(t *testing.T, url, token string) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr)
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatalf("initialize at %s: %v", url, err)
	}
	return c
}

// TestPreviewServesOnlyItsCatalogue: at /env/pr-1/mcp a preview token
// lists the branch's tools and calls the branch's service, never
// production's; the policy sees the preview; the upstream gets the
// preview's assertion (iss public_url/env/pr-1, its own key); the audit
// record names the preview.
func TestPreviewServesOnlyItsCatalogue(t *testing.T) {
	f, pv, prodIdent, prodPolicy := openPreview(t)
	c := clientAt(t, f.url+"/env/pr-1/mcp", "pv-alice")
	got := names(t, c)
	slices.Sort(got)
	if want := []string{"crm_branch_only", "crm_get_customer"}; !slices.Equal(got, want) {
		t.Fatalf("preview lists %v, want only the branch's %v", got, want)
	}
	res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"})
	if res.IsError || !strings.Contains(text(res), "branch feat-x") {
		t.Fatalf("preview call: %s", text(res))
	}
	if pv.hits.Load() != 1 || f.hits.Load() != 0 {
		t.Fatalf("hits: preview %d, production %d; want 1 and 0", pv.hits.Load(), f.hits.Load())
	}
	if got := pv.authz.Load(); got != "Bearer preview-assertion" {
		t.Errorf("the branch's upstream got %v, want the preview's assertion", got)
	}
	as := pv.ident.assertions()
	if len(as) != 1 || as[0].Issuer != testPublicURL+"/env/pr-1" || as[0].Subject != "alice" {
		t.Errorf("preview assertions %+v, want one with iss %s/env/pr-1", as, testPublicURL)
	}
	if n := len(prodIdent.assertions()); n != 0 {
		t.Errorf("production's identity signed %d assertions for a preview call", n)
	}
	var sawCall bool
	for _, in := range pv.policy.seen() {
		if in.Environment != "pr-1" || in.Preview == nil || in.Preview.Branch != "feat-x" || in.Preview.PullRequest != 42 {
			t.Errorf("preview policy input: environment %q preview %+v", in.Environment, in.Preview)
		}
		sawCall = sawCall || in.Action == policy.ActionCall
	}
	if !sawCall {
		t.Error("the preview's policy never decided the call")
	}
	if n := len(prodPolicy.seen()); n != 0 {
		t.Errorf("production's policy was asked %d times about a preview with its own policy", n)
	}
	recs := f.audit.records()
	if len(recs) == 0 || recs[len(recs)-1].Environment != "pr-1" || recs[len(recs)-1].Tool != "crm_get_customer" {
		t.Fatalf("audit %+v, want the call recorded with environment pr-1", recs)
	}

	// Production, meanwhile, is untouched: its tools, its upstream, its
	// policy input (preview null), its assertion.
	pc := f.client(t, "alice")
	if slices.Contains(names(t, pc), "crm_branch_only") {
		t.Error("production lists the branch's tool")
	}
	if res := callT(t, pc, "crm_get_customer", map[string]any{"id": "c-2"}); res.IsError {
		t.Fatalf("production call: %s", text(res))
	}
	if f.hits.Load() != 1 || pv.hits.Load() != 1 {
		t.Errorf("hits after a production call: production %d, preview %d", f.hits.Load(), pv.hits.Load())
	}
	for _, in := range prodPolicy.seen() {
		if in.Preview != nil || in.Environment != "test" {
			t.Errorf("production policy input: environment %q preview %+v, want test and null", in.Environment, in.Preview)
		}
	}
	b, _ := json.Marshal(prodPolicy.seen()[0])
	if !strings.Contains(string(b), `"preview":null`) {
		t.Errorf("production input %s, want preview null", b)
	}
	if as := prodIdent.assertions(); len(as) != 1 || as[0].Issuer != testPublicURL {
		t.Errorf("production assertions %+v, want one with iss public_url", as)
	}
}

// TestPreviewWithoutPolicyUsesProduction's: a preview opened without a
// policy is decided by production's, with the preview in the input.
func TestPreviewWithoutPolicyUsesProductions(t *testing.T) {
	prodPolicy := &recordingPolicy{}
	f := newFixture(t, fixtureOpts{policy: prodPolicy})
	pv := newPreview(t)
	e := pv.environment("pr-1")
	e.Policy = nil
	if err := f.srv.OpenEnvironment(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	c := clientAt(t, f.url+"/env/pr-1/mcp", "pv-alice")
	if res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
		t.Fatal(text(res))
	}
	seen := prodPolicy.seen()
	if len(seen) == 0 || seen[len(seen)-1].Preview == nil || seen[len(seen)-1].Environment != "pr-1" {
		t.Fatalf("production's policy inputs %+v, want the preview's", seen)
	}
}

// TestEnvironmentAudience: a token is accepted only at the environment it
// was issued for, and at a preview only when issued since it was created.
func TestEnvironmentAudience(t *testing.T) {
	f, _, _, _ := openPreview(t)
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
	for _, tc := range []struct {
		name, path, token, desc string
	}{
		{"production token at the preview", "/env/pr-1/mcp", "alice", "not issued for environment pr-1"},
		{"preview token at production", "/mcp", "pv-alice", "issued for a preview environment, not for production"},
		{"another preview's token", "/env/pr-1/mcp", "pv-other", "not issued for environment pr-1"},
		{"token older than the preview", "/env/pr-1/mcp", "pv-old", "issued before environment pr-1 was created"},
		{"token without iat", "/env/pr-1/mcp", "pv-noiat", "has no iat"},
	} {
		resp, body := rawDo(t, http.MethodPost, f.url+tc.path, tc.token, list, hdr)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", tc.name, resp.StatusCode, body)
			continue
		}
		wantRPCError(t, tc.name, resp, body)
		ch := resp.Header.Get("WWW-Authenticate")
		if !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, tc.desc) {
			t.Errorf("%s: WWW-Authenticate %q, want invalid_token naming %q", tc.name, ch, tc.desc)
		}
		meta := testPublicURL + "/.well-known/oauth-protected-resource" + tc.path
		if !strings.Contains(ch, `resource_metadata="`+meta+`"`) {
			t.Errorf("%s: WWW-Authenticate %q, want the metadata of %s", tc.name, ch, tc.path)
		}
	}
	// Both eras serve the preview: 2026-07-28 here, a legacy session below.
	resp, body := rawDo(t, http.MethodPost, f.url+"/env/pr-1/mcp", "pv-alice", list, hdr)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "crm_branch_only") {
		t.Fatalf("2026-07-28 tools/list at the preview: %d %s", resp.StatusCode, body)
	}
	sid := openLegacyAt(t, f.url+"/env/pr-1/mcp", "pv-alice", "2025-11-25")
	resp, body = rawDo(t, http.MethodPost, f.url+"/env/pr-1/mcp", "pv-alice", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "crm_branch_only") {
		t.Fatalf("2025-11-25 tools/list at the preview: %d %s", resp.StatusCode, body)
	}
	// No token: the challenge names the preview's metadata.
	resp, body = rawDo(t, http.MethodPost, f.url+"/env/pr-1/mcp", "", list, hdr)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "/.well-known/oauth-protected-resource/env/pr-1/mcp") {
		t.Errorf("no token at the preview: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
}

// openLegacyAt opens a legacy session at an MCP endpoint url.
func openLegacyAt(t *testing.T, url, token, version string) string {
	t.Helper()
	resp, body := rawDo(t, http.MethodPost, url, token,
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize %s at %s: %d %s", version, url, resp.StatusCode, body)
	}
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": version}
	if resp, body := rawDo(t, http.MethodPost, url, token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	return sid
}

// TestSessionBoundToEnvironment: a legacy session opened at one environment
// is refused at another, for the same human and agent (as unknown: 404).
func TestSessionBoundToEnvironment(t *testing.T) {
	f, _, _, _ := openPreview(t)
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	prodSID := openLegacyAt(t, f.url+"/mcp", "alice", "2025-11-25")
	pvSID := openLegacyAt(t, f.url+"/env/pr-1/mcp", "pv-alice", "2025-11-25")
	for _, tc := range []struct{ name, path, token, sid string }{
		{"production session at the preview", "/env/pr-1/mcp", "pv-alice", prodSID},
		{"preview session at production", "/mcp", "alice", pvSID},
	} {
		resp, body := rawDo(t, http.MethodPost, f.url+tc.path, tc.token, list, map[string]string{"Mcp-Session-Id": tc.sid, "Mcp-Protocol-Version": "2025-11-25"})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 404", tc.name, resp.StatusCode, body)
		}
	}
}

// TestRetireEnvironment: once retired, a preview answers 401 "environment
// retired" (with the challenge), its sessions are not revived by a preview
// re-created under the same name, its caches are dropped, and Live says
// no; production keeps serving.
func TestRetireEnvironment(t *testing.T) {
	f, pv, _, _ := openPreview(t)
	ctx := context.Background()
	url := f.url + "/env/pr-1/mcp"
	c := clientAt(t, url, "pv-alice")
	if res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
		t.Fatal(text(res))
	}
	sid := openLegacyAt(t, url, "pv-alice", "2025-11-25")
	resource := EnvironmentResource(testPublicURL, "pr-1")
	if !f.srv.Live(resource) {
		t.Fatal("Live: the open preview is not live")
	}
	e, _ := f.srv.lookupEnv("pr-1")

	f.srv.RetireEnvironment(ctx, "pr-1")
	if f.srv.Live(resource) {
		t.Error("Live: a retired preview is live")
	}
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	resp, body := rawDo(t, http.MethodPost, url, "pv-alice", list, hdr)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("retired: %d %s, want 401", resp.StatusCode, body)
	}
	wantRPCError(t, "retired", resp, body)
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error_description="environment retired"`) ||
		!strings.Contains(ch, "/.well-known/oauth-protected-resource/env/pr-1/mcp") {
		t.Errorf("retired: WWW-Authenticate %q", ch)
	}
	if _, err := c.ListTools(ctx, mcp.ListToolsRequest{}); err == nil {
		t.Error("the client's session still lists tools after retirement")
	}
	e.visCache.mu.Lock()
	vis := len(e.visCache.m)
	e.visCache.mu.Unlock()
	e.assertions.mu.Lock()
	as := len(e.assertions.m)
	e.assertions.mu.Unlock()
	if vis != 0 || as != 0 {
		t.Errorf("retired preview keeps %d visible-tool and %d assertion cache entries", vis, as)
	}
	// A name never opened, retired (another replica retired it): 401 too.
	f.srv.RetireEnvironment(ctx, "pr-9")
	if resp, _ := rawDo(t, http.MethodPost, f.url+"/env/pr-9/mcp", "pv-alice", list, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("retired, never opened: %d, want 401", resp.StatusCode)
	}
	f.srv.RetireEnvironment(ctx, "pr-1") // idempotent

	// Re-created under the same name: the old session stays dead, and the
	// old token too (issued before the new preview).
	again := pv.environment("pr-1")
	again.Created = time.Now().Add(2 * time.Second) // past every token minted so far, at second precision
	if err := f.srv.OpenEnvironment(ctx, again); err != nil {
		t.Fatal(err)
	}
	principals["pv-fresh"] = &authn.Principal{Issuer: "https://idp.test", Subject: "alice", Agent: "copilot", Claims: map[string]any{},
		LiveAudienceOnly: true, Audiences: []string{resource}, IssuedAt: time.Now().Add(3 * time.Second)}
	t.Cleanup(func() { delete(principals, "pv-fresh") })
	if resp, body := rawDo(t, http.MethodPost, url, "pv-fresh", list, hdr); resp.StatusCode != http.StatusNotFound {
		t.Errorf("old session at the re-created preview: %d %s, want 404", resp.StatusCode, body)
	}
	if resp, body := rawDo(t, http.MethodPost, url, "pv-alice", list, hdr); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), "issued before environment pr-1 was created") {
		t.Errorf("old token at the re-created preview: %d %s", resp.StatusCode, body)
	}
	// Production was never affected.
	if res := callT(t, f.client(t, "alice"), "crm_get_customer", map[string]any{"id": "c-2"}); res.IsError {
		t.Errorf("production after the retirement: %s", text(res))
	}
}

// TestEnvironmentMetadata: each live preview has its RFC 9728 document;
// an unknown or retired one has none.
func TestEnvironmentMetadata(t *testing.T) {
	f, _, _, _ := openPreview(t)
	resp, body := rawDo(t, http.MethodGet, f.url+"/.well-known/oauth-protected-resource/env/pr-1/mcp", "", "", nil)
	var doc struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil || doc.Resource != testPublicURL+"/env/pr-1/mcp" ||
		len(doc.AuthorizationServers) == 0 {
		t.Fatalf("metadata: %d %s", resp.StatusCode, body)
	}
	if resp, body := rawDo(t, http.MethodGet, f.url+"/.well-known/oauth-protected-resource/mcp", "", "", nil); !strings.Contains(body, `"resource":"`+testPublicURL+`/mcp"`) {
		t.Errorf("production metadata changed: %d %s", resp.StatusCode, body)
	}
	for _, p := range []string{"/env/pr-2/mcp", "/env/PR-1/mcp", "/env/pr-1/mcp/x"} {
		if resp, _ := rawDo(t, http.MethodGet, f.url+"/.well-known/oauth-protected-resource"+p, "", "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("metadata of %s: %d, want 404", p, resp.StatusCode)
		}
	}
	f.srv.RetireEnvironment(context.Background(), "pr-1")
	if resp, _ := rawDo(t, http.MethodGet, f.url+"/.well-known/oauth-protected-resource/env/pr-1/mcp", "", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("metadata of a retired preview: %d, want 404", resp.StatusCode)
	}
}

// TestEnvironmentPaths: only /env/{name}/mcp with a valid, live name
// reaches a preview; everything else is a JSON-RPC 404 (never production).
func TestEnvironmentPaths(t *testing.T) {
	f, _, _, _ := openPreview(t)
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
	for _, p := range []string{
		"/env/pr-2/mcp", "/env/PR-1/mcp", "/env/pr-1%2Fmcp", "/env/pr%2D1/mcp", "/env/pr-1/mcp/", "/env/pr-1/mcpx",
		"/env//mcp", "/env/default/mcp", "/env/" + strings.Repeat("a", 41) + "/mcp", "/env/pr-1", "/env/", "/env/pr-1/x/mcp",
	} {
		resp, body := rawDo(t, http.MethodPost, f.url+p, "alice", list, hdr)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 404", p, resp.StatusCode, body)
			continue
		}
		wantRPCError(t, p, resp, body)
	}
	// A dot segment is cleaned by the mux into a redirect, never served.
	req, _ := http.NewRequest(http.MethodPost, f.url+"/env/pr-1/../../mcp", strings.NewReader(list))
	req.URL.Opaque = "/env/pr-1/../../mcp"
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("dot segments: %d, want no answer from an MCP endpoint", resp.StatusCode)
	}
}

func TestParseEnvPath(t *testing.T) {
	for in, want := range map[string]string{
		"/env/pr-1/mcp": "pr-1", "/env/a/mcp": "a", "/env/" + strings.Repeat("z", 40) + "/mcp": strings.Repeat("z", 40),
		"/env/0-9/mcp": "0-9",
	} {
		if got, ok := parseEnvPath(in, ""); !ok || got != want {
			t.Errorf("parseEnvPath(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"/env/default/mcp", "/env/Pr/mcp", "/env/a_b/mcp", "/env/a.b/mcp", "/env/../mcp", "/env/a/../mcp",
		"/env/a%2fb/mcp", "/env/a/mcp/", "/env/a/b/mcp", "/mcp", "env/a/mcp", "/env/" + strings.Repeat("z", 41) + "/mcp", "/env/é/mcp"} {
		if got, ok := parseEnvPath(in, ""); ok {
			t.Errorf("parseEnvPath(%q) = %q, want refused", in, got)
		}
	}
}

// FuzzParseEnvPath: whatever the path, an accepted name is a valid
// preview name and the path is exactly /env/{name}/mcp.
func FuzzParseEnvPath(f *testing.F) {
	for _, s := range []string{"/env/pr-1/mcp", "/env/../mcp", "/env/a%2Fb/mcp", "/env//mcp", "/env/default/mcp", "/env/a/mcp/mcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := parseEnvPath(p, "")
		if !ok {
			return
		}
		if !validEnvName(name) || p != "/env/"+name+"/mcp" {
			t.Fatalf("parseEnvPath(%q) accepted %q", p, name)
		}
	})
}

// TestVerifyTokenAtPreview: token exchange's verifier confines a preview's
// token to its preview, and refuses one of a retired or re-created preview.
func TestVerifyTokenAtPreview(t *testing.T) {
	f, _, _, _ := openPreview(t)
	ctx := context.Background()
	sub, err := f.srv.VerifyToken(ctx, "pv-alice")
	if err != nil || sub.Resource != EnvironmentResource(testPublicURL, "pr-1") {
		t.Fatalf("preview token: %+v %v, want confined to pr-1", sub, err)
	}
	if sub, err := f.srv.VerifyToken(ctx, "alice"); err != nil || sub.Resource != "" {
		t.Fatalf("production token: %+v %v, want unconfined", sub, err)
	}
	if _, err := f.srv.VerifyToken(ctx, "pv-old"); err == nil {
		t.Error("a token older than the preview verified")
	}
	f.srv.RetireEnvironment(ctx, "pr-1")
	if _, err := f.srv.VerifyToken(ctx, "pv-alice"); err == nil || !strings.Contains(err.Error(), "environment retired") {
		t.Errorf("retired preview's token: %v, want environment retired", err)
	}
}

func TestOpenEnvironmentRefusesBadNames(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	pv := newPreview(t)
	for _, name := range []string{"", "default", "PR-1", "a/b", "../x", strings.Repeat("a", 41)} {
		if err := f.srv.OpenEnvironment(context.Background(), pv.environment(name)); err == nil {
			t.Errorf("OpenEnvironment(%q) accepted", name)
		}
	}
	e := pv.environment("pr-1")
	e.Catalog = nil
	if err := f.srv.OpenEnvironment(context.Background(), e); err == nil {
		t.Error("an environment without a catalogue opened")
	}
}

// TestRetireEndsOpenStreams: a legacy session's event stream open at a
// preview ends when the preview is retired.
func TestRetireEndsOpenStreams(t *testing.T) {
	f, _, _, _ := openPreview(t)
	url := f.url + "/env/pr-1/mcp"
	sid := openLegacyAt(t, url, "pv-alice", "2025-11-25")
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer pv-alice")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	f.srv.RetireEnvironment(context.Background(), "pr-1")
	select {
	case <-ended:
	case <-time.After(30 * time.Second): // a hang bound, not a measurement
		t.Fatal("the preview's event stream is still open after its retirement")
	}
}

// TestPreviewRateLimitsAreItsOwn: calls at a preview are charged to the
// preview's buckets, never to the human's production budget.
func TestPreviewRateLimitsAreItsOwn(t *testing.T) {
	f, _, _, _ := openPreview(t)
	f.srv.cfg.RateLimit.Default.Requests = 1
	pc := clientAt(t, f.url+"/env/pr-1/mcp", "pv-alice")
	if res := callT(t, pc, "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
		t.Fatalf("first preview call: %s", text(res))
	}
	if res := callT(t, pc, "crm_get_customer", map[string]any{"id": "c-1"}); !res.IsError || !strings.Contains(text(res), "rate limited") {
		t.Fatalf("second preview call: %s, want rate limited", text(res))
	}
	if res := callT(t, f.client(t, "alice"), "crm_get_customer", map[string]any{"id": "c-2"}); res.IsError {
		t.Fatalf("production call after the preview's budget is spent: %s", text(res))
	}
}
