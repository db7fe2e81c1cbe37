package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/agentharness/harness/internal/devissuer"
)

// The IdP-exchange tests run the real binary with one upstream ("hr") that
// trusts only the company IdP (the dev issuer): the gateway must send it a
// token the IdP issued by RFC 8693 token exchange, which the upstream checks
// with go-oidc against the IdP's JWKS. A second upstream ("flaky") keeps
// receiving the gateway's own assertion.

const (
	idpxClientID = "harness-gw"
	idpxSecret   = "gw-s3cret-for-hr"
	idpxAudience = "hr-api"
)

// idpxUpstream is the "hr" upstream: GET /me verifies the bearer token as
// an IdP token for idpxAudience and echoes its claims.
type idpxUpstream struct {
	url  string
	hits atomic.Int64
	mu   sync.Mutex
	seen []string // raw bearer tokens received
}

func (u *idpxUpstream) tokens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

func startIdPxUpstream(t *testing.T, iss *devissuer.Issuer) *idpxUpstream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prov, err := oidc.NewProvider(ctx, iss.URL())
	if err != nil {
		t.Fatal(err)
	}
	verifier := prov.Verifier(&oidc.Config{ClientID: idpxAudience, SupportedSigningAlgs: []string{iss.Algorithm()}})
	u := &idpxUpstream{}
	doc := `{"openapi":"3.1.0","info":{"title":"hr","version":"1"},"paths":{
 "/me":{"get":{"operationId":"me","tags":["people"],"responses":{"200":{"description":"ok"}}}}}}`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"detail":"no bearer token"}`)
			return
		}
		u.mu.Lock()
		u.seen = append(u.seen, raw)
		u.mu.Unlock()
		tok, err := verifier.Verify(r.Context(), raw)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]any{"detail": "not an IdP token for " + idpxAudience + ": " + err.Error()})
			return
		}
		var claims map[string]any
		_ = tok.Claims(&claims)
		_ = json.NewEncoder(w).Encode(map[string]any{"verified": true, "claims": claims})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

// idpxStack is the issuer (with the gateway as a token-exchange client), the
// hr upstream, the flaky Go upstream and the gateway binary.
type idpxStack struct {
	iss       *devissuer.Issuer
	hr        *idpxUpstream
	flakyHits *atomic.Int64
	gw        *gateway
	bob       string // an admin human's own IdP token
}

func startIdPxStack(t *testing.T, secretGiven string) *idpxStack {
	t.Helper()
	iss, err := devissuer.New(devissuer.Options{Clients: []devissuer.Client{{ID: idpxClientID, Secret: idpxSecret, TokenExchange: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	st := &idpxStack{iss: iss, hr: startIdPxUpstream(t, iss)}
	flaky, hits := flakyUpstream(t)
	st.flakyHits = hits
	cfg := fmt.Sprintf(`listen: "{{LISTEN}}"
public_url: "http://{{LISTEN}}"
environment: test
auth:
  issuers:
    - issuer: %q
upstreams:
  - name: hr
    base_url: %q
    openapi: %q
    token_exchange:
      token_url: %q
      client_id: %q
      client_secret: ${HR_IDP_CLIENT_SECRET}
      audience: %q
      scope: hr.read
  - name: flaky
    base_url: %q
    openapi: %q
redaction:
  detectors: []   # flaky_echo shows the assertion it received
audit:
  path: "{{DIR}}/audit.log"
  fsync: always
