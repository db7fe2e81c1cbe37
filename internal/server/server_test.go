package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/internal/store"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

// fakeAuthn maps a token string to a principal.
type fakeAuthn map[string]*authn.Principal

func (f fakeAuthn) Authenticate(_ context.Context, raw string) (*authn.Principal, error) {
	if p, ok := f[raw]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w: unknown test token", authn.ErrInvalidToken)
}

func (f fakeAuthn) Ready(context.Context) error { return nil }

// recordingAudit keeps records; it fails while failing is set.
type recordingAudit struct {
	mu      sync.Mutex
	recs    []audit.Record
	failing atomic.Bool
}

func (a *recordingAudit) Write(_ context.Context, r *audit.Record) error {
	if a.failing.Load() {
		return errors.New("disk full")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, *r)
	return nil
}

func (a *recordingAudit) records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, []ratelimit.Limit) (ratelimit.Result, error) {
	return ratelimit.Result{}, errors.New("redis: connection refused")
}

// brokenPolicy fails every evaluation.
type brokenPolicy struct{}

func (brokenPolicy) Decide(context.Context, *policy.Input) (policy.Decision, error) {
	return policy.Decision{Reason: "policy evaluation failed"}, errors.New("eval_conflict_error")
}
func (brokenPolicy) Allowed(context.Context, *policy.Input, []policy.Tool) (map[string]bool, error) {
	return nil, errors.New("eval_conflict_error")
}
func (brokenPolicy) Revision() string { return "broken" }
func (brokenPolicy) Stale() error     { return nil }

// allowAll allows everything, so the server's own checks are visible.
type allowAll struct{}

func (allowAll) Decide(context.Context, *policy.Input) (policy.Decision, error) {
	return policy.Decision{Allow: true, Reason: "test allows all"}, nil
}
func (allowAll) Allowed(_ context.Context, _ *policy.Input, ts []policy.Tool) (map[string]bool, error) {
	m := map[string]bool{}
	for _, t := range ts {
		m[t.Name] = true
	}
	return m, nil
}
func (allowAll) Revision() string { return "all" }
func (allowAll) Stale() error     { return nil }

const upstreamDoc = `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{
 "/customers/{id}":{"get":{"operationId":"get_customer","tags":["customers"],"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"200":{"description":"ok"}}}},
 "/refunds":{"post":{"operationId":"issue_refund","tags":["refunds"],"responses":{"200":{"description":"ok"}}}},
 "/list":{"get":{"operationId":"list","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/page":{"get":{"operationId":"page","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/blob":{"get":{"operationId":"blob","tags":["customers"],"responses":{"200":{"description":"ok"}}}}}}`

type fixture struct {
	srv   *Server
	url   string
	audit *recordingAudit
	hits  *atomic.Int64
	store *store.Memory
}

type fixtureOpts struct {
	policy   Decider
	limiter  ratelimit.Limiter
	mutate   func(*config.Config)
	tel      Telemetry
	security func(AuditLog) SecurityEvents // built on the fixture's audit
	identity Asserter
	authn    Authenticator // default: principals
}

