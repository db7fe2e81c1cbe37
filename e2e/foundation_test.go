package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/devissuer"
)

// flakyUpstream is a second, Go upstream for failure modes FastAPI is not
// built to show: a slow endpoint, a 500 and an oversized body.
func flakyUpstream(t testing.TB) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	doc := `{"openapi":"3.1.0","info":{"title":"flaky","version":"1"},"paths":{
 "/slow":{"get":{"operationId":"slow","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/boom":{"get":{"operationId":"boom","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/big":{"get":{"operationId":"big","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/echo":{"get":{"operationId":"echo","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/pause":{"get":{"operationId":"pause","tags":["customers"],"responses":{"200":{"description":"ok"}}}}}}`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"late":true}`)
	})
	mux.HandleFunc("GET /pause", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(1500 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"paused":true}`)
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"detail":"database on fire"}`)
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		chunk := strings.Repeat("x", 1<<20)
		fmt.Fprint(w, `["`)
		for i := 0; i < 12; i++ {
			fmt.Fprint(w, chunk)
		}
		fmt.Fprint(w, `"]`)
	})
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"authorization_present": r.Header.Get("Authorization") != "",
			"authorization":         r.Header.Get("Authorization"),
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &hits
}

// stack is the foundation fixture: FastAPI, a Go upstream, an issuer and
// the gateway binary.
type stack struct {
	iss       *devissuer.Issuer
	gw        *gateway
	fastapi   string
	flakyHits *atomic.Int64
	flakyURL  string
	tokens    map[string]string
}

func startStack(t *testing.T, extraYAML string) *stack {
	t.Helper()
	st := &stack{iss: startIssuer(t), fastapi: startFastAPI(t)}
	flaky, hits := flakyUpstream(t)
	st.flakyHits, st.flakyURL = hits, flaky.URL
	cfg := fmt.Sprintf(`listen: "{{LISTEN}}"
public_url: "http://{{LISTEN}}"
environment: test
auth:
  issuers:
    - issuer: %q
upstreams:
  - name: crm
    base_url: %q
    openapi: %q
  - name: flaky
    base_url: %q
    openapi: %q
    timeout: 2s # well under /slow's 5 s, with room for a loaded CI machine
audit:
  path: "{{DIR}}/audit.log"
%s`, st.iss.URL(), st.fastapi, st.fastapi+"/openapi.json", flaky.URL, flaky.URL+"/openapi.json", extraYAML)
	st.gw = startGateway(t, cfg)
	st.tokens = map[string]string{
		"bob":   mint(t, st.iss, st.gw.URL, map[string]any{"sub": "bob", "roles": []string{"admin"}, "email": "bob@acme.example"}),
		"alice": mint(t, st.iss, st.gw.URL, map[string]any{"sub": "alice", "roles": []string{"support"}, "tenant": "acme"}),
	}
	return st
}

