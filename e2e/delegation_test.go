package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/devissuer"
)

// The delegation tests run the real binary in front of the real FastAPI
// example with identity verification ON: FastAPI checks every gateway
// assertion with PyJWT against the gateway's JWKS (an independent verifier).

const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	delegatedScope     = "tool:crm_whoami tool:crm_get_customer"
)

// delegationStack is an issuer, FastAPI verifying assertions, and a gateway
// on an address chosen before FastAPI starts.
type delegationStack struct {
	iss     *devissuer.Issuer
	fastapi string
	gw      *gateway
	addr    string
	cfg     string
	dir     string
	// bob is an admin human's token (the default policy allows him every
	// tool); agent is agent-42's own token from the same issuer.
	bob, agent string
}

// startFastAPIEnv runs examples/fastapi as a real uvicorn process with env.
func startFastAPIEnv(t testing.TB, env ...string) string {
	t.Helper()
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(python(), "-m", "uvicorn", "app:app", "--app-dir", "../examples/fastapi",
		"--host", host, "--port", port, "--log-level", "warning")
	cmd.Env = append(os.Environ(), env...)
	p := startProcess(t, "fastapi", cmd)
	base := "http://" + addr
	waitHTTP(t, base+"/openapi.json", 200, 30*time.Second, p.logs.String)
	return base
}

// startGatewayAt runs `gateway serve` on a fixed address and directory (so
// that a second process can take the place of the first).
func startGatewayAt(t testing.TB, addr, dir, cfg string) *gateway {
	t.Helper()
	path := filepath.Join(dir, "harness.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gatewayBin, "serve", "--config", path, "--log-level", "debug")
	g := &gateway{process: startProcess(t, "gateway", cmd), URL: "http://" + addr, Dir: dir, AuditPath: filepath.Join(dir, "audit.log")}
	waitHTTP(t, g.URL+"/healthz", 200, 60*time.Second, g.logs.String)
	return g
}

func startDelegationStack(t *testing.T) *delegationStack {
	t.Helper()
	ds := &delegationStack{iss: startIssuer(t), addr: freeAddr(t), dir: t.TempDir()}
	gwURL := "http://" + ds.addr
	ds.fastapi = startFastAPIEnv(t,
		"HARNESS_JWKS_URL="+gwURL+"/.well-known/jwks.json",
		"HARNESS_ISSUER="+gwURL,
		"HARNESS_AUDIENCE=crm")
	ds.cfg = fmt.Sprintf(`listen: %q
public_url: %q
environment: test
auth:
  issuers:
    - issuer: %q
upstreams:
  - name: crm
    base_url: %q
    openapi: %q
audit:
  path: %q
`, ds.addr, gwURL, ds.iss.URL(), ds.fastapi, ds.fastapi+"/openapi.json", filepath.Join(ds.dir, "audit.log"))
	ds.gw = startGatewayAt(t, ds.addr, ds.dir, ds.cfg)
	ds.bob = mint(t, ds.iss, gwURL, map[string]any{"sub": "bob", "roles": []string{"admin"}, "email": "bob@acme.example"})
	ds.agent = mint(t, ds.iss, gwURL, map[string]any{"sub": "agent-42", "azp": "agent-42"})
	return ds
}

// oauthPost posts a form to the gateway and decodes the JSON answer (nil
// for an empty body).
func oauthPost(t testing.TB, url string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(url, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := readAll(t, resp.Body)
	var m map[string]any
	if strings.TrimSpace(body) != "" {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("POST %s: %d, not JSON: %q", url, resp.StatusCode, body)
		}
	}
	return resp.StatusCode, m
}

// exchangeForm is a token-exchange request; actor may be empty.
func exchangeForm(subject, actor, scope string) url.Values {
	f := url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {tokenTypeAccess},
		"scope":              {scope},
	}
	if actor != "" {
		f.Set("actor_token", actor)
		f.Set("actor_token_type", tokenTypeAccess)
	}
	return f
}