`, iss.URL(), st.hr.url, st.hr.url+"/openapi.json", iss.URL()+devissuer.TokenPath, idpxClientID, idpxAudience, flaky.URL, flaky.URL+"/openapi.json")
	st.gw = startGateway(t, cfg, "HR_IDP_CLIENT_SECRET="+secretGiven)
	st.bob = mint(t, iss, st.gw.URL, map[string]any{"sub": "bob", "roles": []string{"admin"}, "email": "bob@acme.example"})
	return st
}

// idpxAuditCall polls the audit trail for the n-th call record of tool.
func idpxAuditCall(t *testing.T, path, tool string, n int) audLine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found []audLine
		for _, l := range audCalls(audRead(t, path)) {
			if l.str("tool") == tool {
				found = append(found, l)
			}
		}
		if len(found) >= n {
			return found[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record #%d for %s in %s", n, tool, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noSecretsIn fails when a log or record holds the client secret or a token.
func noSecretsIn(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s holds a secret or token (%.12s…)", what, s)
		}
	}
}

// TestIdPExchangeHumanTokenReachesUpstream: with the human's own IdP token,
// the hr upstream receives a token the IdP issued by exchange (verified with
// go-oidc: IdP signature, iss = the IdP, aud = the configured audience, sub
// = the human, act = the gateway's client) — neither the gateway's
// assertion nor the caller's token. The exchanged token is reused for the
// same caller; other upstreams still get the gateway assertion.
func TestIdPExchangeHumanTokenReachesUpstream(t *testing.T) {
	st := startIdPxStack(t, idpxSecret)
	gw := st.gw.URL
	for i, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			c := connect(t, gw, st.bob, e)
			res := callTool(t, c, "hr_me", nil)
			txt := resultText(res)
			if res.IsError {
				t.Fatalf("hr_me with the human's token: %s", txt)
			}
			var got struct {
				Verified bool           `json:"verified"`
				Claims   map[string]any `json:"claims"`
			}
			if err := json.Unmarshal([]byte(txt), &got); err != nil {
				t.Fatalf("hr_me answer: %v: %s", err, txt)
			}
			act, _ := got.Claims["act"].(map[string]any)
			if !got.Verified || got.Claims["sub"] != "bob" || got.Claims["iss"] != st.iss.URL() ||
				got.Claims["aud"] != idpxAudience || act["sub"] != idpxClientID || got.Claims["scope"] != "hr.read" {
				t.Errorf("claims of the token hr received: %v", got.Claims)
			}
			if roles, _ := got.Claims["roles"].([]any); !slices.Contains(roles, any("admin")) {
				t.Errorf("roles not carried: %v", got.Claims["roles"])
			}
			seen := st.hr.tokens()
			if len(seen) != i+1 {
				t.Fatalf("hr received %d tokens, want %d", len(seen), i+1)
			}
			last := seen[len(seen)-1]
			if last == st.bob {
				t.Fatal("the caller's own token was forwarded to hr")
			}
			if iss := jwtPart(t, last, 1)["iss"]; iss == gw || iss != st.iss.URL() {
				t.Errorf("hr received a token issued by %v, want the IdP %s", iss, st.iss.URL())
			}
			if i > 0 && last != seen[0] {
				t.Error("the exchanged token was not reused for the same caller and upstream")
			}
			rec := idpxAuditCall(t, st.gw.AuditPath, "hr_me", i+1)
			if rec.str("decision") != "allow" || rec.str("subject") != "bob" || rec.num("status") != 200 {
				t.Errorf("audit record: %s", rec.raw)
			}
			noSecretsIn(t, "the audit record", rec.raw, st.bob, last, idpxSecret)
		})
	}

	// Another upstream still gets the gateway's own assertion.
	res := callTool(t, connect(t, gw, st.bob, eras[0]), "flaky_echo", nil)
	var echo struct {
		Authorization string `json:"authorization"`
	}
	if err := json.Unmarshal([]byte(resultText(res)), &echo); err != nil || res.IsError {
		t.Fatalf("flaky_echo: %v %s", err, resultText(res))
	}
	a := jwtPart(t, strings.TrimPrefix(echo.Authorization, "Bearer "), 1)
	if a["iss"] != gw || a["aud"] != "flaky" || a["sub"] != "bob" {
		t.Errorf("flaky's assertion: %v", a)
	}
	logs := st.gw.logs.String()
	if !strings.Contains(logs, "upstream trusts only the IdP") {
		t.Error("the gateway did not log which upstream uses token exchange")
	}
	noSecretsIn(t, "the gateway's logs", logs, idpxSecret, st.bob)
	for _, tok := range st.hr.tokens() {
		noSecretsIn(t, "the gateway's logs", logs, tok)
	}
}

// TestIdPExchangeDelegationTokenRefused: a delegation token (signed by the
// gateway, not the IdP) cannot be exchanged at the IdP: the call is refused
// before hr, audited as error, while the same delegation still works on an
// upstream that accepts the gateway's assertion.
func TestIdPExchangeDelegationTokenRefused(t *testing.T) {
	st := startIdPxStack(t, idpxSecret)
	gw := st.gw.URL
	agent := mint(t, st.iss, gw, map[string]any{"sub": "agent-42", "azp": "agent-42"})
	tok := delegate(t, gw, st.bob, agent, "tool:hr_me tool:flaky_echo")
	jti, _ := jwtPart(t, tok, 1)["jti"].(string)
	for i, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			c := connect(t, gw, tok, e)
			if names := listNames(t, c); !sameSet(names, []string{"hr_me", "flaky_echo"}) {
				t.Errorf("tools/list with the delegation = %v", names)
			}
			res := callTool(t, c, "hr_me", nil)
			txt := resultText(res)
			if want := "error: upstream hr accepts only tokens from the company IdP; a delegation token cannot be exchanged there"; !res.IsError || txt != want {
				t.Errorf("hr_me with a delegation token: isError=%v %q, want %q", res.IsError, txt, want)
			}
			noSecretsIn(t, "the tool error", txt, tok, st.bob)
			if n := st.hr.hits.Load(); n != 0 {
				t.Errorf("hr was called %d times with a delegation token", n)
			}
			rec := idpxAuditCall(t, st.gw.AuditPath, "hr_me", i+1)
			if rec.str("decision") != "error" || rec.str("subject") != "bob" || rec.str("delegation") != jti || rec.rec["status"] != nil {
				t.Errorf("audit record: %s", rec.raw)
			}
			res = callTool(t, c, "flaky_echo", nil)
			if res.IsError || !strings.Contains(resultText(res), `"authorization_present":true`) {
				t.Errorf("flaky_echo with the delegation: %s", resultText(res))
			}
		})
	}
	if n := st.hr.hits.Load(); n != 0 {
		t.Errorf("hr was called %d times", n)
	}
	// The precise reason is in the gateway's log (and the tool error once
	// the pipeline surfaces it, see the report).
	logs := st.gw.logs.String()
	if !strings.Contains(logs, "upstream hr accepts only tokens from the company IdP; a delegation token cannot be exchanged there") {
		t.Errorf("the gateway's log does not give the reason:\n%s", logs)
	}
	noSecretsIn(t, "the gateway's logs", logs, tok, st.bob, agent, idpxSecret)

	// The human's own token still works: the refusal is the delegation's.
	if res := callTool(t, connect(t, gw, st.bob, eras[0]), "hr_me", nil); res.IsError {
		t.Errorf("hr_me with the human's own token: %s", resultText(res))
	}
}

// TestIdPExchangeIdPFailureFailsClosed: when the IdP refuses the exchange
// (the gateway holds a wrong client secret), the call is refused, audited as
// error, and hr is never called — neither with the caller's token nor with
// the gateway's assertion.
func TestIdPExchangeIdPFailureFailsClosed(t *testing.T) {
	const wrong = "not-the-secret-at-all"
	st := startIdPxStack(t, wrong)
	gw := st.gw.URL
	for i, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			c := connect(t, gw, st.bob, e)
			res := callTool(t, c, "hr_me", nil)
			txt := resultText(res)
			if want := "error: upstream hr: the company identity provider did not issue a token for this call"; !res.IsError || txt != want {
				t.Errorf("hr_me with the IdP refusing: isError=%v %q, want %q", res.IsError, txt, want)
			}
			noSecretsIn(t, "the tool error", txt, st.bob, wrong)
			if n := st.hr.hits.Load(); n != 0 {
				t.Errorf("hr was called %d times though the exchange failed", n)
			}
			rec := idpxAuditCall(t, st.gw.AuditPath, "hr_me", i+1)
			if rec.str("decision") != "error" || rec.str("subject") != "bob" || rec.rec["status"] != nil {
				t.Errorf("audit record: %s", rec.raw)
			}
			noSecretsIn(t, "the audit record", rec.raw, st.bob, wrong)
			// The other upstream is unaffected.
			if res := callTool(t, c, "flaky_echo", nil); res.IsError {
				t.Errorf("flaky_echo: %s", resultText(res))
			}
		})
	}
	logs := st.gw.logs.String()
	if !strings.Contains(logs, "invalid_client") {
		t.Errorf("the gateway's log does not name the IdP's error:\n%s", logs)
	}
	noSecretsIn(t, "the gateway's logs", logs, st.bob, wrong)
}