func TestListAndCallBothEras(t *testing.T) {
	st := startStack(t, "")
	for _, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			c := connect(t, st.gw.URL, st.tokens["bob"], e)
			names := listNames(t, c)
			for _, want := range []string{"crm_get_customer", "crm_list_customers", "crm_create_ticket", "crm_issue_refund", "flaky_slow"} {
				if !slices.Contains(names, want) {
					t.Errorf("tools/list lacks %s: %v", want, names)
				}
			}

			res := callTool(t, c, "crm_get_customer", map[string]any{"customer_id": "c-1"})
			if res.IsError || !strings.Contains(resultText(res), `"customer_id":"c-1"`) {
				t.Fatalf("get_customer: isError=%v %s", res.IsError, resultText(res))
			}
			if res.StructuredContent == nil {
				t.Error("get_customer: no structuredContent")
			}

			res = callTool(t, c, "crm_list_customers", map[string]any{"tenant_id": "globex", "limit": 1})
			if txt := resultText(res); res.IsError || !strings.Contains(txt, "c-3") || strings.Contains(txt, "c-4") {
				t.Errorf("list_customers with query arguments: %s", txt)
			}

			res = callTool(t, c, "crm_create_ticket", map[string]any{
				"tenant_id": "acme", "customer_id": "c-1", "subject": "printer on fire " + e.name, "priority": "high",
			})
			if txt := resultText(res); res.IsError || !strings.Contains(txt, "printer on fire "+e.name) || !strings.Contains(txt, `"ticket_id":"t-`) {
				t.Errorf("create_ticket with body arguments: %s", txt)
			}

			res = callTool(t, c, "crm_get_customer", map[string]any{"customer_id": "c-404"})
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "404") {
				t.Errorf("upstream 404 should be a tool error with the status: %v %s", res.IsError, txt)
			}

			res = callTool(t, c, "crm_create_ticket", map[string]any{"tenant_id": "acme", "customer_id": "c-1", "subject": ""})
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "422") {
				t.Errorf("upstream 422 should be a tool error with the status: %v %s", res.IsError, txt)
			}

			res = callTool(t, c, "flaky_boom", nil)
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "500") || !strings.Contains(txt, "database on fire") {
				t.Errorf("upstream 500: %v %s", res.IsError, txt)
			}

			res = callTool(t, c, "flaky_slow", nil)
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "timed out") {
				t.Errorf("upstream timeout: %v %s", res.IsError, txt)
			}

			res = callTool(t, c, "flaky_big", nil)
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "larger than") {
				t.Errorf("oversized upstream body: %v %s", res.IsError, txt)
			}

			// Path injection stays inside /customers/{id}: FastAPI sees one
			// segment and answers 404, never the tickets collection.
			res = callTool(t, c, "crm_get_customer", map[string]any{"customer_id": "../tickets"})
			if txt := resultText(res); !res.IsError || strings.Contains(txt, "t-1") {
				t.Errorf("path traversal reached another endpoint: %s", txt)
			}

			res = callTool(t, c, "crm_get_customer", map[string]any{"customer_id": "c-1", "evil": "x"})
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "evil") {
				t.Errorf("unknown argument accepted: %s", txt)
			}

			// The agent's token never reaches the upstream; the gateway's
			// own assertion does.
			res = callTool(t, c, "flaky_echo", nil)
			if txt := resultText(res); res.IsError || strings.Contains(txt, st.tokens["bob"]) {
				t.Errorf("the agent's token reached the upstream: %s", txt)
			}
		})
	}
}

