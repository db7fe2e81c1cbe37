package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/devissuer"
	"github.com/agentharness/harness/internal/redistest"
)

// replicaUpstream is a Go upstream with two tools (up_count, up_echo) that
// counts its hits and keeps the Authorization header of every request, so a
// test can check the gateway's identity assertion without it passing through
// the result (the secret detector would mask it there).
type replicaUpstream struct {
	URL   string
	count atomic.Int64
	echo  atomic.Int64

	mu    sync.Mutex
	auths []string
}

func (u *replicaUpstream) hits() int64 { return u.count.Load() + u.echo.Load() }

// lastAuth is the bearer token of the latest upstream request.
func (u *replicaUpstream) lastAuth() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.auths) == 0 {
		return ""
	}
	return strings.TrimPrefix(u.auths[len(u.auths)-1], "Bearer ")
}

func startReplicaUpstream(t testing.TB) *replicaUpstream {
	t.Helper()
	u := &replicaUpstream{}
	doc := `{"openapi":"3.1.0","info":{"title":"replicas","version":"1"},"paths":{
 "/count":{"get":{"operationId":"count","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/echo":{"get":{"operationId":"echo","tags":["customers"],"responses":{"200":{"description":"ok"}}}}}}`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	})
	record := func(r *http.Request) {
		u.mu.Lock()
		u.auths = append(u.auths, r.Header.Get("Authorization"))
		u.mu.Unlock()
	}
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		n := u.count.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"n":%d}`, n)
	})
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		u.echo.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"echo":true}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// replicaSet is two gateway processes sharing one Redis, one issuer and one
// upstream, configured identically: one gateway behind a load balancer.
type replicaSet struct {
	iss    *devissuer.Issuer
	redis  *redistest.Server
	up     *replicaUpstream
	public string // the shared public_url (the load balancer's address; nothing listens there)
	cfg    string // the configuration every replica runs
	a, b   *gateway
}

func startReplicas(t *testing.T) *replicaSet {
	t.Helper()
	rs := &replicaSet{
		iss:    startIssuer(t),
		redis:  redistest.StartServer(t),
		up:     startReplicaUpstream(t),
		public: "http://" + freeAddr(t),
	}
	cfg := fmt.Sprintf(`listen: "{{LISTEN}}"
public_url: %q
environment: test
auth:
  issuers:
    - issuer: %q
ratelimit:
  redis_url: %q
  # The race-instrumented binary on two cores is slow; the default 100ms
  # bound is for production hosts, not for what this test checks.
  redis_timeout: 2s
  default: {requests: 10, per: 1h}
upstreams:
  - name: up
    base_url: %q
    openapi: %q
audit:
  path: "{{DIR}}/audit.log"