var principals = fakeAuthn{
	"alice": {Issuer: "https://idp.test", Subject: "alice", Roles: []string{"support"}, Agent: "copilot", Claims: map[string]any{"tenant": "acme"}},
	"bob":   {Issuer: "https://idp.test", Subject: "bob", Roles: []string{"admin"}, Agent: "copilot", Claims: map[string]any{}},
	// noagent's token names no agent (an ID token of the gateway's own
	// sign-in client looks like this).
	"noagent": {Issuer: "https://idp.test", Subject: "carol", Roles: []string{"admin"}, Claims: map[string]any{}},
	"deleg": {Issuer: "http://gw.test", Subject: "bob", Roles: []string{"admin"}, Agent: "agent-42", Claims: map[string]any{},
		Delegation: &authn.Delegation{ID: "d-1", Scopes: []string{"tool:crm_get_*"}, ExpiresAt: time.Now().Add(time.Hour)}},
	// bob again, through agents he chose: his own token as the actor, a
	// freshly registered client, and a delegation to himself.
	"bob-self":  {Issuer: "https://idp.test", Subject: "bob", Roles: []string{"admin"}, Agent: "bob", Claims: map[string]any{}},
	"bob-fresh": {Issuer: "https://idp.test", Subject: "bob", Roles: []string{"admin"}, Agent: "client-7f3a", Claims: map[string]any{}},
	"bob-deleg": {Issuer: "http://gw.test", Subject: "bob", Roles: []string{"admin"}, Agent: "bob", Claims: map[string]any{"sub_iss": "https://idp.test"},
		Delegation: &authn.Delegation{ID: "d-2", Scopes: []string{"tool:crm_*"}, ExpiresAt: time.Now().Add(time.Hour)}},
	// Identities whose parts differ only by where the separator falls.
	"victim-x": {Issuer: "https://idp.test", Subject: "victim|x", Roles: []string{"admin"}, Agent: "copilot", Claims: map[string]any{}},
	"victim":   {Issuer: "https://idp.test", Subject: "victim", Roles: []string{"admin"}, Agent: "x|copilot", Claims: map[string]any{}},
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	var hits atomic.Int64
	up := http.NewServeMux()
	up.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, upstreamDoc) })
	up.HandleFunc("GET /customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"customer_id":%q,"tenant_id":"acme","card_number":"4111 1111 1111 1111","notes":"key sk_live_abcdefghijklmnopqrstuvwx"}`, r.PathValue("id"))
	})
	up.HandleFunc("POST /refunds", func(w http.ResponseWriter, r *http.Request) { hits.Add(1); fmt.Fprint(w, `{}`) })
	up.HandleFunc("GET /list", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"tenant_id":"acme","n":1},{"tenant_id":"globex","n":2}]`)
	})
	up.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, `<h1>oops</h1> token sk_live_abcdefghijklmnopqrstuvwx`)
	})
	up.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte{0, 1, 2, 0xff, 0xfe})
	})
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)

	cfg, err := config.Parse([]byte(fmt.Sprintf(`listen: 127.0.0.1:1