// rawMCP posts a tools/list request with the given Authorization value.
func rawMCP(t *testing.T, url, auth string, header map[string]string) *http.Response {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/list")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestHostileTokens(t *testing.T) {
	st := startStack(t, "")
	other := startIssuer(t) // trusted by nobody
	aud := st.gw.URL + "/mcp"
	now := time.Now()
	claims := func(extra map[string]any) map[string]any {
		c := map[string]any{"iss": st.iss.URL(), "sub": "mallory", "aud": aud, "azp": "evil-agent",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	signed := func(header, c map[string]any) string {
		tok, err := st.iss.SignRaw(header, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	b64 := func(v any) string {
		b, _ := json.Marshal(v)
		return strings.TrimRight(base64url(b), "=")
	}
	good := signed(nil, claims(nil))
	parts := strings.Split(good, ".")
	foreign, err := other.Mint(claims(map[string]any{"iss": other.URL()}), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"alg none":              b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64(claims(nil)) + ".",
		"HS256 confusion":       hs256(t, b64(map[string]any{"alg": "HS256", "kid": st.iss.KeyID()})+"."+b64(claims(nil)), []byte(st.iss.URL())),
		"expired":               signed(nil, claims(map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix()})),
		"not yet valid":         signed(nil, claims(map[string]any{"nbf": now.Add(time.Hour).Unix()})),
		"wrong issuer":          foreign,
		"wrong audience":        signed(nil, claims(map[string]any{"aud": "https://some-other-api.example"})),
		"tampered payload":      parts[0] + "." + b64(claims(map[string]any{"sub": "root"})) + "." + parts[2],
		"wrong signature":       parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"unknown kid":           signed(map[string]any{"kid": "nope"}, claims(nil)),
		"garbage":               "not-a-jwt",
		"oversized":             strings.Repeat("a", 20000) + "." + parts[1] + "." + parts[2],
		"missing sub":           signed(nil, claims(map[string]any{"sub": ""})),
		"issuer spoofed in iss": signed(nil, claims(map[string]any{"iss": other.URL()})),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			resp := rawMCP(t, st.gw.URL, "Bearer "+tok, nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", resp.StatusCode, readAll(t, resp.Body))
			}
			wa := resp.Header.Get("WWW-Authenticate")
			if !strings.Contains(wa, `resource_metadata="`+st.gw.URL+`/.well-known/oauth-protected-resource/mcp"`) || !strings.Contains(wa, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", wa)
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		resp := rawMCP(t, st.gw.URL, "", nil)
		wa := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(wa, "resource_metadata=") || strings.Contains(wa, "invalid_token") {
			t.Errorf("status %d, WWW-Authenticate %q", resp.StatusCode, wa)
		}
	})
	t.Run("good token", func(t *testing.T) {
		resp := rawMCP(t, st.gw.URL, "Bearer "+good, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("a good token was refused: %d %s", resp.StatusCode, readAll(t, resp.Body))
		}
	})
	// Nothing a hostile token sent reached an upstream, and the gateway's
	// logs never contain a token.
	if strings.Contains(st.gw.logs.String(), parts[2]) {
		t.Error("a token signature appears in the gateway's logs")
	}
}

func TestSessionBoundToPrincipal(t *testing.T) {
	st := startStack(t, "")
	legacy := eras[1]
	alice := connect(t, st.gw.URL, st.tokens["alice"], legacy)
	sid := alice.GetSessionId()
	if sid == "" {
		t.Fatal("legacy session got no Mcp-Session-Id")
	}
	if res := callTool(t, alice, "crm_get_customer", map[string]any{"customer_id": "c-1"}); res.IsError {
		t.Fatalf("alice's own call failed: %s", resultText(res))
	}
	before := st.flakyHits.Load()

	// Bob presents alice's session id with his own valid token.
	tr, err := transport.NewStreamableHTTP(st.gw.URL+"/mcp",
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + st.tokens["bob"]}),
		transport.WithSession(sid))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	resp, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcp.NewRequestId(7), Method: "tools/call",
		Params: map[string]any{"name": "flaky_echo", "arguments": map[string]any{}}})
	if err == nil && resp != nil && resp.Error == nil {
		t.Fatalf("bob's call on alice's session succeeded: %s", resp.Result)
	}
	if st.flakyHits.Load() != before {
		t.Error("the hijacked call reached the upstream")
	}

	// A raw request shows the status: 404, as if the session did not exist.
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(method, st.gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
		req.Header.Set("Authorization", "Bearer "+st.tokens["bob"])
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("%s with another principal's session: %d, want 404", method, r.StatusCode)
		}
	}
	// Alice's session still works after the attempts (DELETE by bob did not end it).
	if res := callTool(t, alice, "crm_get_customer", map[string]any{"customer_id": "c-2"}); res.IsError {
		t.Errorf("alice's session broke after bob's attempts: %s", resultText(res))
	}
}

func TestWellKnownAndHealth(t *testing.T) {
	st := startStack(t, "")
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := http.Get(st.gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&prm); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if prm.Resource != st.gw.URL+"/mcp" || !slices.Contains(prm.AuthorizationServers, st.iss.URL()) {
			t.Errorf("%s = %+v", path, prm)
		}
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/.well-known/jwks.json": 200, "/nope": 404} {
		resp, err := http.Get(st.gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d: %s", path, resp.StatusCode, want, body)
		}
	}
}

func TestBrokenUpstreamDoesNotStopOthers(t *testing.T) {
	iss := startIssuer(t)
	api := startFastAPI(t)
	dead := "http://" + freeAddr(t)
	gw := startGateway(t, fmt.Sprintf(`listen: "{{LISTEN}}"
auth: {issuers: [{issuer: %q}]}
upstreams:
  - {name: crm, base_url: %q, openapi: %q}
  - {name: broken, base_url: %q, openapi: %q}
audit: {path: "{{DIR}}/audit.log"}
`, iss.URL(), api, api+"/openapi.json", dead, dead+"/openapi.json"))
	resp, err := getReadyz(gw.URL)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "upstream:broken") {
		t.Errorf("readyz = %d %s", resp.StatusCode, body)
	}
	tok := mint(t, iss, gw.URL, map[string]any{"sub": "bob", "roles": []string{"admin"}})
	c := connect(t, gw.URL, tok, eras[0])
	names := listNames(t, c)
	if !slices.Contains(names, "crm_get_customer") {
		t.Errorf("the healthy upstream's tools are missing: %v", names)
	}
	if !strings.Contains(gw.logs.String(), "broken") {
		t.Error("the broken upstream is not named in the logs")
	}
}

