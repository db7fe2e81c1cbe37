package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/approvals"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/store"
	"github.com/agentharness/harness/policy"
)

const modernMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`

// modernCall is a 2026-07-28 tools/call body.
func modernCall(id, name, args string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `,` + modernMeta + `}}`
}

func modernHeaders(name string) map[string]string {
	return map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name}
}

func fastFixture(t testing.TB) *fixture {
	return newFixture(t, fixtureOpts{mutate: func(c *config.Config) {
		c.RateLimit.Default = config.Rate{Requests: 100000, Per: config.Duration(time.Hour)}
	}})
}

// outcome is what a client sees of one answer, normalised: the request
// id (X-Request-Id and error.data.request_id) differs between requests.
type outcome struct {
	status  int
	ctype   string
	session string
	body    any    // the JSON body; nil when it is not JSON
	raw     string // the body when it is not JSON
}

func (o outcome) String() string {
	b, _ := json.Marshal(o.body)
	return fmt.Sprintf("%d %q session=%q body=%s raw=%q", o.status, o.ctype, o.session, b, o.raw)
}

func normalise(resp *http.Response, body string) outcome {
	o := outcome{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), session: resp.Header.Get("Mcp-Session-Id")}
	var v any
	if json.Unmarshal([]byte(body), &v) != nil {
		o.raw = body
		return o
	}
	if m, ok := v.(map[string]any); ok {
		if e, ok := m["error"].(map[string]any); ok {
			if d, ok := e["data"].(map[string]any); ok {
				delete(d, "request_id")
			}
		}
	}
	o.body = v
	return o
}

// auditView is what of an audit record must not depend on the path taken.
type auditView struct {
	Decision, Reason, Tool, Protocol, Subject, Agent, Upstream, Environment, Session string
	Status, Redactions                                                               int
}

func viewOf(rs []audit.Record) []auditView {
	out := make([]auditView, 0, len(rs))
	for _, r := range rs {
		out = append(out, auditView{r.Decision, r.Reason, r.Tool, r.Protocol, r.Subject, r.Agent, r.Upstream, r.Environment, r.Session, r.Status, r.Redactions})
	}
	return out
}

type fastCase struct {
	name  string
	token string
	body  string
	hdr   map[string]string
	fast  bool   // the fast path must answer it
	path  string // "" is /mcp
}

func fastCases(sid string) []fastCase {
	h := modernHeaders
	with := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{}
		for a, b := range m {
			c[a] = b
		}
		if v == "" {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	get := "crm_get_customer"
	return []fastCase{
		{"good call", "alice", modernCall("1", get, `{"id":"c-1"}`), h(get), true, ""},
		{"string id", "alice", modernCall(`"req-é\u00e9<&>"`, get, `{"id":"c-2"}`), h(get), true, ""},
		{"empty string id", "alice", modernCall(`""`, get, `{"id":"c-1"}`), h(get), true, ""},
		{"negative id", "alice", modernCall("-42", get, `{"id":"c-1"}`), h(get), true, ""},
		{"zero id", "alice", modernCall("0", get, `{"id":"c-1"}`), h(get), true, ""},
		{"largest fast id", "alice", modernCall("999999999999999", get, `{"id":"c-1"}`), h(get), true, ""},
		{"very large id", "alice", modernCall("123456789012345678901234567890", get, `{"id":"c-1"}`), h(get), false, ""},
		{"id past 2^53", "alice", modernCall("9007199254740993", get, `{"id":"c-1"}`), h(get), false, ""},
		{"fractional id", "alice", modernCall("1.5", get, `{"id":"c-1"}`), h(get), false, ""},
		{"exponent id", "alice", modernCall("1e3", get, `{"id":"c-1"}`), h(get), false, ""},
		{"negative zero id", "alice", modernCall("-0", get, `{"id":"c-1"}`), h(get), false, ""},
		{"null id", "alice", modernCall("null", get, `{"id":"c-1"}`), h(get), false, ""},
		{"object id", "alice", modernCall(`{"a":1}`, get, `{"id":"c-1"}`), h(get), false, ""},
		{"notification", "alice", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"crm_get_customer","arguments":{"id":"c-1"},` + modernMeta + `}}`, h(get), false, ""},
		{"escaped text in result", "alice", modernCall("2", get, `{"id":"<a href=\"x\">&\u2028"}`), h(get), true, ""},
		{"charset content type", "alice", modernCall("3", get, `{"id":"c-3"}`), with(h(get), "Content-Type", "application/json; charset=utf-8"), true, ""},
		{"wrong content type", "alice", modernCall("3", get, `{"id":"c-3"}`), with(h(get), "Content-Type", "text/plain"), false, ""},
		{"array result", "alice", modernCall("4", "crm_list", `{}`), h("crm_list"), true, ""},
		{"upstream 502 html", "alice", modernCall("5", "crm_page", `{}`), h("crm_page"), true, ""},
		{"binary result", "alice", modernCall("6", "crm_blob", `{}`), h("crm_blob"), true, ""},
		{"no arguments", "alice", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"crm_list",` + modernMeta + `}}`, h("crm_list"), true, ""},
		{"arguments not an object", "alice", modernCall("8", get, `"c-1"`), h(get), true, ""},
		{"missing path argument", "alice", modernCall("9", get, `{}`), h(get), true, ""},
		{"denied tool", "alice", modernCall("10", "crm_issue_refund", `{}`), h("crm_issue_refund"), true, ""},
		{"delegation outside its scopes", "deleg", modernCall("11", "crm_list", `{}`), h("crm_list"), true, ""},
		{"unknown tool", "alice", modernCall("12", "crm_nope", `{}`), h("crm_nope"), false, ""},
		{"params not an object", "alice", `{"jsonrpc":"2.0","id":13,"method":"tools/call","params":[1]}`, h(get), false, ""},
		{"name not a string", "alice", `{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":7,` + modernMeta + `}}`, h(get), false, ""},
		{"wrong Mcp-Name", "alice", modernCall("15", get, `{"id":"c-1"}`), with(h(get), "Mcp-Name", "crm_list"), false, ""},
		{"missing Mcp-Name", "alice", modernCall("16", get, `{"id":"c-1"}`), with(h(get), "Mcp-Name", ""), false, ""},
		{"base64 Mcp-Name", "alice", modernCall("17", get, `{"id":"c-1"}`), with(h(get), "Mcp-Name", "=?base64?Y3JtX2dldF9jdXN0b21lcg==?="), true, ""},
		{"wrong Mcp-Method", "alice", modernCall("18", get, `{"id":"c-1"}`), with(h(get), "Mcp-Method", "tools/list"), false, ""},
		{"missing Mcp-Method", "alice", modernCall("19", get, `{"id":"c-1"}`), with(h(get), "Mcp-Method", ""), false, ""},
		{"Last-Event-ID", "alice", modernCall("20", get, `{"id":"c-1"}`), with(h(get), "Last-Event-ID", "e-1"), false, ""},
		{"missing _meta", "alice", `{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"crm_get_customer","arguments":{"id":"c-1"}}}`, h(get), false, ""},
		{"_meta without capabilities", "alice", `{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"crm_get_customer","arguments":{"id":"c-1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, h(get), false, ""},
		{"_meta version mismatch", "alice", strings.Replace(modernCall("23", get, `{"id":"c-1"}`), `"2026-07-28"`, `"2025-11-25"`, 1), h(get), false, ""},
		{"progress token", "alice", strings.Replace(modernCall("24", get, `{"id":"c-1"}`), `"_meta":{`, `"_meta":{"progressToken":"p-1",`, 1), h(get), false, ""},
		{"other _meta key", "alice", strings.Replace(modernCall("25", get, `{"id":"c-1"}`), `"_meta":{`, `"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",`, 1), h(get), false, ""},
		{"client info", "alice", strings.Replace(modernCall("26", get, `{"id":"c-1"}`), `"_meta":{`, `"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},`, 1), h(get), true, ""},
		{"requestState", "alice", strings.Replace(modernCall("27", get, `{"id":"c-1"}`), `"_meta":{`, `"requestState":"s","_meta":{`, 1), h(get), false, ""},
		{"inputResponses", "alice", strings.Replace(modernCall("28", get, `{"id":"c-1"}`), `"_meta":{`, `"inputResponses":{},"_meta":{`, 1), h(get), false, ""},
		{"task", "alice", strings.Replace(modernCall("29", get, `{"id":"c-1"}`), `"_meta":{`, `"task":{},"_meta":{`, 1), h(get), false, ""},
		{"folded member name", "alice", strings.Replace(modernCall("30", get, `{"id":"c-1"}`), `"method"`, `"Method"`, 1), h(get), false, ""},
		{"duplicate member", "alice", strings.Replace(modernCall("31", get, `{"id":"c-1"}`), `"jsonrpc":"2.0"`, `"jsonrpc":"2.0","jsonrpc":"2.0"`, 1), h(get), false, ""},
		{"result member", "alice", strings.Replace(modernCall("32", get, `{"id":"c-1"}`), `"jsonrpc":"2.0"`, `"jsonrpc":"2.0","result":{}`, 1), h(get), false, ""},
		{"wrong jsonrpc", "alice", strings.Replace(modernCall("33", get, `{"id":"c-1"}`), `"2.0"`, `"1.0"`, 1), h(get), false, ""},
		{"trailing garbage", "alice", modernCall("34", get, `{"id":"c-1"}`) + `x`, h(get), false, ""},
		{"batch", "alice", `[` + modernCall("35", get, `{"id":"c-1"}`) + `]`, h(get), false, ""},
		{"foreign Host", "alice", modernCall("36", get, `{"id":"c-1"}`), with(h(get), "Host", "evil.example"), false, ""},
		{"no token", "", modernCall("37", get, `{"id":"c-1"}`), h(get), false, ""},
		{"legacy session call", "alice", `{"jsonrpc":"2.0","id":38,"method":"tools/call","params":{"name":"crm_get_customer","arguments":{"id":"c-1"}}}`,
			map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}, false, ""},
		{"legacy header, modern body", "alice", modernCall("39", get, `{"id":"c-1"}`), with(h(get), "Mcp-Protocol-Version", "2025-06-18"), false, ""},
	}
}

// TestFastCallDifferential runs each request through the server with the
// fast path on and off: the status, the headers a client reads, the JSON
// body and the audit records must be the same, and the fast path must
// have answered exactly the requests it is meant to.
func TestFastCallDifferential(t *testing.T) {
	f := fastFixture(t)
	sid := openLegacy(t, f, "alice", "2025-06-18")
	diffFastCall(t, f, fastCases(sid))
}

// approvalPolicy allows every call with a human's approval.
type approvalPolicy struct{ allowAll }

func (approvalPolicy) Decide(ctx context.Context, in *policy.Input) (policy.Decision, error) {
	d, err := allowAll{}.Decide(ctx, in)
	d.Approval = json.RawMessage(`{"approvers":["role:admin"],"reason":"refunds need a second look"}`)
	return d, err
}

// TestFastCallDifferentialApproval: a call held for approval is answered
// as mcp-go answers it — an input_required result with a URL elicitation
// for a client that declared elicitation.url, a refusal otherwise.
func TestFastCallDifferentialApproval(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: approvalPolicy{}, approvals: approvals.New(store.NewMemory())})
	urlCaps := strings.Replace(modernCall("1", "crm_issue_refund", `{"amount":5}`), `"io.modelcontextprotocol/clientCapabilities":{}`,
		`"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}`, 1)
	diffFastCall(t, f, []fastCase{
		{"approval pending, URL elicitation", "bob", urlCaps, modernHeaders("crm_issue_refund"), true, ""},
		{"approval pending, no elicitation", "bob", modernCall("2", "crm_issue_refund", `{"amount":6}`), modernHeaders("crm_issue_refund"), true, ""},
	})
}

// TestFastCallDifferentialPreview: a preview environment's calls take the
// fast path with the preview's catalogue, policy and audit label.
func TestFastCallDifferentialPreview(t *testing.T) {
	f, _, _, _ := openPreview(t)
	const pv = "/env/pr-1/mcp"
	diffFastCall(t, f, []fastCase{
		{"preview tool", "pv-alice", modernCall("1", "crm_branch_only", `{}`), modernHeaders("crm_branch_only"), true, pv},
		{"preview call of a shared name", "pv-alice", modernCall("2", "crm_get_customer", `{"id":"c-1"}`), modernHeaders("crm_get_customer"), true, pv},
		{"production tool absent from the preview", "pv-alice", modernCall("3", "crm_list", `{}`), modernHeaders("crm_list"), false, pv},
		{"production token at the preview", "alice", modernCall("4", "crm_branch_only", `{}`), modernHeaders("crm_branch_only"), false, pv},
		{"preview-only tool at production", "alice", modernCall("5", "crm_branch_only", `{}`), modernHeaders("crm_branch_only"), false, ""},
	})
}

// TestFastCallCancelledByNotification: a 2026-07-28 notifications/cancelled
// of the caller's own naming its call in flight ends it on the fast path as
// it does through mcp-go: same answer, same audit record. (Another
// principal's cancel ends neither: TestCancelOnlyOwnRequests. Raw mcp-go
// would let anyone's cancel end it; the edge scopes it, cancel.go.)
func TestFastCallCancelledByNotification(t *testing.T) {
	started := make(chan struct{}, 1)
	f := newFixture(t, fixtureOpts{policy: allowAll{}, wrapUpstream: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/customers/block" {
				h.ServeHTTP(w, r)
				return
			}
			started <- struct{}{}
			select {
			case <-r.Context().Done(): // the gateway gave up the call
			case <-time.After(10 * time.Second): // never cancelled: answered, and the test fails below
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"customer_id":"block","note":"not cancelled"}`)
			}
		})
	}})
	cancelNote := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":77,"reason":"user gave up"}}`
	run := func(off bool) (outcome, []auditView, bool) {
		f.srv.fastCallOff.Store(off)
		defer f.srv.fastCallOff.Store(false)
		before, served := len(f.audit.records()), f.srv.fastServed.Load()
		type answer struct {
			resp *http.Response
			body string
		}
		done := make(chan answer, 1)
		go func() {
			resp, body, err := tryDo(f.url+"/mcp", "alice", modernCall("77", "crm_get_customer", `{"id":"block"}`), modernHeaders("crm_get_customer"))
			if err != nil {
				t.Error(err)
			}
			done <- answer{resp, body}
		}()
		<-started
		resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "alice", cancelNote,
			map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "notifications/cancelled"})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("notifications/cancelled: %d %s", resp.StatusCode, body)
		}
		a := <-done
		return normalise(a.resp, a.body), viewOf(f.audit.records()[before:]), f.srv.fastServed.Load() != served
	}
	fastOut, fastAudit, taken := run(false)
	slowOut, slowAudit, _ := run(true)
	t.Logf("%s", fastOut)
	if !taken {
		t.Error("the fast path did not take the call")
	}
	if strings.Contains(fmt.Sprint(slowOut.body), "not cancelled") {
		t.Fatalf("mcp-go did not cancel the call: %s", slowOut)
	}
	if fastOut.status != slowOut.status || !reflect.DeepEqual(fastOut.body, slowOut.body) {
		t.Errorf("answers differ:\n fast: %s\n mcp-go: %s", fastOut, slowOut)
	}
	if !reflect.DeepEqual(fastAudit, slowAudit) {
		t.Errorf("audit records differ:\n fast: %+v\n mcp-go: %+v", fastAudit, slowAudit)
	}
}