public_url: http://127.0.0.1:1
environment: test
auth: {issuers: [{issuer: https://idp.test}]}
upstreams: [{name: crm, base_url: %q, openapi: %q}]
`, upstream.URL, upstream.URL+"/openapi.json")), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if o.mutate != nil {
		o.mutate(cfg)
	}
	cat := tools.NewCatalog([]tools.Upstream{{Name: "crm", BaseURL: upstream.URL, OpenAPI: upstream.URL + "/openapi.json"}}, upstream.Client(), nil)
	if err := cat.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o.policy == nil {
		eng, err := policy.New(context.Background(), policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		o.policy = eng
	}
	if o.limiter == nil {
		o.limiter = ratelimit.NewMemory()
	}
	rec := &recordingAudit{}
	st := store.NewMemory()
	var sec SecurityEvents
	if o.security != nil {
		sec = o.security(rec)
	}
	var an Authenticator = principals
	if o.authn != nil {
		an = o.authn
	}
	srv, err := New(Options{
		Config: cfg, Authn: an, Catalog: cat, Policy: o.policy, Limiter: o.limiter,
		Sessions: st, Audit: rec, Client: upstream.Client(), Revocations: st, Telemetry: o.tel, Security: sec,
		Identity: o.identity,
	})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, srv)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &fixture{srv: srv, url: hs.URL, audit: rec, hits: &hits, store: st}
}

func (f *fixture) client(t *testing.T, token string) *client.Client {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(f.url+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
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
		t.Fatal(err)
	}
	return c
}

func callT(t *testing.T, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return res
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := mcp.AsTextContent(c); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func names(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tl := range res.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func TestAllowedCallIsRedactedAndAudited(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.client(t, "alice")
	res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"})
	txt := text(res)
	if res.IsError || !strings.Contains(txt, `"customer_id":"c-1"`) {
		t.Fatalf("call: %v %s", res.IsError, txt)
	}
	if strings.Contains(txt, "4111") || strings.Contains(txt, "sk_live_") {
		t.Errorf("card or secret survived redaction: %s", txt)
	}
	sc, _ := json.Marshal(res.StructuredContent)
	if strings.Contains(string(sc), "4111") || strings.Contains(string(sc), "sk_live_") || !strings.Contains(string(sc), "c-1") {
		t.Errorf("structuredContent: %s", sc)
	}
	recs := f.audit.records()
	if len(recs) != 1 {
		t.Fatalf("%d audit records, want 1", len(recs))
	}
	r := recs[0]
	if r.Decision != decAllow || r.Subject != "alice" || r.Agent != "copilot" || r.Tool != "crm_get_customer" || r.Status != 200 || r.Redactions < 2 || r.PolicyDecisionID == "" {
		t.Errorf("audit record: %+v", r)
	}
}

func TestDeniedCallNeverReachesUpstream(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.client(t, "alice")
	if got := names(t, c); strings.Contains(strings.Join(got, ","), "crm_issue_refund") {
		t.Errorf("a tool the policy denies is listed: %v", got)
	}
	res := callT(t, c, "crm_issue_refund", nil)
	if !res.IsError || !strings.HasPrefix(text(res), "denied: ") {
		t.Fatalf("refund by support: %v %s", res.IsError, text(res))
	}
	if f.hits.Load() != 0 {
		t.Error("the denied call reached the upstream")
	}
	if recs := f.audit.records(); len(recs) != 1 || recs[0].Decision != decDeny {
		t.Errorf("audit: %+v", recs)
	}
}

func TestPolicyFailureFailsClosed(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: brokenPolicy{}})
	c := f.client(t, "bob")
	if got := names(t, c); len(got) != 0 {
		t.Errorf("a broken policy listed %v", got)
	}
	res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"})
	if !res.IsError || !strings.HasPrefix(text(res), "denied: ") || f.hits.Load() != 0 {
		t.Errorf("broken policy: %v %s hits=%d", res.IsError, text(res), f.hits.Load())
	}
}

func TestDelegationScopesBindEvenIfPolicyAllows(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: allowAll{}})
	c := f.client(t, "deleg")
	got := names(t, c)
	if len(got) != 1 || got[0] != "crm_get_customer" {
		t.Errorf("delegated list = %v, want only crm_get_customer", got)
	}
	res := callT(t, c, "crm_list", nil)
	if !res.IsError || !strings.Contains(text(res), "delegation d-1") || f.hits.Load() != 0 {
		t.Errorf("out-of-scope call: %v %s", res.IsError, text(res))
	}
	if res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
		t.Errorf("in-scope call: %s", text(res))
	}
	// Revocation takes effect on the next request, cache or not.
	if err := f.store.Revoke(context.Background(), "d-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "crm_get_customer", map[string]any{"id": "c-1"}
	if _, err := c.CallTool(context.Background(), req); err == nil {
		t.Error("a revoked delegation still calls tools")
	}
}

func TestDelegationRefusedWithoutRevocationStore(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: allowAll{}})
	f.srv.revoked = nil
	req, _ := http.NewRequest(http.MethodPost, f.url+"/mcp", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer deleg")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("delegation without a revocation store: %d, want 401", resp.StatusCode)
	}
}

func TestLimiterOutage(t *testing.T) {
	for _, onError := range []string{"deny", "allow"} {
		t.Run(onError, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{limiter: failingLimiter{}, mutate: func(c *config.Config) { c.RateLimit.OnError = onError }})
			res := callT(t, f.client(t, "bob"), "crm_get_customer", map[string]any{"id": "c-1"})
			if onError == "deny" {
				if !res.IsError || !strings.Contains(text(res), "rate limiter is unavailable") || f.hits.Load() != 0 {
					t.Errorf("deny: %v %s hits=%d", res.IsError, text(res), f.hits.Load())
				}
				if recs := f.audit.records(); len(recs) != 1 || recs[0].Decision != decError {
					t.Errorf("audit: %+v", recs)
				}
			} else if res.IsError || f.hits.Load() != 1 {
				t.Errorf("allow: %v %s", res.IsError, text(res))
			}
		})
	}
}

func TestRateLimited(t *testing.T) {
	f := newFixture(t, fixtureOpts{mutate: func(c *config.Config) {
		c.RateLimit.Default = config.Rate{Requests: 2, Per: config.Duration(time.Hour)}
	}})
	c := f.client(t, "bob")
	for i := 0; i < 2; i++ {
		if res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
			t.Fatalf("call %d: %s", i, text(res))
		}
	}
	res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"})
	if !res.IsError || !strings.HasPrefix(text(res), "rate limited: ") || !strings.Contains(text(res), "retry after") {
		t.Errorf("third call: %v %s", res.IsError, text(res))
	}
	if f.hits.Load() != 2 {
		t.Errorf("upstream hits = %d, want 2", f.hits.Load())
	}
	// Another human is not limited by bob's bucket.
	if res := callT(t, f.client(t, "alice"), "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
		t.Errorf("alice limited by bob's bucket: %s", text(res))
	}
}

func TestAuditFailureWithholdsResult(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.client(t, "bob")
	f.audit.failing.Store(true)
	res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"})
	if !res.IsError || !strings.Contains(text(res), "audit") || strings.Contains(text(res), "c-1") {
		t.Fatalf("unrecorded result released: %v %s", res.IsError, text(res))
	}
	hits := f.hits.Load()
	// While the trail is failing, further calls are refused before the upstream.
	res = callT(t, c, "crm_get_customer", map[string]any{"id": "c-2"})
	if !res.IsError || f.hits.Load() != hits {
		t.Errorf("call while audit is failing reached the upstream: %s", text(res))
	}
	resp, err := http.Get(f.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz while audit fails = %d", resp.StatusCode)
	}
}

func TestResultShapes(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.client(t, "bob")
	res := callT(t, c, "crm_list", nil)
	sc, _ := json.Marshal(res.StructuredContent)
	if res.IsError || !strings.HasPrefix(string(sc), `{"result":[`) {
		t.Errorf("array result: %v %s", res.IsError, sc)
	}
	res = callT(t, c, "crm_page", nil)
	if txt := text(res); !res.IsError || !strings.HasPrefix(txt, "upstream returned 502") || strings.Contains(txt, "sk_live_") {
		t.Errorf("html error page: %v %s", res.IsError, txt)
	}
	res = callT(t, c, "crm_blob", nil)
	if !res.IsError || !strings.Contains(text(res), "binary") {
		t.Errorf("binary: %v %s", res.IsError, text(res))
	}
	res = callT(t, c, "crm_get_customer", map[string]any{"id": "c-1", "extra": 1})
	if !res.IsError || !strings.Contains(text(res), "extra") {
		t.Errorf("unknown argument: %s", text(res))
	}
}

func TestContextFilter(t *testing.T) {
	// alice's tenant claim confines results to acme (default policy).
	f := newFixture(t, fixtureOpts{})
	c := f.client(t, "alice")
	res := callT(t, c, "crm_list", nil)
	if txt := text(res); res.IsError || strings.Contains(txt, "globex") || !strings.Contains(txt, "acme") {
		t.Errorf("tenant filter: %v %s", res.IsError, txt)
	}
	// Non-JSON cannot be filtered by context: withheld, status kept.
	res = callT(t, c, "crm_page", nil)
	if txt := text(res); !res.IsError || !strings.Contains(txt, "withheld") || strings.Contains(txt, "oops") {
		t.Errorf("html under a context rule: %v %s", res.IsError, txt)
	}
}

func TestUnauthenticated(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for name, auth := range map[string]string{"none": "", "unknown": "Bearer nope", "basic": "Basic YWxpY2U6eA=="} {
		req, _ := http.NewRequest(http.MethodPost, f.url+"/mcp", strings.NewReader(`{}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
			t.Errorf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	big := strings.NewReader(strings.Repeat("x", maxBodyBytes+1))
	req, _ := http.NewRequest(http.MethodPost, f.url+"/mcp", big)
	req.Header.Set("Authorization", "Bearer bob")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", resp.StatusCode)
	}
}

// TestTokenWithoutAgentRefused: a token that names no agent is refused at
// /mcp with a reason that says so (it could only be audited as nobody's).
func TestTokenWithoutAgentRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	req, _ := http.NewRequest(http.MethodPost, f.url+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer noagent")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if wa := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(wa, "names no agent") || !strings.Contains(wa, `error="invalid_token"`) {
		t.Errorf("token without agent: %d %q", resp.StatusCode, wa)
	}
}

func TestGrantWithheldWhenUnrecorded(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	iss := delegation.Issued{ID: "d-9", Subject: "alice", Agent: "agent-42", Scopes: []string{"tool:crm_*"}, ExpiresAt: time.Now().Add(time.Minute)}
	if err := f.srv.RecordGrant(context.Background(), iss); err != nil {
		t.Fatal(err)
	}
	if recs := f.audit.records(); len(recs) != 1 || recs[0].Kind != audit.KindGrant || recs[0].Delegation != "d-9" {
		t.Errorf("grant record: %+v", recs)
	}
	f.audit.failing.Store(true)
	if err := f.srv.RecordGrant(context.Background(), iss); err == nil {
		t.Error("an unrecorded grant was let through (audit.on_error: deny)")
	}
}
