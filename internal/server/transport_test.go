package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentharness/harness/internal/config"
)

// rawDo sends body to url with the given headers (token "" sends none).
func rawDo(t *testing.T, method, url, token, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") && method == http.MethodGet {
		return resp, "" // a stream never ends: not read
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// openLegacy opens a session of the given revision and returns its id.
func openLegacy(t *testing.T, f *fixture, token, version string) string {
	t.Helper()
	resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", token,
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize %s: %d %s", version, resp.StatusCode, body)
	}
	hdr := map[string]string{"Mcp-Session-Id": sid}
	if version != batchRevision {
		hdr["Mcp-Protocol-Version"] = version
	}
	if resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	return sid
}

// wantRPCError checks that body is a JSON-RPC error carrying the request id
// of resp, and returns it.
func wantRPCError(t *testing.T, what string, resp *http.Response, body string) rpcErrorObject {
	t.Helper()
	var e struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   *rpcErrorObject `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.JSONRPC != "2.0" || e.Error == nil || e.Error.Message == "" {
		t.Fatalf("%s: body is not a JSON-RPC error (%v): %q", what, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if rid, _ := e.Error.Data["request_id"].(string); rid == "" || rid != resp.Header.Get("X-Request-Id") {
		t.Errorf("%s: error.data.request_id = %v, X-Request-Id = %q", what, e.Error.Data["request_id"], resp.Header.Get("X-Request-Id"))
	}
	return *e.Error
}

// TestErrorsOneShape: every error of /mcp is a JSON-RPC error object with
// the request id, whichever layer refused (authentication, session binding,
// mcp-go's plain-text answers).
func TestErrorsOneShape(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	sid := openLegacy(t, f, "alice", "2025-06-18")
	list := `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`
	for _, tc := range []struct {
		name, method, token, body string
		hdr                       map[string]string
		status                    int
		msg                       string
	}{
		{"no token", http.MethodPost, "", list, nil, http.StatusUnauthorized, "bearer token"},
		{"bad token", http.MethodPost, "mallory", list, nil, http.StatusUnauthorized, "invalid token"},
		{"unknown session", http.MethodPost, "alice", list, map[string]string{"Mcp-Session-Id": "mcp-session-nope", "Mcp-Protocol-Version": "2025-06-18"}, http.StatusNotFound, "session not found"},
		{"session of another human", http.MethodPost, "bob", list, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}, http.StatusNotFound, "session not found"},
		{"foreign host", http.MethodPost, "alice", list, map[string]string{"Host": "evil.example:80", "Mcp-Session-Id": sid}, http.StatusForbidden, "Host"},
		{"wrong content type", http.MethodPost, "alice", "", map[string]string{"Content-Type": "text/plain", "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}, http.StatusBadRequest, "content type"},
		{"method not allowed", http.MethodPut, "alice", "", nil, http.StatusMethodNotAllowed, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawDo(t, tc.method, f.url+"/mcp", tc.token, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			e := wantRPCError(t, tc.name, resp, body)
			if !strings.Contains(strings.ToLower(e.Message), strings.ToLower(tc.msg)) {
				t.Errorf("message %q, want it to mention %q", e.Message, tc.msg)
			}
			if tc.status == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
				t.Errorf("401 lost its WWW-Authenticate: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestLegacyStatusCodes: in the session era a message without a session is
// a bad request (400), not an expired session (404); a GET with neither a
// session nor a version opens no stream.
func TestLegacyStatusCodes(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, tc := range []struct {
		name, method, body string
		hdr                map[string]string
		status             int
	}{
		{"POST without session or version", http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil, http.StatusBadRequest},
		{"POST without session, 2025-06-18", http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Mcp-Protocol-Version": "2025-06-18"}, http.StatusBadRequest},
		{"GET without session or version", http.MethodGet, "", nil, http.StatusBadRequest},
		{"DELETE without session", http.MethodDelete, "", map[string]string{"Mcp-Protocol-Version": "2025-11-25"}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawDo(t, tc.method, f.url+"/mcp", "alice", tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
				t.Fatal("a stream was opened")
			}
			if e := wantRPCError(t, tc.name, resp, body); !strings.Contains(e.Message, "Mcp-Session-Id") {
				t.Errorf("message %q does not say what is missing", e.Message)
			}
		})
	}
}

// TestModernNotificationWithoutMeta: _meta is defined for requests; a
// 2026-07-28 notification without it (the Go SDK's notifications/cancelled)
// is accepted.
func TestModernNotificationWithoutMeta(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28"}
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3,"reason":"gone"}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3,"_meta":{}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	} {
		if resp, out := rawDo(t, http.MethodPost, f.url+"/mcp", "alice", body, hdr); resp.StatusCode != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", body, resp.StatusCode, out)
		}
	}
	// A request still needs _meta: nothing else is relaxed.
	resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, hdr)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("request without _meta: %d %s, want 400", resp.StatusCode, body)
	}
	wantRPCError(t, "request without _meta", resp, body)
}

// TestBatchIn20250326 sends a JSON-RPC batch in a 2025-03-26 session: each
// call runs the pipeline and is audited; notifications get no entry. Later
// revisions get a clear JSON-RPC error.
func TestBatchIn20250326(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	sid := openLegacy(t, f, "alice", "2025-03-26")
	batch := `[
 {"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"crm_get_customer","arguments":{"id":"c-7"}}},
 {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"zzz"}},
 {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"crm_issue_refund","arguments":{}}},
 {"jsonrpc":"2.0","id":3,"method":"ping"},
 {"jsonrpc":"2.0","id":4,"method":"no/such/method"}]`
	resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "alice", batch, map[string]string{"Mcp-Session-Id": sid})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.StatusCode, body)
	}
	var answers []struct {
		ID     json.RawMessage `json:"id"`
		Result *struct {
			IsError bool `json:"isError"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
		Error *rpcErrorObject `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &answers); err != nil {
		t.Fatalf("batch answer is not an array: %v %s", err, body)
	}
	if len(answers) != 4 {
		t.Fatalf("%d answers, want 4 (the notification gets none): %s", len(answers), body)
	}
	ids := []string{`"a"`, "2", "3", "4"}
	for i, a := range answers {
		if string(a.ID) != ids[i] {
			t.Errorf("answer %d has id %s, want %s", i, a.ID, ids[i])
		}
	}
	if a := answers[0]; a.Result == nil || a.Result.IsError || len(a.Result.Content) == 0 || !strings.Contains(a.Result.Content[0].Text, "c-7") {
		t.Errorf("allowed call: %s", body)
	}
	if a := answers[1]; a.Result == nil || !a.Result.IsError || !strings.HasPrefix(a.Result.Content[0].Text, "denied: ") {
		t.Errorf("denied call: %s", body)
	}
	if answers[2].Result == nil || answers[3].Error == nil {
		t.Errorf("ping / unknown method: %s", body)
	}
	recs := f.audit.records()
	if len(recs) != 2 || recs[0].Decision != decAllow || recs[1].Decision != decDeny || recs[0].Session != sid {
		t.Errorf("audit: want one record per call in the batch, got %+v", recs)
	}

	// Only notifications: 202, no body.
	if resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "alice", `[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]`, map[string]string{"Mcp-Session-Id": sid}); resp.StatusCode != http.StatusAccepted {
		t.Errorf("notification batch: %d %s", resp.StatusCode, body)
	}

	// initialize anywhere in a batch refuses the whole batch.
	resp, body = rawDo(t, http.MethodPost, f.url+"/mcp", "alice",
		`[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"initialize","params":{}}]`, map[string]string{"Mcp-Session-Id": sid})
	if e := wantRPCError(t, "initialize in a batch", resp, body); resp.StatusCode != http.StatusBadRequest || e.Code != rpcInvalidRequest ||
		!strings.Contains(e.Message, "initialize must not be part of a JSON-RPC batch") {
		t.Errorf("initialize in a batch: %d %+v", resp.StatusCode, e)
	}
	// A message that does not decode gets an invalid-request entry with a
	// null id; the rest of the batch is served.
	resp, body = rawDo(t, http.MethodPost, f.url+"/mcp", "alice",
		`[{"jsonrpc":"2.0","id":7,"method":7},{"jsonrpc":"2.0","id":8,"method":"ping"}]`, map[string]string{"Mcp-Session-Id": sid})
	answers = answers[:0]
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &answers) != nil || len(answers) != 2 {
		t.Fatalf("batch with an undecodable message: %d %s", resp.StatusCode, body)
	}
	if a := answers[0]; string(a.ID) != "null" || a.Error == nil || a.Error.Code != rpcInvalidRequest || a.Error.Message != "invalid JSON-RPC message in batch" {
		t.Errorf("undecodable message's answer: %s", body)
	}
	if a := answers[1]; string(a.ID) != "8" || a.Result == nil {
		t.Errorf("ping after an undecodable message: %s", body)
	}
	if n := len(f.audit.records()); n != 2 {
		t.Errorf("refused batches ran calls: %d records", n)
	}

	// Later revisions: a clear JSON-RPC error, nothing executed.
	sid2 := openLegacy(t, f, "alice", "2025-06-18")
	resp, body = rawDo(t, http.MethodPost, f.url+"/mcp", "alice", batch, map[string]string{"Mcp-Session-Id": sid2, "Mcp-Protocol-Version": "2025-06-18"})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("batch in 2025-06-18: %d %s", resp.StatusCode, body)
	}
	if e := wantRPCError(t, "batch in 2025-06-18", resp, body); e.Code != rpcInvalidRequest || !strings.Contains(e.Message, "batches are not supported in protocol version 2025-06-18") {
		t.Errorf("batch in 2025-06-18: %+v", e)
	}
	if n := len(f.audit.records()); n != 2 {
		t.Errorf("a refused batch ran calls: %d records", n)
	}
}

// TestCORS: preflights are answered before authentication for allowed
// origins only; answers expose the MCP headers; the metadata documents
// answer any origin; a foreign Host still gets 403.
func TestCORS(t *testing.T) {
	const app = "http://127.0.0.1:5173"
	f := newFixture(t, fixtureOpts{mutate: func(c *config.Config) { c.CORS.AllowedOrigins = []string{app} }})
	preflight := map[string]string{"Origin": app, "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, last-event-id"}

	resp, body := rawDo(t, http.MethodOptions, f.url+"/mcp", "", "", preflight)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("preflight: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	allow := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"content-type", "authorization", "mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id"} {
		if !strings.Contains(allow, h) {
			t.Errorf("Access-Control-Allow-Headers %q lacks %s", allow, h)
		}
	}
	if m := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") || !strings.Contains(m, "DELETE") {
		t.Errorf("Access-Control-Allow-Methods %q", m)
	}

	// The actual request: 401 readable cross-origin, WWW-Authenticate exposed.
	resp, _ = rawDo(t, http.MethodPost, f.url+"/mcp", "", `{"jsonrpc":"2.0","id":1,"method":"initialize"}`, map[string]string{"Origin": app})
	expose := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers"))
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(expose, "www-authenticate") || !strings.Contains(expose, "mcp-session-id") {
		t.Errorf("cross-origin 401: %d %v", resp.StatusCode, resp.Header)
	}

	// A page on an origin that is not listed: refused, nothing readable.
	for _, m := range []string{http.MethodOptions, http.MethodPost} {
		resp, body = rawDo(t, m, f.url+"/mcp", "alice", `{}`, map[string]string{"Origin": "http://evil.example"})
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s from a foreign origin: %d %v %s", m, resp.StatusCode, resp.Header, body)
		}
	}
	// A page on this machine while public_url is loopback (local
	// development, the conformance suite's localhost probe): served as
	// mcp-go serves it, but without CORS headers; its preflight is refused.
	resp, body = rawDo(t, http.MethodPost, f.url+"/mcp", "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Origin": "http://localhost:4321"})
	if resp.StatusCode == http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST from a loopback origin: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = rawDo(t, http.MethodOptions, f.url+"/mcp", "", "", map[string]string{"Origin": "http://localhost:4321", "Access-Control-Request-Method": "POST"})
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from an unlisted loopback origin: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// DNS rebinding: a foreign Host is refused, preflight or not.
	for _, m := range []string{http.MethodOptions, http.MethodPost} {
		resp, body = rawDo(t, m, f.url+"/mcp", "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Host": "evil.example", "Origin": app})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s with a foreign Host: %d %s", m, resp.StatusCode, body)
		}
	}

	// Metadata documents: any origin, preflight included.
	for _, p := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, body = rawDo(t, http.MethodOptions, f.url+p, "", "", map[string]string{"Origin": "http://anyone.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "mcp-protocol-version"})
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "mcp-protocol-version") {
			t.Errorf("OPTIONS %s: %d %v %s", p, resp.StatusCode, resp.Header, body)
		}
		resp, body = rawDo(t, http.MethodGet, f.url+p, "", "", map[string]string{"Origin": "http://anyone.example"})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "mcp-protocol-version") || !strings.Contains(body, `"resource"`) {
			t.Errorf("GET %s: %d %v %s", p, resp.StatusCode, resp.Header, body)
		}
	}
}

// TestRebindGuardOffBehindProxy: with a public_url that is not loopback (a
// proxy fronts the gateway), mcp-go's DNS-rebinding guard is off, and so is
// the edge's mirror of it: a Host that is not loopback passes, preflight
// or not, and a loopback page's Origin is a foreign origin like any other.
func TestRebindGuardOffBehindProxy(t *testing.T) {
	f := newFixture(t, fixtureOpts{mutate: func(c *config.Config) { c.PublicURL = "https://gw.example" }})
	if f.srv.rebindGuard {
		t.Fatal("rebindGuard is on with public_url https://gw.example")
	}
	resp, body := rawDo(t, http.MethodOptions, f.url+"/mcp", "", "", map[string]string{"Host": "gw.example"})
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("preflight with the proxy's Host: %d %s", resp.StatusCode, body)
	}
	resp, body = rawDo(t, http.MethodPost, f.url+"/mcp", "alice", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Origin": "http://localhost:4321"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST from a loopback origin behind a proxy: %d %s", resp.StatusCode, body)
	}
}

// TestNoOriginsByDefault: without cors.allowed_origins no other origin may
// call /mcp, while native clients (no Origin) and public_url's own pages may.
func TestNoOriginsByDefault(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	resp, body := rawDo(t, http.MethodOptions, f.url+"/mcp", "", "", map[string]string{"Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "POST"})
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight with no allowed origins: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = rawDo(t, http.MethodOptions, f.url+"/mcp", "", "", map[string]string{"Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST"})
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("preflight from public_url's own origin: %d %s", resp.StatusCode, body)
	}
}