// diffFastCall runs each request through the server with the fast path
// on and off: the status, the headers a client reads, the JSON body and
// the audit records must be the same, and the fast path must have
// answered exactly the requests it is meant to.
func diffFastCall(t *testing.T, f *fixture, cases []fastCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := func(off bool) (outcome, []auditView, bool) {
				f.srv.fastCallOff.Store(off)
				before, served := len(f.audit.records()), f.srv.fastServed.Load()
				path := c.path
				if path == "" {
					path = "/mcp"
				}
				resp, body := rawDo(t, http.MethodPost, f.url+path, c.token, c.body, c.hdr)
				return normalise(resp, body), viewOf(f.audit.records()[before:]), f.srv.fastServed.Load() != served
			}
			fastOut, fastAudit, taken := run(false)
			slowOut, slowAudit, _ := run(true)
			f.srv.fastCallOff.Store(false)
			t.Logf("%s", fastOut)
			if taken != c.fast {
				t.Errorf("fast path taken = %v, want %v (%s)", taken, c.fast, fastOut)
			}
			if fastOut.status != slowOut.status || fastOut.ctype != slowOut.ctype || fastOut.session != slowOut.session ||
				fastOut.raw != slowOut.raw || !reflect.DeepEqual(fastOut.body, slowOut.body) {
				t.Errorf("answers differ:\n fast: %s\n mcp-go: %s", fastOut, slowOut)
			}
			if !reflect.DeepEqual(fastAudit, slowAudit) {
				t.Errorf("audit records differ:\n fast: %+v\n mcp-go: %+v", fastAudit, slowAudit)
			}
		})
	}
}