// delegate exchanges subject (+ actor) for scope and checks the answer.
func delegate(t testing.TB, gwURL, subject, actor, scope string) string {
	t.Helper()
	status, m := oauthPost(t, gwURL+"/oauth/token", exchangeForm(subject, actor, scope))
	if status != http.StatusOK {
		t.Fatalf("token exchange for %q: %d %v", scope, status, m)
	}
	tok, _ := m["access_token"].(string)
	if tok == "" {
		t.Fatalf("token exchange: no access_token: %v", m)
	}
	if m["issued_token_type"] != tokenTypeAccess {
		t.Errorf("issued_token_type = %v", m["issued_token_type"])
	}
	if exp, ok := m["expires_in"].(float64); !ok || exp <= 0 || exp > 900 {
		t.Errorf("expires_in = %v, want 0 < expires_in <= 900", m["expires_in"])
	}
	if got, _ := m["scope"].(string); !sameSet(strings.Fields(got), strings.Fields(scope)) {
		t.Errorf("scope = %q, want %q", got, scope)
	}
	return tok
}

// jwtPart decodes part i (0 header, 1 payload) of a JWT without verifying it.
func jwtPart(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS compact token: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// whoamiAnswer is the part of FastAPI's /whoami answer the tests read.
type whoamiAnswer struct {
	Verification    string         `json:"verification"`
	Human           string         `json:"human"`
	Agent           string         `json:"agent"`
	Actors          []string       `json:"actors"`
	Roles           []string       `json:"roles"`
	Email           string         `json:"email"`
	DelegationID    string         `json:"delegation_id"`
	Scopes          []string       `json:"scopes"`
	AssertionClaims map[string]any `json:"assertion_claims"`
	Detail          any            `json:"detail"`
}

func gatewayWhoami(t testing.TB, gwURL, token string, e era) whoamiAnswer {
	t.Helper()
	c := connect(t, gwURL, token, e)
	res := callTool(t, c, "crm_whoami", nil)
	if res.IsError {
		t.Fatalf("crm_whoami (%s): %s", e.name, resultText(res))
	}
	var w whoamiAnswer
	if err := json.Unmarshal([]byte(resultText(res)), &w); err != nil {
		t.Fatalf("crm_whoami: %v: %s", err, resultText(res))
	}
	return w
}

// directGet calls FastAPI without the gateway.
func directGet(t testing.TB, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body)
}