func TestDemoCommand(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	cmd := exec.Command(gatewayBin, "demo", "--listen", "127.0.0.1:0", "--audit", auditPath)
	p := startProcess(t, "demo", cmd)
	var mcpURL, token string
	deadline := time.Now().Add(60 * time.Second)
	urlRe := regexp.MustCompile(`MCP endpoint\s+(http://\S+)/mcp`)
	tokRe := regexp.MustCompile(`HARNESS_TOKEN_ALICE=(\S+)`)
	for time.Now().Before(deadline) {
		out := p.logs.String()
		if m := urlRe.FindStringSubmatch(out); m != nil {
			mcpURL = m[1]
		}
		if m := tokRe.FindStringSubmatch(out); m != nil {
			token = m[1]
		}
		if mcpURL != "" && token != "" && strings.Contains(out, "Claude Desktop") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if mcpURL == "" || token == "" {
		t.Fatalf("demo printed no MCP URL or token:\n%s", p.logs.String())
	}
	for _, e := range eras {
		c := connect(t, mcpURL, token, e)
		if names := listNames(t, c); !slices.Contains(names, "crm_get_customer") || !slices.Contains(names, "handbook_search_handbook") {
			t.Errorf("%s: demo tools: %v", e.name, names)
		}
		res := callTool(t, c, "crm_get_customer", map[string]any{"customer_id": "c-1"})
		if res.IsError {
			t.Errorf("%s: alice cannot read a customer in the demo: %s", e.name, resultText(res))
		}
		// The built-in MCP server is federated next to the sample API.
		res = callTool(t, c, "handbook_search_handbook", map[string]any{"query": "refund"})
		if res.IsError || !strings.Contains(resultText(res), "Refunds:") {
			t.Errorf("%s: alice cannot search the handbook in the demo: %s", e.name, resultText(res))
		}
	}
	// Through the gateway, the sample API verified the assertion.
	bob := regexp.MustCompile(`HARNESS_TOKEN_BOB=(\S+)`).FindStringSubmatch(p.logs.String())
	if bob == nil {
		t.Fatal("demo printed no token for bob")
	}
	res := callTool(t, connect(t, mcpURL, bob[1], eras[0]), "crm_whoami", nil)
	if txt := resultText(res); res.IsError || !strings.Contains(txt, `"verified":true`) || !strings.Contains(txt, `"sub":"bob"`) {
		t.Errorf("whoami through the demo gateway: %s", txt)
	}

	// Approvals: alice's refund over the limit is held with the URL the demo
	// told about; bob approves at the development issuer's sign-in; the
	// retry runs, once.
	if !strings.Contains(p.logs.String(), "/approvals/<id>") {
		t.Errorf("the demo does not say where approvals happen:\n%s", p.logs.String())
	}
	issuer := regexp.MustCompile(`dev issuer\s+(http://\S+)`).FindStringSubmatch(p.logs.String())
	if issuer == nil {
		t.Fatal("demo printed no dev issuer URL")
	}
	alice := connect(t, mcpURL, token, eras[1])
	refund := map[string]any{"tenant_id": "acme", "order_id": "o-100", "amount_cents": 3000, "reason": "damaged"}
	link, _ := wantHeld(t, "demo refund", callTool(t, alice, "crm_issue_refund", refund), "refunds over 20.00 need an admin's approval")
	if !strings.HasPrefix(link, mcpURL+"/approvals/") {
		t.Errorf("approval link %s is not under %s", link, mcpURL)
	}
	b := newBrowser(t)
	resp, page := b.follow(link+"?login_hint=bob", mcpURL, issuer[1])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bob opens %s: %d\n%s", link, resp.StatusCode, page)
	}
	if r, body := b.postForm(link, url.Values{"csrf": {match(t, csrfRe, page)}, "decision": {"approve"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("bob approves: %d\n%s", r.StatusCode, body)
	}
	if res := callTool(t, alice, "crm_issue_refund", refund); res.IsError || !strings.Contains(resultText(res), "refund_id") {
		t.Fatalf("approved refund in the demo: %s", resultText(res))
	}
	wantHeld(t, "second demo refund", callTool(t, alice, "crm_issue_refund", refund), "refunds over 20.00 need an admin's approval")

	// The sample API itself is closed: no assertion, no data (the attack:
	// curl on it returned card numbers without any token). Even the human's
	// own token is not the gateway's assertion.
	m := regexp.MustCompile(`sample API\s+(http://\S+)`).FindStringSubmatch(p.logs.String())
	if m == nil {
		t.Fatalf("demo printed no sample API URL:\n%s", p.logs.String())
	}
	for _, auth := range []string{"", "Bearer " + token} {
		for _, path := range []string{"/customers", "/customers/c-1", "/refunds"} {
			if code, body := directGet(t, m[1]+path, auth); code != http.StatusUnauthorized || strings.Contains(body, "4111") {
				t.Errorf("GET %s on the sample API with %q: %d %s, want 401", path, auth[:min(len(auth), 10)], code, body)
			}
		}
	}
	// The preview the demo opens next to production (issue 18).
	checkDemoPreview(t, p, mcpURL, token, auditPath)
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: nowhere\nauth: {issuers: [{issuer: https://idp.example.com, audience: x}]}\nupstreams: [{name: crm}]\nfrobnicate: true\n"), 0o600)
	out, err := exec.Command(gatewayBin, "validate", "--config", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("a bad config validated:\n%s", out)
	}
	for _, want := range []string{"listen:", "auth.issuers[0].audience: unknown key", "upstreams[0].base_url", "upstreams[0]: one of openapi", "frobnicate: unknown key"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("auth: {issuers: [{issuer: https://idp.example.com}]}\nupstreams: [{name: crm, base_url: http://127.0.0.1:8000, openapi: http://127.0.0.1:8000/openapi.json}]\n"), 0o600)
	if out, err := exec.Command(gatewayBin, "validate", "--config", good).CombinedOutput(); err != nil || !strings.Contains(string(out), "valid") {
		t.Errorf("a good config failed: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"serve", "--help"}, {"demo", "--help"}, {"validate", "--help"}, {"audit", "verify", "--help"}, {"policy", "test", "--help"}} {
		out, _ := exec.Command(gatewayBin, args...).CombinedOutput()
		if !strings.Contains(string(out), "Usage: gateway") {
			t.Errorf("%v: no usage:\n%s", args, out)
		}
	}
}

// TestGracefulShutdown: SIGTERM lets an in-flight call finish, then the
// process exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	iss := startIssuer(t)
	up, hits := flakyUpstream(t)
	gw := startGateway(t, fmt.Sprintf(`listen: "{{LISTEN}}"
auth: {issuers: [{issuer: %q}]}
upstreams: [{name: flaky, base_url: %q, openapi: %q, timeout: 10s}]
audit: {path: "{{DIR}}/audit.log"}
`, iss.URL(), up.URL, up.URL+"/openapi.json"))
	c := connect(t, gw.URL, mint(t, iss, gw.URL, map[string]any{"sub": "bob", "roles": []string{"admin"}}), eras[0])
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "flaky_pause"
		res, err := c.CallTool(context.Background(), req)
		if err != nil {
			res = mcp.NewToolResultError("transport: " + err.Error())
		}
		done <- res
	}()
	for deadline := time.Now().Add(20 * time.Second); hits.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the call never reached the upstream")
		}
	}
	// The call is now waiting on the upstream.
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.IsError || !strings.Contains(resultText(res), "paused") {
			t.Errorf("in-flight call during shutdown: %s", resultText(res))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("in-flight call never finished")
	}
	select {
	case <-gw.done:
		if code := gw.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
	if !strings.Contains(gw.logs.String(), "shutting down") {
		t.Error("no shutdown log line")
	}
}