// FuzzFastCallEquivalence feeds arbitrary bodies (with the headers of a
// 2026-07-28 tools/call) through the server with the fast path on and
// off: the outcome — status, content type, and whether and which
// JSON-RPC result or error — must be the same.
func FuzzFastCallEquivalence(f *testing.F) {
	for _, c := range fastCases("") {
		f.Add(c.body, c.hdr["Mcp-Name"])
	}
	fx := fastFixture(f)
	f.Fuzz(func(t *testing.T, body, name string) {
		hdr := modernHeaders(name)
		if name == "" {
			delete(hdr, "Mcp-Name")
		}
		class := func(off bool) string {
			fx.srv.fastCallOff.Store(off)
			defer fx.srv.fastCallOff.Store(false)
			resp, b, err := tryDo(fx.url+"/mcp", "alice", body, hdr)
			if err != nil {
				return "transport error"
			}
			return outcomeClass(normalise(resp, b))
		}
		if fast, slow := class(false), class(true); fast != slow {
			t.Errorf("outcome differs for %q (Mcp-Name %q):\n fast: %s\n mcp-go: %s", body, name, fast, slow)
		}
	})
}

// tryDo is rawDo for the fuzz test: a request the client cannot send is
// an error, not a failure.
func tryDo(url, token, body string, hdr map[string]string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// outcomeClass is the kind of an answer: its status, content type, and
// whether it is a JSON-RPC result (an error result or not) or error
// (which code).
func outcomeClass(o outcome) string {
	kind := "not JSON-RPC"
	if m, ok := o.body.(map[string]any); ok {
		switch {
		case m["error"] != nil:
			code, _ := m["error"].(map[string]any)["code"].(float64)
			kind = fmt.Sprintf("error %v", code)
		case m["result"] != nil:
			isErr, _ := m["result"].(map[string]any)["isError"].(bool)
			kind = fmt.Sprintf("result isError=%v", isErr)
		}
	}
	return fmt.Sprintf("%d %s %s", o.status, o.ctype, kind)
}

// BenchmarkToolsCall is one 2026-07-28 tools/call through the whole
// handler chain and pipeline (a small request; an upstream answering
// about 1 KiB of JSON, redacted, audited), answered by mcp-go and by the
// fast path. Compare allocs/op and B/op (go test -bench ToolsCall
// -benchmem); timings on a shared machine are noise. Instruction counts:
// run each sub-benchmark under callgrind at two -benchtime counts
// (GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1) and divide the difference.
func BenchmarkToolsCall(b *testing.B) {
	record := `{"customer_id":"c-1","tenant_id":"acme","name":"Ada Lovelace","notes":"` + strings.Repeat("calls about the analytical engine; ", 26) + `"}`
	f := newFixture(b, fixtureOpts{policy: allowAll{}, mutate: func(c *config.Config) {
		c.RateLimit.Default = config.Rate{Requests: 1 << 40, Per: config.Duration(time.Hour)}
	}, wrapUpstream: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/customers/c-1" {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, record)
		})
	}})
	h := f.srv.Handler()
	body := modernCall("7", "crm_get_customer", `{"id":"c-1"}`)
	for _, mode := range []struct {
		name string
		off  bool
	}{{"mcp-go", true}, {"fast", false}} {
		b.Run(mode.name, func(b *testing.B) {
			f.srv.fastCallOff.Store(mode.off)
			defer f.srv.fastCallOff.Store(false)
			served := f.srv.fastServed.Load()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Authorization", "Bearer alice")
				for k, v := range modernHeaders("crm_get_customer") {
					req.Header.Set(k, v)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"structuredContent"`) {
					b.Fatalf("%d %s", rec.Code, rec.Body.String())
				}
			}
			if fast := f.srv.fastServed.Load() != served; fast == mode.off {
				b.Fatalf("fast path taken = %v in mode %s", fast, mode.name)
			}
		})
	}
}

// FuzzAppendJSONString: the fast path's string encoder writes what
// encoding/json writes.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "\n\r\t\x00\x1f\x7f", "<a>&amp;", "é€😀", "\u2028\u2029", "\xff\xfe bad", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, encoding/json %s", s, got, want)
		}
	})
}

// TestFastCallTakesClientCalls: the tools/call of the mcp-go client in its
// default (2026-07-28) era takes the fast path, and its answer reads as
// the same result as through mcp-go.
func TestFastCallTakesClientCalls(t *testing.T) {
	f := fastFixture(t)
	c := f.client(t, "alice")
	served := f.srv.fastServed.Load()
	fast := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"})
	if f.srv.fastServed.Load() == served {
		t.Fatal("the mcp-go client's tools/call did not take the fast path")
	}
	f.srv.fastCallOff.Store(true)
	defer f.srv.fastCallOff.Store(false)
	slow := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"})
	if !reflect.DeepEqual(fast.Content, slow.Content) || !reflect.DeepEqual(fast.StructuredContent, slow.StructuredContent) ||
		fast.IsError != slow.IsError || fast.ResultType != slow.ResultType {
		t.Errorf("the client read different results:\n fast: %+v\n mcp-go: %+v", fast, slow)
	}
}

// TestFastCallHandlerErrors: whatever the tool handler returns — a panic,
// an error, an error marked for exposure with its code, an unmarked typed
// one, a URL elicitation, no result at all — the fast path answers as
// mcp-go does. The pipeline returns none of these for an OpenAPI tool;
// the handler is swapped in mcp-go's own table, which both paths call.
func TestFastCallHandlerErrors(t *testing.T) {
	f := fastFixture(t)
	e := f.srv.prod
	tool, _, ok := e.catalog.Lookup("crm_get_customer")
	if !ok {
		t.Fatal("no crm_get_customer")
	}
	call := modernCall("9", "crm_get_customer", `{"id":"c-1"}`)
	for _, h := range []struct {
		name string
		fn   mcpserver.ToolHandlerFunc
	}{
		{"panic", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { panic("boom") }},
		{"plain error", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, errors.New("upstream exploded")
		}},
		{"exposed typed error", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, fmt.Errorf("wrapped: %w", mcpserver.NewHandlerError(rpcErr{code: mcp.INVALID_PARAMS, msg: "invalid params: nope"}))
		}},
		{"unexposed typed error", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, rpcErr{code: mcp.INVALID_PARAMS, msg: "invalid params: hidden"}
		}},
		{"URL elicitation", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, mcp.URLElicitationRequiredError{Elicitations: []mcp.ElicitationParams{{Mode: mcp.ElicitationModeURL, ElicitationID: "x", URL: "http://a/x", Message: "go"}}}
		}},
		{"no result", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return nil, nil }},
		{"image content", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewImageContent("aGk=", "image/png")}}, nil
		}},
		{"invalid structured content", func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent("x")}, StructuredContent: json.RawMessage(`{"a":`)}, nil
		}},
	} {
		e.mcp.AddTool(mcpTool(tool), h.fn)
		diffFastCall(t, f, []fastCase{{h.name, "alice", call, modernHeaders("crm_get_customer"), true, ""}})
	}
}