`, rs.public, rs.iss.URL(), rs.redis.URL(), rs.up.URL, rs.up.URL+"/openapi.json")
	rs.cfg = cfg
	rs.a = startGateway(t, cfg)
	rs.b = startGateway(t, cfg)
	return rs
}

// token is a human's token for the shared resource (aud = public_url/mcp),
// agent "test-agent", role admin.
func (rs *replicaSet) token(t testing.TB, sub string) string {
	return mint(t, rs.iss, rs.public, map[string]any{"sub": sub, "roles": []string{"admin"}})
}

// replicaCallTool is callTool without t.Fatal, for goroutines and polling.
func replicaCallTool(c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return c.CallTool(ctx, req)
}

// sessionEvictRetries bounds how many requests a replica may still accept
// on a session deleted on another replica, while the Redis pub/sub message
// is in flight (10 ms apart: the bound is 50 ms; in practice the first
// request is refused).
const sessionEvictRetries = 5

// replicaLegacyRPC posts one JSON-RPC request of the 2025-11-25 revision to
// gwURL/mcp with the given session id (GET and DELETE send no body). It
// returns the HTTP status and, when the answer carries one, the JSON-RPC
// response (plain JSON or the first SSE data line).
func replicaLegacyRPC(t testing.TB, httpMethod, gwURL, token, sid, method string, params any) (int, map[string]any) {
	t.Helper()
	var body *strings.Reader
	if httpMethod == http.MethodPost {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 42, "method": method, "params": params})
		body = strings.NewReader(string(b))
	} else {
		body = strings.NewReader("")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, httpMethod, gwURL+"/mcp", body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s/mcp: %v", httpMethod, gwURL, err)
	}
	defer resp.Body.Close()
	raw := readAll(t, resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(strings.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		raw = ""
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				raw = strings.TrimSpace(d)
				break
			}
		}
	}
	var out map[string]any
	if json.Unmarshal([]byte(raw), &out) != nil {
		out = nil
	}
	return resp.StatusCode, out
}

// replicaRPCResult reads a tools/call JSON-RPC response: its text and isError.
func replicaRPCResult(t testing.TB, rpc map[string]any) (string, bool) {
	t.Helper()
	res, ok := rpc["result"].(map[string]any)
	if !ok {
		t.Fatalf("no JSON-RPC result: %v", rpc)
	}
	isErr, _ := res["isError"].(bool)
	var b strings.Builder
	content, _ := res["content"].([]any)
	for _, c := range content {
		if m, ok := c.(map[string]any); ok {
			if s, ok := m["text"].(string); ok {
				b.WriteString(s)
			}
		}
	}
	return b.String(), isErr
}

// replicaJWKS returns the key set a replica publishes.
func replicaJWKS(t testing.TB, gwURL string) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(gwURL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := readAll(t, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/.well-known/jwks.json: %d %s", gwURL, resp.StatusCode, body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatalf("jwks: %v: %s", err, body)
	}
	return set
}

// replicaJWKSWithKid polls gwURL's JWKS until it lists kid (deadline d: the key
// cache re-reads Redis at most every 2 s). It returns the set and whether the
// kid appeared.
func replicaJWKSWithKid(t testing.TB, gwURL, kid string, d time.Duration) (jose.JSONWebKeySet, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		set := replicaJWKS(t, gwURL)
		if len(set.Key(kid)) > 0 {
			return set, true
		}
		if time.Now().After(deadline) {
			return set, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func replicaKid(t testing.TB, raw string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		t.Fatalf("not an ES256 JWS (%v): %.40s…", err, raw)
	}
	return jws.Signatures[0].Protected.KeyID
}

// replicaVerify checks raw's signature with the key of set named by its kid
// and returns its claims.
func replicaVerify(t testing.TB, raw string, set jose.JSONWebKeySet) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Protected.KeyID)
	if len(keys) != 1 {
		t.Fatalf("the JWKS has %d keys with kid %q", len(keys), jws.Signatures[0].Protected.KeyID)
	}
	payload, err := jws.Verify(keys[0].Public())
	if err != nil {
		t.Fatalf("signature does not verify with the JWKS key: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// exchange performs an RFC 8693 token exchange at gwURL and returns the
// status and the decoded answer.
func replicaExchange(t testing.TB, gwURL, subjectToken, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"scope":              {scope},
	}
	resp, err := http.PostForm(gwURL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	body := readAll(t, resp.Body)
	_ = json.Unmarshal([]byte(body), &out)
	if out == nil {
		out = map[string]any{"raw": body}
	}
	return resp.StatusCode, out
}

// delegate exchanges subjectToken at gwURL for a delegation token limited
// to scope, failing the test when that does not work.
func replicaDelegate(t testing.TB, gwURL, subjectToken, scope string) string {
	t.Helper()
	status, out := replicaExchange(t, gwURL, subjectToken, scope)
	tok, _ := out["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("token exchange at %s: %d %v", gwURL, status, out)
	}
	if out["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" || out["scope"] != scope {
		t.Errorf("token exchange answer: %v", out)
	}
	if exp, _ := out["expires_in"].(float64); exp <= 0 || exp > 15*60 {
		t.Errorf("expires_in = %v, want (0, 900]", out["expires_in"])
	}
	return tok
}

func replicaRevoke(t testing.TB, gwURL, token string) (int, string) {
	t.Helper()
	resp, err := http.PostForm(gwURL+"/oauth/revoke", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body)
}

func replicaReadyz(t testing.TB, gwURL string) (int, string) {
	t.Helper()
	resp, err := getReadyz(gwURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body)
}

// replicaAuditCounts counts the audit records of tool by decision in the files.
func replicaAuditCounts(t testing.TB, tool string, paths ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var rec struct {
				Tool     string `json:"tool"`
				Decision string `json:"decision"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Tool == tool {
				out[rec.Decision]++
			}
		}
	}
	return out
}