func jwksKids(t testing.TB, gwURL string) []string {
	t.Helper()
	status, body := directGet(t, gwURL+"/.well-known/jwks.json", "")
	if status != http.StatusOK {
		t.Fatalf("jwks: %d %s", status, body)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	if len(kids) == 0 {
		t.Fatalf("jwks has no keys: %s", body)
	}
	return kids
}

// TestDelegationExchangeListCallAndUpstreamIdentity: a human's token and the
// agent's own token are exchanged for a delegation naming two tools; with it
// an MCP client sees and calls only those, other tools are denied naming the
// delegation, and FastAPI (verifying with PyJWT) sees the human and the agent.
func TestDelegationExchangeListCallAndUpstreamIdentity(t *testing.T) {
	ds := startDelegationStack(t)
	gw := ds.gw.URL
	tok := delegate(t, gw, ds.bob, ds.agent, delegatedScope)

	claims := jwtPart(t, tok, 1)
	jti, _ := claims["jti"].(string)
	act, _ := claims["act"].(map[string]any)
	if claims["sub"] != "bob" || claims["iss"] != gw || jti == "" || act == nil || act["sub"] != "agent-42" || act["act"] != nil {
		t.Fatalf("delegation token claims: %v", claims)
	}

	// Without a delegation, bob (admin) sees more than the two tools:
	// the narrowing below is the delegation's doing, not the policy's.
	full := listNames(t, connect(t, gw, ds.bob, eras[0]))
	if !slices.Contains(full, "crm_list_customers") || len(full) <= 2 {
		t.Fatalf("admin without delegation should see every tool: %v", full)
	}

	for _, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			c := connect(t, gw, tok, e)
			if names := listNames(t, c); !sameSet(names, []string{"crm_whoami", "crm_get_customer"}) {
				t.Errorf("tools/list with the delegation = %v, want exactly crm_whoami and crm_get_customer", names)
			}
			res := callTool(t, c, "crm_get_customer", map[string]any{"customer_id": "c-2"})
			if txt := resultText(res); res.IsError || !strings.Contains(txt, `"customer_id":"c-2"`) {
				t.Errorf("delegated crm_get_customer: isError=%v %s", res.IsError, txt)
			}
			res = callTool(t, c, "crm_list_customers", nil)
			if txt := resultText(res); !res.IsError || !strings.HasPrefix(txt, "denied:") || !strings.Contains(txt, jti) || strings.Contains(txt, "c-1") {
				t.Errorf("crm_list_customers outside the delegation: isError=%v %q (want denied: naming delegation %s)", res.IsError, txt, jti)
			}

			w := gatewayWhoami(t, gw, tok, e)
			if w.Verification != "on" || w.Human != "bob" || w.Agent != "agent-42" ||
				!slices.Equal(w.Actors, []string{"agent-42"}) || !slices.Contains(w.Roles, "admin") ||
				w.Email != "bob@acme.example" || w.DelegationID != jti || !sameSet(w.Scopes, strings.Fields(delegatedScope)) {
				t.Errorf("upstream identity through the delegation: %+v", w)
			}
			if w.AssertionClaims["iss"] != gw || w.AssertionClaims["aud"] != "crm" {
				t.Errorf("assertion iss/aud: %v", w.AssertionClaims)
			}
		})
	}

	// The human's own token (no delegation): the agent is the token's azp.
	w := gatewayWhoami(t, gw, ds.bob, eras[1])
	if w.Verification != "on" || w.Human != "bob" || w.Agent != "test-agent" || w.DelegationID != "" {
		t.Errorf("upstream identity with the human's own token: %+v", w)
	}
	// A write records the verified human and agent.
	res := callTool(t, connect(t, gw, ds.bob, eras[0]), "crm_create_ticket",
		map[string]any{"tenant_id": "acme", "customer_id": "c-1", "subject": "delegation e2e"})
	if txt := resultText(res); res.IsError || !strings.Contains(txt, `"created_by":"bob"`) || !strings.Contains(txt, `"via":"test-agent"`) {
		t.Errorf("create_ticket should record created_by/via: isError=%v %s", res.IsError, txt)
	}

	// FastAPI itself refuses what the gateway did not sign for it.
	other := startIssuer(t)
	kid := jwksKids(t, gw)[0]
	now := time.Now()
	forged, err := other.SignRaw(map[string]any{"kid": kid}, map[string]any{
		"iss": gw, "aud": "crm", "sub": "mallory", "act": map[string]any{"sub": "agent-42"},
		"roles": []string{"admin"}, "iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix(), "jti": "x",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, auth string }{
		{"absent", ""},
		{"not bearer", "Basic Ym9iOmJvYg=="},
		{"garbage", "Bearer not-a-jwt"},
		{"forged with the gateway's kid", "Bearer " + forged},
		{"the agent's delegation token (aud is the gateway)", "Bearer " + tok},
		{"the human's IdP token", "Bearer " + ds.bob},
	} {
		status, body := directGet(t, ds.fastapi+"/whoami", tc.auth)
		if status != http.StatusUnauthorized || strings.Contains(body, "mallory") {
			t.Errorf("FastAPI /whoami with %s: %d %s, want 401", tc.name, status, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, ds.fastapi+"/tickets",
		strings.NewReader(`{"tenant_id":"acme","customer_id":"c-1","subject":"no assertion"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("FastAPI POST /tickets without an assertion: %d, want 401", resp.StatusCode)
	}
}

// TestDelegationExchangeErrors: refused exchanges get the RFC 8693/6749
// error codes; re-exchange narrows and nests the actor chain, never widens.
func TestDelegationExchangeErrors(t *testing.T) {
	ds := startDelegationStack(t)
	gw := ds.gw.URL
	tokenURL := gw + "/oauth/token"

	untrusted := startIssuer(t)
	foreign := mint(t, untrusted, gw, map[string]any{"sub": "bob", "roles": []string{"admin"}})
	parts := strings.Split(ds.bob, ".")
	payload := jwtPart(t, ds.bob, 1)
	payload["sub"] = "mallory"
	pb, _ := json.Marshal(payload)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(pb) + "." + parts[2]

	check := func(name string, form url.Values, wantCode string) {
		t.Helper()
		status, m := oauthPost(t, tokenURL, form)
		if status != http.StatusBadRequest || m["error"] != wantCode || m["access_token"] != nil {
			t.Errorf("%s: %d %v, want 400 %s", name, status, m, wantCode)
		}
	}
	check("subject token of an untrusted issuer", exchangeForm(foreign, ds.agent, delegatedScope), "invalid_grant")
	check("tampered subject token", exchangeForm(tampered, ds.agent, delegatedScope), "invalid_grant")
	check("scope tool: with no pattern", exchangeForm(ds.bob, ds.agent, "tool:"), "invalid_scope")
	check("scope tool:garbage$", exchangeForm(ds.bob, ds.agent, "tool:crm_$(rm)"), "invalid_scope")
	check("scope that is not tool:", exchangeForm(ds.bob, ds.agent, "openid"), "invalid_scope")
	check("no scope", exchangeForm(ds.bob, ds.agent, ""), "invalid_scope")
	now := time.Now()
	expired := mint(t, ds.iss, gw, map[string]any{"sub": "bob", "roles": []string{"admin"},
		"iat": now.Add(-20 * time.Minute).Unix(), "nbf": now.Add(-20 * time.Minute).Unix(), "exp": now.Add(-2 * time.Minute).Unix()})
	check("expired subject token", exchangeForm(expired, ds.agent, delegatedScope), "invalid_grant")
	mayAct := mint(t, ds.iss, gw, map[string]any{"sub": "bob", "roles": []string{"admin"}, "may_act": map[string]any{"sub": "agent-9"}})
	check("actor not named in may_act", exchangeForm(mayAct, ds.agent, delegatedScope), "invalid_grant")
	mayAct = mint(t, ds.iss, gw, map[string]any{"sub": "bob", "roles": []string{"admin"}, "may_act": map[string]any{"sub": "agent-42"}})
	underMayAct := delegate(t, gw, mayAct, ds.agent, delegatedScope)
	// The delegation keeps may_act: it cannot be re-exchanged to another agent.
	evil := mint(t, ds.iss, gw, map[string]any{"sub": "evil-agent", "azp": "evil-agent"})
	check("re-exchange of a may_act delegation to another actor", exchangeForm(underMayAct, evil, delegatedScope), "invalid_grant")
	delegate(t, gw, underMayAct, ds.agent, delegatedScope)
	// A delegation never outlives the human's token.
	short := mint(t, ds.iss, gw, map[string]any{"sub": "bob", "roles": []string{"admin"}, "exp": now.Add(2 * time.Minute).Unix()})
	if status, m := oauthPost(t, tokenURL, exchangeForm(short, ds.agent, delegatedScope)); status != http.StatusOK {
		t.Errorf("exchange of a short-lived token: %d %v", status, m)
	} else if exp, _ := m["expires_in"].(float64); exp <= 0 || exp > 120 {
		t.Errorf("delegation of a token expiring in 120 s has expires_in %v", m["expires_in"])
	}
	wrongTarget := exchangeForm(ds.bob, ds.agent, delegatedScope)
	wrongTarget.Set("resource", "http://127.0.0.1:1/mcp")
	check("resource of another server", wrongTarget, "invalid_target")
	goodTarget := exchangeForm(ds.bob, ds.agent, delegatedScope)
	goodTarget.Set("resource", gw+"/mcp")
	if status, m := oauthPost(t, tokenURL, goodTarget); status != http.StatusOK {
		t.Errorf("resource = this gateway's /mcp: %d %v", status, m)
	}

	tok := delegate(t, gw, ds.bob, ds.agent, delegatedScope)
	parent := jwtPart(t, tok, 1)["jti"].(string)
	check("re-exchange for a tool outside the grant", exchangeForm(tok, "", "tool:crm_list_customers"), "invalid_scope")
	check("re-exchange for a wider glob", exchangeForm(tok, "", "tool:crm_*"), "invalid_scope")
	check("re-exchange adding a tool", exchangeForm(tok, "", delegatedScope+" tool:crm_issue_refund"), "invalid_scope")
	check("a delegation token as the actor token", exchangeForm(ds.bob, tok, "tool:crm_whoami"), "invalid_grant")

	// Narrowing to a sub-agent nests the chain: act {agent-7, act {agent-42}}.
	subAgent := mint(t, ds.iss, gw, map[string]any{"sub": "agent-7", "azp": "agent-7"})
	narrow := delegate(t, gw, tok, subAgent, "tool:crm_whoami")
	nc := jwtPart(t, narrow, 1)
	act, _ := nc["act"].(map[string]any)
	inner, _ := act["act"].(map[string]any)
	if nc["sub"] != "bob" || act["sub"] != "agent-7" || inner == nil || inner["sub"] != "agent-42" || inner["act"] != nil {
		t.Errorf("narrowed token act chain: %v", nc["act"])
	}
	if nc["scope"] != "tool:crm_whoami" || nc["jti"] == parent {
		t.Errorf("narrowed token scope/jti: %v %v", nc["scope"], nc["jti"])
	}
	if pe, ne := jwtPart(t, tok, 1)["exp"].(float64), nc["exp"].(float64); ne > pe {
		t.Errorf("narrowed token outlives its parent: exp %v > %v", ne, pe)
	}
	c := connect(t, gw, narrow, eras[0])
	if names := listNames(t, c); !slices.Equal(names, []string{"crm_whoami"}) {
		t.Errorf("tools/list with the narrowed token: %v", names)
	}
	if res := callTool(t, c, "crm_get_customer", map[string]any{"customer_id": "c-1"}); !res.IsError || !strings.HasPrefix(resultText(res), "denied:") {
		t.Errorf("narrowed token calling a tool it lost: %v %s", res.IsError, resultText(res))
	}
	w := gatewayWhoami(t, gw, narrow, eras[1])
	if w.Human != "bob" || w.Agent != "agent-7" || !slices.Equal(w.Actors, []string{"agent-7", "agent-42"}) {
		t.Errorf("upstream identity through the narrowed token: %+v", w)
	}
	// Narrowing again without an actor token keeps the current agent.
	again := delegate(t, gw, narrow, "", "tool:crm_whoami")
	if a, _ := jwtPart(t, again, 1)["act"].(map[string]any); a == nil || a["sub"] != "agent-7" {
		t.Errorf("re-exchange without actor_token: act = %v", a)
	}
}

// TestDelegationRevocation: /oauth/revoke ends a delegation at once, for
// open sessions too, and every token narrowed from it.
func TestDelegationRevocation(t *testing.T) {
	ds := startDelegationStack(t)
	gw := ds.gw.URL
	tok := delegate(t, gw, ds.bob, ds.agent, delegatedScope)
	narrow := delegate(t, gw, tok, "", "tool:crm_whoami")
	other := delegate(t, gw, ds.bob, ds.agent, delegatedScope) // a sibling grant, not revoked

	for _, tk := range []string{tok, narrow, other} {
		if resp := rawMCP(t, gw, "Bearer "+tk, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("before revocation: /mcp answered %d", resp.StatusCode)
		}
	}
	legacy := connect(t, gw, tok, eras[1]) // a session opened before revocation
	if res := callTool(t, legacy, "crm_whoami", nil); res.IsError {
		t.Fatalf("before revocation: %s", resultText(res))
	}

	status, m := oauthPost(t, gw+"/oauth/revoke", url.Values{"token": {tok}})
	if status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, m)
	}
	for name, tk := range map[string]string{"revoked": tok, "narrowed from it": narrow} {
		resp := rawMCP(t, gw, "Bearer "+tk, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s token after revocation: %d %q, want 401 invalid_token", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = "crm_whoami"
	if res, err := legacy.CallTool(ctx, req); err == nil && !res.IsError {
		t.Errorf("a session opened before revocation still calls tools: %s", resultText(res))
	}
	if status, m := oauthPost(t, gw+"/oauth/token", exchangeForm(tok, "", "tool:crm_whoami")); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("re-exchange of a revoked token: %d %v, want 400 invalid_grant", status, m)
	}
	// Revocation is per grant: a sibling delegation and the human's own token still work.
	if resp := rawMCP(t, gw, "Bearer "+other, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("sibling delegation after revoking another: %d", resp.StatusCode)
	}
	if resp := rawMCP(t, gw, "Bearer "+ds.bob, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("the human's own token after revoking a delegation: %d", resp.StatusCode)
	}
	// RFC 7009: revoking something that is not ours is 200 and changes nothing.
	if status, _ := oauthPost(t, gw+"/oauth/revoke", url.Values{"token": {"not-a-token"}}); status != http.StatusOK {
		t.Errorf("revoke of an unknown token: %d, want 200", status)
	}
}

// TestDelegationKeyRotationAcrossRestart: a new process on the same address
// and config signs with a new key. With the in-memory store (no Redis) the
// old key is gone, so delegation tokens of the old process are refused; new
// ones work, and FastAPI (which cached the old JWKS) refetches and verifies
// the new key's assertions.
func TestDelegationKeyRotationAcrossRestart(t *testing.T) {
	ds := startDelegationStack(t)
	gw := ds.gw.URL
	oldKids := jwksKids(t, gw)
	old := delegate(t, gw, ds.bob, ds.agent, delegatedScope)
	if kid := jwtPart(t, old, 0)["kid"]; !slices.Contains(oldKids, fmt.Sprint(kid)) {
		t.Fatalf("delegation token kid %v not in the JWKS %v", kid, oldKids)
	}
	// FastAPI caches the first process's key set.
	if w := gatewayWhoami(t, gw, old, eras[0]); w.Human != "bob" || w.Agent != "agent-42" {
		t.Fatalf("before restart: %+v", w)
	}

	ds.gw.stop()
	ds.gw = startGatewayAt(t, ds.addr, ds.dir, ds.cfg)

	newKids := jwksKids(t, gw)
	for _, k := range oldKids {
		if slices.Contains(newKids, k) {
			t.Errorf("key %s of the old process is still published (memory store): %v", k, newKids)
		}
	}
	if resp := rawMCP(t, gw, "Bearer "+old, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("delegation token of the old process (memory store): %d, want 401", resp.StatusCode)
	}
	if status, m := oauthPost(t, gw+"/oauth/token", exchangeForm(old, "", "tool:crm_whoami")); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("re-exchange of an old-process token: %d %v, want 400 invalid_grant", status, m)
	}

	fresh := delegate(t, gw, ds.bob, ds.agent, delegatedScope)
	if kid := fmt.Sprint(jwtPart(t, fresh, 0)["kid"]); !slices.Contains(newKids, kid) {
		t.Errorf("new delegation token kid %s not in the new JWKS %v", kid, newKids)
	}
	for _, e := range eras {
		w := gatewayWhoami(t, gw, fresh, e)
		if w.Verification != "on" || w.Human != "bob" || w.Agent != "agent-42" || w.DelegationID != jwtPart(t, fresh, 1)["jti"] {
			t.Errorf("after restart (%s): %+v", e.name, w)
		}
	}
	// The audit trail of both processes is one intact chain.
	out, err := exec.Command(gatewayBin, "audit", "verify", ds.gw.AuditPath).CombinedOutput()
	if err != nil {
		t.Errorf("audit verify after restart: %v\n%s", err, out)
	}
}

// TestDelegationPolicyStillApplies: a wide delegation from a support human
// shows and allows only what the policy grants support (the intersection).
func TestDelegationPolicyStillApplies(t *testing.T) {
	ds := startDelegationStack(t)
	gw := ds.gw.URL
	alice := mint(t, ds.iss, gw, map[string]any{"sub": "alice", "roles": []string{"support"}, "tenant": "acme"})
	tok := delegate(t, gw, alice, ds.agent, "tool:crm_*")
	for _, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			c := connect(t, gw, tok, e)
			names := listNames(t, c)
			for _, want := range []string{"crm_get_customer", "crm_list_tickets", "crm_create_ticket"} {
				if !slices.Contains(names, want) {
					t.Errorf("tools/list lacks %s, which support may use: %v", want, names)
				}
			}
			for _, not := range []string{"crm_issue_refund", "crm_list_refunds", "crm_whoami", "crm_health"} {
				if slices.Contains(names, not) {
					t.Errorf("tools/list shows %s, which the policy denies support: %v", not, names)
				}
			}
			res := callTool(t, c, "crm_issue_refund", map[string]any{"tenant_id": "acme", "order_id": "o-101", "amount_cents": 1, "reason": "late"})
			if txt := resultText(res); !res.IsError || !strings.HasPrefix(txt, "denied:") || strings.Contains(txt, "r-") {
				t.Errorf("crm_issue_refund by a support delegation: %v %s", res.IsError, txt)
			}
		})
	}
	// The refused refund never reached FastAPI.
	if status, body := directGet(t, ds.fastapi+"/refunds", ""); status != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("refunds after denied calls: %d %s", status, body)
	}
}