var replicaRetryAfterRe = regexp.MustCompile(`retry after (\S+)$`)

// TestReplicasSharedState runs two gateway replicas on one Redis and checks
// that what must be shared is: rate-limit buckets (exactly), legacy
// sessions, signing keys and revocations.
func TestReplicasSharedState(t *testing.T) {
	rs := startReplicas(t)
	if rs.a.URL == rs.b.URL {
		t.Fatal("the replicas share an address")
	}

	t.Run("exact shared limit under concurrency", func(t *testing.T) {
		tok := rs.token(t, "rl-user")
		clients := []*client.Client{connect(t, rs.a.URL, tok, eras[0]), connect(t, rs.b.URL, tok, eras[0])}
		before := rs.up.count.Load()
		const n = 30
		type outcome struct {
			replica int
			res     *mcp.CallToolResult
			err     error
		}
		results := make([]outcome, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := replicaCallTool(clients[i%2], "up_count", nil)
				results[i] = outcome{i % 2, res, err}
			}()
		}
		close(start)
		wg.Wait()
		ok, limited, unavailable := 0, 0, 0
		limitedOn := [2]int{}
		for i, o := range results {
			if o.err != nil {
				t.Errorf("call %d (replica %d): %v", i, o.replica, o.err)
				continue
			}
			txt := resultText(o.res)
			switch {
			case !o.res.IsError && strings.Contains(txt, `"n":`):
				ok++
			case o.res.IsError && strings.HasPrefix(txt, "rate limited:"):
				limited++
				limitedOn[o.replica]++
				m := replicaRetryAfterRe.FindStringSubmatch(txt)
				if m == nil {
					t.Errorf("rate-limited result names no retry time: %q", txt)
					break
				}
				if d, err := time.ParseDuration(m[1]); err != nil || d <= 0 || d > time.Hour {
					t.Errorf("retry time %q is not a duration in (0, 1h]: %q", m[1], txt)
				}
				if !strings.Contains(txt, "10 requests per 1h") || !strings.Contains(txt, "up_count") {
					t.Errorf("rate-limited result does not name the limit and tool: %q", txt)
				}
			case o.res.IsError && strings.HasPrefix(txt, "error: the rate limiter is unavailable"):
				unavailable++
			default:
				t.Errorf("call %d (replica %d): unexpected result isError=%v %q", i, o.replica, o.res.IsError, txt)
			}
		}
		if unavailable > 0 {
			t.Errorf("%d of %d calls were refused as %q although Redis is up: the gateway's Redis round trip missed its deadline under load", unavailable, n, "rate limiter unavailable")
		}
		if ok != 10 || limited != 20 {
			t.Errorf("%d calls succeeded and %d were rate limited, want exactly 10 and 20 (limited per replica: %v)", ok, limited, limitedOn)
		}
		if got := rs.up.count.Load() - before; got != 10 {
			t.Errorf("the upstream counted %d hits, want exactly 10", got)
		}
		// Sequentially now: the bucket is empty on both replicas.
		for i, c := range clients {
			res := callTool(t, c, "up_count", nil)
			if !res.IsError || !strings.HasPrefix(resultText(res), "rate limited:") {
				t.Errorf("replica %d after the burst: isError=%v %q", i, res.IsError, resultText(res))
			}
		}
		if got := rs.up.count.Load() - before; got != 10 {
			t.Errorf("the upstream counted %d hits after the extra calls, want 10", got)
		}
		// Both replicas audited what they refused and allowed.
		counts := replicaAuditCounts(t, "up_count", rs.a.AuditPath, rs.b.AuditPath)
		if counts["allow"] != ok || counts["rate_limited"] != limited+2 || counts["error"] != unavailable {
			t.Errorf("audit records of up_count across both replicas: %v, want allow=%d rate_limited=%d error=%d", counts, ok, limited+2, unavailable)
		}
		// Another subject has its own bucket.
		other := connect(t, rs.b.URL, rs.token(t, "rl-other"), eras[0])
		if res := callTool(t, other, "up_count", nil); res.IsError {
			t.Errorf("another subject was limited by rl-user's bucket: %s", resultText(res))
		}
	})

	t.Run("legacy session continues across replicas", func(t *testing.T) {
		tok := rs.token(t, "sess-user")
		intruder := rs.token(t, "intruder")
		onA := connect(t, rs.a.URL, tok, eras[1])
		sid := onA.GetSessionId()
		if sid == "" {
			t.Fatal("legacy session on replica A got no Mcp-Session-Id")
		}
		if res := callTool(t, onA, "up_count", nil); res.IsError {
			t.Fatalf("call on A: %s", resultText(res))
		}

		// The same session, same token, on replica B.
		before := rs.up.count.Load()
		status, rpc := replicaLegacyRPC(t, http.MethodPost, rs.b.URL, tok, sid, "tools/call", map[string]any{"name": "up_count", "arguments": map[string]any{}})
		if status != http.StatusOK || rpc == nil {
			t.Fatalf("tools/call on B with A's session: %d %v", status, rpc)
		}
		if txt, isErr := replicaRPCResult(t, rpc); isErr || !strings.Contains(txt, `"n":`) {
			t.Errorf("tools/call on B with A's session: isError=%v %q", isErr, txt)
		}
		if got := rs.up.count.Load() - before; got != 1 {
			t.Errorf("upstream hits from the call on B: %d, want 1", got)
		}
		status, rpc = replicaLegacyRPC(t, http.MethodPost, rs.b.URL, tok, sid, "tools/list", map[string]any{})
		if status != http.StatusOK || rpc == nil || !strings.Contains(fmt.Sprint(rpc["result"]), "up_count") {
			t.Errorf("tools/list on B with A's session: %d %v", status, rpc)
		}

		// Another principal with that session id: 404 on both replicas,
		// whatever the method, and nothing reaches the upstream.
		before = rs.up.count.Load()
		for _, gw := range []*gateway{rs.b, rs.a} {
			for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
				status, _ := replicaLegacyRPC(t, m, gw.URL, intruder, sid, "tools/call", map[string]any{"name": "up_count", "arguments": map[string]any{}})
				if status != http.StatusNotFound {
					t.Errorf("%s %s with another principal's session: %d, want 404", m, gw.URL, status)
				}
			}
		}
		if got := rs.up.count.Load() - before; got != 0 {
			t.Errorf("the intruder's calls reached the upstream %d times", got)
		}
		// The owner's session survived the intruder's DELETEs.
		if res := callTool(t, onA, "up_count", nil); res.IsError {
			t.Errorf("the session on A broke after the intruder's attempts: %s", resultText(res))
		}

		// The owner ends the session on B: it is gone on A too, although A
		// holds it in its session cache (it served it just above). A evicts
		// it when Redis delivers B's pub/sub message, which Redis sends
		// before B's DELETE returns but A reads asynchronously: the next
		// request is refused, allowing at most sessionEvictRetries
		// refusal-free tools/list probes 10 ms apart (docs/operations.md).
		if status, _ := replicaLegacyRPC(t, http.MethodDelete, rs.b.URL, tok, sid, "", nil); status != http.StatusOK && status != http.StatusNoContent && status != http.StatusAccepted {
			t.Errorf("DELETE of the session on B by its owner: %d", status)
		}
		for i := 0; ; i++ {
			status, _ := replicaLegacyRPC(t, http.MethodPost, rs.a.URL, tok, sid, "tools/list", map[string]any{})
			if status == http.StatusNotFound {
				if i > 0 {
					t.Logf("A refused the deleted session after %d probes", i)
				}
				break
			}
			if i == sessionEvictRetries {
				t.Fatalf("session deleted on B still accepted by A after %d probes: %d", i, status)
			}
			time.Sleep(10 * time.Millisecond)
		}
		before = rs.up.count.Load()
		if status, _ := replicaLegacyRPC(t, http.MethodPost, rs.a.URL, tok, sid, "tools/call", map[string]any{"name": "up_count", "arguments": map[string]any{}}); status != http.StatusNotFound {
			t.Errorf("session ended on B still used on A: %d, want 404", status)
		}
		if got := rs.up.count.Load() - before; got != 0 {
			t.Errorf("a call on the ended session reached the upstream")
		}
	})

	var delegation string // shared with the revocation subtest
	keysTok := rs.token(t, "key-user")

	t.Run("keys shared", func(t *testing.T) {
		ca := connect(t, rs.a.URL, keysTok, eras[0])
		cb := connect(t, rs.b.URL, keysTok, eras[0])
		if res := callTool(t, ca, "up_echo", nil); res.IsError {
			t.Fatalf("up_echo on A: %s", resultText(res))
		}
		fromA := rs.up.lastAuth()
		if res := callTool(t, cb, "up_echo", nil); res.IsError {
			t.Fatalf("up_echo on B: %s", resultText(res))
		}
		fromB := rs.up.lastAuth()
		if fromA == "" || fromB == "" || fromA == keysTok || fromB == keysTok {
			t.Fatalf("the upstream got no gateway assertion (or the agent's token)")
		}
		kidA, kidB := replicaKid(t, fromA), replicaKid(t, fromB)
		if kidA == "" || kidA == kidB {
			t.Fatalf("replica kids %q and %q: want two distinct signing keys", kidA, kidB)
		}
		for _, c := range []struct {
			name, assertion, kid, verifier string
		}{
			{"A's assertion with B's JWKS", fromA, kidA, rs.b.URL},
			{"B's assertion with A's JWKS", fromB, kidB, rs.a.URL},
		} {
			set, ok := replicaJWKSWithKid(t, c.verifier, c.kid, 5*time.Second)
			if !ok {
				t.Errorf("%s: kid %q not listed (%d keys)", c.name, c.kid, len(set.Keys))
				continue
			}
			claims := replicaVerify(t, c.assertion, set)
			act, _ := claims["act"].(map[string]any)
			if claims["iss"] != rs.public || claims["aud"] != "up" || claims["sub"] != "key-user" || act["sub"] != "test-agent" {
				t.Errorf("%s: claims %v", c.name, claims)
			}
		}

		// A delegation minted at A works at B, narrowed to its scope.
		delegation = replicaDelegate(t, rs.a.URL, keysTok, "tool:up_echo")
		if replicaKid(t, delegation) != kidA {
			t.Errorf("the delegation from A is not signed with A's key")
		}
		cd := connect(t, rs.b.URL, delegation, eras[0])
		if names := listNames(t, cd); !slices.Equal(names, []string{"up_echo"}) {
			t.Errorf("tools/list on B with the delegation: %v, want [up_echo]", names)
		}
		if res := callTool(t, cd, "up_echo", nil); res.IsError {
			t.Errorf("up_echo on B with the delegation: %s", resultText(res))
		} else {
			claims := replicaVerify(t, rs.up.lastAuth(), replicaJWKS(t, rs.a.URL))
			if claims["sub"] != "key-user" || claims["delegation_id"] == nil || claims["delegation_id"] == "" {
				t.Errorf("assertion of a delegated call: %v", claims)
			}
		}
		before := rs.up.count.Load()
		if res := callTool(t, cd, "up_count", nil); !res.IsError || !strings.HasPrefix(resultText(res), "denied:") {
			t.Errorf("up_count outside the delegation on B: isError=%v %q", res.IsError, resultText(res))
		}
		if rs.up.count.Load() != before {
			t.Error("a call outside the delegation reached the upstream")
		}
	})

	t.Run("revocations shared", func(t *testing.T) {
		if delegation == "" {
			t.Skip("no delegation token (keys subtest failed)")
		}
		for _, gw := range []*gateway{rs.a, rs.b} {
			if resp := rawMCP(t, gw.URL, "Bearer "+delegation, nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("the delegation before revocation at %s: %d", gw.URL, resp.StatusCode)
			}
		}
		cd := connect(t, rs.a.URL, delegation, eras[0])
		if status, body := replicaRevoke(t, rs.b.URL, delegation); status != http.StatusOK {
			t.Fatalf("revoke at B: %d %s", status, body)
		}
		for _, gw := range []*gateway{rs.a, rs.b} {
			resp := rawMCP(t, gw.URL, "Bearer "+delegation, nil)
			wa := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(wa, `error="invalid_token"`) {
				t.Errorf("revoked delegation at %s: %d %q", gw.URL, resp.StatusCode, wa)
			}
		}
		before := rs.up.hits()
		if res, err := replicaCallTool(cd, "up_echo", nil); err == nil {
			t.Errorf("a client on A with the revoked delegation could still call: isError=%v %q", res.IsError, resultText(res))
		}
		if rs.up.hits() != before {
			t.Error("the revoked delegation reached the upstream")
		}
		// It cannot be exchanged again either, at either replica.
		for _, gw := range []*gateway{rs.a, rs.b} {
			if status, out := replicaExchange(t, gw.URL, delegation, "tool:up_echo"); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
				t.Errorf("re-exchange of the revoked delegation at %s: %d %v", gw.URL, status, out)
			}
		}
		// The human's own token is untouched.
		if resp := rawMCP(t, rs.a.URL, "Bearer "+keysTok, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("the human's token after revoking the delegation: %d", resp.StatusCode)
		}
	})
}

// TestReplicasRedisOutage kills Redis under two running replicas: calls are
// refused (fail closed) without reaching the upstream, /readyz says why, and
// everything works again once Redis is back, without restarting a gateway.
func TestReplicasRedisOutage(t *testing.T) {
	rs := startReplicas(t)
	tok := rs.token(t, "outage-user")
	clients := []*client.Client{connect(t, rs.a.URL, tok, eras[0]), connect(t, rs.b.URL, tok, eras[0])}
	for i, c := range clients {
		if res := callTool(t, c, "up_count", nil); res.IsError {
			t.Fatalf("replica %d before the outage: %s", i, resultText(res))
		}
	}
	legacy := connect(t, rs.a.URL, tok, eras[1])
	sid := legacy.GetSessionId()
	if sid == "" {
		t.Fatal("no legacy session id")
	}
	deleg := replicaDelegate(t, rs.a.URL, tok, "tool:up_count")
	for _, gw := range []*gateway{rs.a, rs.b} { // both replicas know the key now
		if resp := rawMCP(t, gw.URL, "Bearer "+deleg, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("delegation at %s before the outage: %d", gw.URL, resp.StatusCode)
		}
	}

	rs.redis.Stop()

	t.Run("refused while Redis is down", func(t *testing.T) {
		before := rs.up.hits()
		for i, c := range clients {
			for range 3 {
				res := callTool(t, c, "up_count", nil)
				txt := resultText(res)
				if !res.IsError || !strings.HasPrefix(txt, "error:") || !strings.Contains(txt, "rate limiter") {
					t.Errorf("replica %d with Redis down: isError=%v %q", i, res.IsError, txt)
				}
			}
		}
		if got := rs.up.hits() - before; got != 0 {
			t.Errorf("%d calls reached the upstream with Redis down", got)
		}
		for _, gw := range []*gateway{rs.a, rs.b} {
			status, body := replicaReadyz(t, gw.URL)
			var rz struct {
				Ready  bool              `json:"ready"`
				Checks map[string]string `json:"checks"`
			}
			_ = json.Unmarshal([]byte(body), &rz)
			if status != http.StatusServiceUnavailable || rz.Ready || rz.Checks["redis"] == "" || rz.Checks["redis"] == "ok" {
				t.Errorf("readyz at %s with Redis down: %d %s", gw.URL, status, body)
			}
			// A delegation cannot be checked for revocation: refused (503), not accepted.
			if resp := rawMCP(t, gw.URL, "Bearer "+deleg, nil); resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("delegation at %s with Redis down: %d, want 503", gw.URL, resp.StatusCode)
			}
			// A legacy session cannot be checked: refused.
			if status, _ := replicaLegacyRPC(t, http.MethodPost, gw.URL, tok, sid, "tools/call", map[string]any{"name": "up_count", "arguments": map[string]any{}}); status != http.StatusServiceUnavailable {
				t.Errorf("legacy session at %s with Redis down: %d, want 503", gw.URL, status)
			}
			// A revocation cannot be recorded: the caller is told (503), not 200.
			if status, body := replicaRevoke(t, gw.URL, deleg); status != http.StatusServiceUnavailable {
				t.Errorf("revoke at %s with Redis down: %d %s, want 503", gw.URL, status, body)
			}
		}
		if got := rs.up.hits() - before; got != 0 {
			t.Errorf("%d requests reached the upstream with Redis down", got)
		}
		counts := replicaAuditCounts(t, "up_count", rs.a.AuditPath, rs.b.AuditPath)
		if counts["error"] != 6 {
			t.Errorf("audit records of refused calls: %v, want error=6", counts)
		}
	})

	rs.redis.Restart()

	t.Run("recovers after Redis restarts", func(t *testing.T) {
		for i, c := range clients {
			deadline := time.Now().Add(15 * time.Second)
			for {
				res, err := replicaCallTool(c, "up_count", nil)
				if err == nil && !res.IsError {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("replica %d did not recover within 15 s: %v %v", i, err, res)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		for _, gw := range []*gateway{rs.a, rs.b} {
			waitHTTP(t, gw.URL+"/readyz", http.StatusOK, 15*time.Second, gw.logs.String)
		}
		// Sessions lived in Redis: the old one is gone everywhere (404: the
		// client starts a new session), and a new one works across replicas.
		for _, gw := range []*gateway{rs.a, rs.b} {
			if status, _ := replicaLegacyRPC(t, http.MethodPost, gw.URL, tok, sid, "tools/list", map[string]any{}); status != http.StatusNotFound {
				t.Errorf("pre-outage session at %s after the Redis restart: %d, want 404", gw.URL, status)
			}
		}
		fresh := connect(t, rs.b.URL, tok, eras[1])
		if status, rpc := replicaLegacyRPC(t, http.MethodPost, rs.a.URL, tok, fresh.GetSessionId(), "tools/call", map[string]any{"name": "up_count", "arguments": map[string]any{}}); status != http.StatusOK {
			t.Errorf("new session from B used on A after the restart: %d %v", status, rpc)
		}
		// Revocations work again.
		if status, body := replicaRevoke(t, rs.b.URL, deleg); status != http.StatusOK {
			t.Errorf("revoke after the restart: %d %s", status, body)
		}
		if resp := rawMCP(t, rs.a.URL, "Bearer "+deleg, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("delegation revoked after the restart, used at A: %d, want 401", resp.StatusCode)
		}
	})

	// The restarted Redis is empty: the public keys A and B published at
	// start are gone from it. The contract says any replica verifies any
	// other's tokens, so the keys they sign with must be published again. A
	// third replica C started now (autoscaling after a Redis failover) knows
	// nothing but what Redis holds, which makes this check deterministic.
	t.Run("keys shared again after Redis restarts", func(t *testing.T) {
		// Every replica republishes its key every few seconds, so C comes
		// to know A's and B's keys shortly after the restart: poll.
		rc := startGateway(t, rs.cfg)
		deleg2 := replicaDelegate(t, rs.a.URL, tok, "tool:up_count")
		kidA := replicaKid(t, deleg2)
		c := connect(t, rs.b.URL, tok, eras[0])
		if res := callTool(t, c, "up_echo", nil); res.IsError {
			t.Fatalf("up_echo on B: %s", resultText(res))
		}
		fromB := rs.up.lastAuth()
		kidB := replicaKid(t, fromB)
		var set jose.JSONWebKeySet
		status := 0
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp := rawMCP(t, rc.URL, "Bearer "+deleg2, nil)
			status = resp.StatusCode
			set = replicaJWKS(t, rc.URL)
			if (status == http.StatusOK && len(set.Key(kidA)) > 0 && len(set.Key(kidB)) > 0) || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if status != http.StatusOK {
			t.Errorf("a delegation A issued after the Redis restart is still refused by replica C: %d", status)
		}
		for name, kid := range map[string]string{"A": kidA, "B": kidB} {
			if len(set.Key(kid)) == 0 {
				t.Errorf("after the Redis restart, replica C's JWKS does not list %s's signing key %s, which %s still signs with (C lists %d keys)", name, kid, name, len(set.Keys))
			}
		}
		if len(set.Key(kidB)) > 0 {
			replicaVerify(t, fromB, set)
		}
	})
}
