package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
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
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/approvals"
	"github.com/agentharness/harness/internal/devissuer"
	"github.com/agentharness/harness/internal/npmtest"
	"github.com/agentharness/harness/internal/redistest"
)

// The approval tests run the example policy examples/policies/approvals
// (refunds over 100 need role:admin; deleting a ticket needs self) against
// a small upstream that counts the calls that reach it.

type approvalStack struct {
	iss *devissuer.Issuer
	gw  *gateway
	// replicas are every gateway (gw, at public_url, first).
	replicas []*gateway
	refunds  *atomic.Int64
	deletes  *atomic.Int64
}

func approvalUpstream(t *testing.T) (string, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	doc := `{"openapi":"3.1.0","info":{"title":"shop","version":"1"},"paths":{
 "/refunds":{"post":{"operationId":"issue_refund","tags":["refunds"],
   "requestBody":{"content":{"application/json":{"schema":{"type":"object","properties":{"order_id":{"type":"string"},"amount":{"type":"number"},"card_number":{"type":"string"}}}}}},
   "responses":{"200":{"description":"ok"}}}},
 "/tickets/{ticket_id}":{"delete":{"operationId":"delete_ticket","tags":["tickets"],
   "parameters":[{"name":"ticket_id","in":"path","required":true,"schema":{"type":"string"}}],"responses":{"200":{"description":"ok"}}}}}}`
	var refunds, deletes atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	})
	mux.HandleFunc("POST /refunds", func(w http.ResponseWriter, r *http.Request) {
		n := refunds.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"refund_id":"r-%d","status":"issued"}`, n)
	})
	mux.HandleFunc("DELETE /tickets/{id}", func(w http.ResponseWriter, r *http.Request) {
		deletes.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"deleted":%q}`, r.PathValue("id"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, &refunds, &deletes
}

// startApprovalStack runs the example policy with dataJSON replacing its
// data.json when set.
func startApprovalStack(t *testing.T, dataJSON, extraYAML string) *approvalStack {
	t.Helper()
	return startApprovalReplicas(t, 1, dataJSON, extraYAML)
}

// startApprovalReplicas starts n gateways with the first one's public_url
// (give them a shared Redis in extraYAML when n > 1).
func startApprovalReplicas(t *testing.T, n int, dataJSON, extraYAML string) *approvalStack {
	t.Helper()
	iss, err := devissuer.New(devissuer.Options{Users: []devissuer.User{
		{Subject: "alice", Name: "Alice Support", Email: "alice@acme.example", Roles: []string{"support"}},
		{Subject: "bob", Name: "Bob Admin", Email: "bob@acme.example", Roles: []string{"admin"}},
		{Subject: "carol", Name: "Carol Support", Email: "carol@acme.example", Roles: []string{"support"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	pdir := t.TempDir()
	for _, f := range []string{"policy.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", "policies", "approvals", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "data.json" && dataJSON != "" {
			b = []byte(dataJSON)
		}
		if err := os.WriteFile(filepath.Join(pdir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	up, refunds, deletes := approvalUpstream(t)
	cfg := fmt.Sprintf(`listen: {{LISTEN}}
public_url: PUBLIC
environment: prod
auth:
  issuers:
    - issuer: %s
      roles_claim: roles
upstreams:
  - name: shop
    base_url: %s
    openapi: %s/openapi.json
policy:
  dir: %q
audit:
  path: {{DIR}}/audit.log
oauth:
  login_issuer: %s
  client_id: %s
  client_secret: ${E2E_OAUTH_SECRET}
%s`, iss.URL(), up, up, pdir, iss.URL(), oauthLoginClient, extraYAML)
	s := &approvalStack{iss: iss, refunds: refunds, deletes: deletes}
	public := "http://{{LISTEN}}"
	for range n {
		gw := startGateway(t, strings.Replace(cfg, "PUBLIC", public, 1), "E2E_OAUTH_SECRET=s3cret-value")
		if s.gw == nil {
			s.gw, public = gw, gw.URL
		}
		s.replicas = append(s.replicas, gw)
	}
	if err := iss.AddClient(devissuer.Client{ID: oauthLoginClient, Secret: "s3cret-value", RedirectURIs: []string{s.gw.URL + "/oauth/callback"}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// agent connects as user's agent (azp) in era e; urlElicitation declares
// the elicitation.url capability.
func (s *approvalStack) agent(t *testing.T, user, agent string, roles []string, e era, urlElicitation bool) *client.Client {
	t.Helper()
	return s.agentAt(t, s.gw, user, agent, roles, e, urlElicitation)
}

// withURLElicitation declares the URL-mode elicitation capability.
var withURLElicitation = client.WithClientCapabilities(mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapability{URL: &struct{}{}}})

// agentAt is agent connected to replica gw.
func (s *approvalStack) agentAt(t *testing.T, gw *gateway, user, agent string, roles []string, e era, urlElicitation bool) *client.Client {
	t.Helper()
	tok := mint(t, s.iss, s.gw.URL, map[string]any{"sub": user, "roles": roles, "email": user + "@acme.example", "azp": agent})
	if !urlElicitation {
		return connect(t, gw.URL, tok, e)
	}
	return connectWith(t, gw.URL, tok, e, "harness-e2e-elicit", []client.ClientOption{withURLElicitation})
}

var approvalURLRe = regexp.MustCompile(`Approve at (http://[^ ]+/approvals/([A-Za-z0-9_-]+)), then repeat the call\.`)

// wantHeld checks a held call's tool error and returns the approval URL.
func wantHeld(t *testing.T, what string, res *mcp.CallToolResult, reason string) (link, id string) {
	t.Helper()
	text := resultText(res)
	m := approvalURLRe.FindStringSubmatch(text)
	if !res.IsError || m == nil || !strings.HasPrefix(text, "approval required: "+reason+". ") {
		t.Fatalf("%s: got %q (error %v), want a held call", what, text, res.IsError)
	}
	return m[1], m[2]
}

// signIn opens link in a fresh browser signed in as user (login_hint).
func (s *approvalStack) signIn(t *testing.T, link, user string) (*browser, *http.Response, string) {
	t.Helper()
	b := newBrowser(t)
	resp, page := b.follow(link+"?login_hint="+url.QueryEscape(user), s.gw.URL, s.iss.URL())
	return b, resp, page
}

func (s *approvalStack) decideApproval(t *testing.T, link, user, decision string) {
	t.Helper()
	b, resp, page := s.signIn(t, link, user)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s opens %s: %d\n%s", user, link, resp.StatusCode, page)
	}
	r, body := b.postForm(link, url.Values{"csrf": {match(t, csrfRe, page)}, "decision": {decision}})
	if r.StatusCode != http.StatusOK || !strings.Contains(body, `data-testid="approval-done"`) {
		t.Fatalf("%s %s: %d\n%s", user, decision, r.StatusCode, body)
	}
}

// TestApprovalToolErrorPath: a client without elicitation.url gets the
// tool error; only the exact call, once, runs after an admin approves.
func TestApprovalToolErrorPath(t *testing.T) {
	s := startApprovalStack(t, "", "")
	legacy := eras[1]
	a := s.agent(t, "alice", "copilot-a", []string{"support"}, legacy, false)
	const reason = "refunds over 100 EUR need an admin's approval"
	refund := map[string]any{"order_id": "o-1", "amount": 250, "card_number": "4111111111111111"}

	if res := callTool(t, a, "shop_issue_refund", map[string]any{"order_id": "o-0", "amount": 40}); res.IsError {
		t.Fatalf("a small refund is held: %s", resultText(res))
	}
	link, id := wantHeld(t, "large refund", callTool(t, a, "shop_issue_refund", refund), reason)
	// An identical call while pending points to the same request.
	if _, id2 := wantHeld(t, "identical pending call", callTool(t, a, "shop_issue_refund", refund), reason); id2 != id {
		t.Errorf("identical pending call made request %s, want %s", id2, id)
	}
	if n := s.refunds.Load(); n != 1 {
		t.Fatalf("upstream saw %d refunds, want 1 (the small one)", n)
	}

	// Not an approver: carol (support) and alice herself (self not listed).
	for _, user := range []string{"carol", "alice"} {
		_, resp, page := s.signIn(t, link, user)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s opens the approval page: %d, want 403\n%s", user, resp.StatusCode, page)
		}
	}
	// bob (admin) sees who, which agent, which tool, the masked
	// arguments and the reason.
	b, resp, page := s.signIn(t, link, "bob")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bob opens the approval page: %d\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{"alice@acme.example", "copilot-a", "shop_issue_refund", "250", html.EscapeString(reason), `data-testid="approve"`} {
		if !strings.Contains(page, want) {
			t.Errorf("approval page lacks %q", want)
		}
	}
	if strings.Contains(page, "4111111111111111") {
		t.Error("approval page shows the card number the policy masks")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("approval page CSP = %q", csp)
	}
	// CSRF: a forged token, and bob's token replayed from carol's
	// session: both refused.
	if r, body := b.postForm(link, url.Values{"csrf": {"forged"}, "decision": {"approve"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("forged CSRF token: %d\n%s", r.StatusCode, body)
	}
	cb, _, cpage := s.signIn(t, s.gw.URL+"/approvals", "carol")
	if r, _ := cb.postForm(link, url.Values{"csrf": {match(t, csrfRe, page)}, "decision": {"approve"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("bob's CSRF token replayed from carol's session: %d", r.StatusCode)
	}
	if strings.Contains(cpage, id) {
		t.Error("carol's inbox lists a request she may not decide")
	}
	// bob's inbox lists it.
	if _, inbox := b.follow(s.gw.URL + "/approvals"); !strings.Contains(inbox, "/approvals/"+id) {
		t.Errorf("bob's inbox does not list %s:\n%s", id, inbox)
	}
	if r, body := b.postForm(link, url.Values{"csrf": {match(t, csrfRe, page)}, "decision": {"approve"}}); r.StatusCode != http.StatusOK || !strings.Contains(body, "Approved") {
		t.Fatalf("bob approves: %d\n%s", r.StatusCode, body)
	}

	// One argument changed: held again. Another agent of alice: held.
	changed := map[string]any{"order_id": "o-1", "amount": 251, "card_number": "4111111111111111"}
	if _, idc := wantHeld(t, "changed amount", callTool(t, a, "shop_issue_refund", changed), reason); idc == id {
		t.Error("a call with another amount ran on the approval")
	}
	other := s.agent(t, "alice", "copilot-b", []string{"support"}, legacy, false)
	if _, ido := wantHeld(t, "another agent", callTool(t, other, "shop_issue_refund", refund), reason); ido == id {
		t.Error("another agent's call ran on the approval")
	}
	if n := s.refunds.Load(); n != 1 {
		t.Fatalf("upstream saw %d refunds before the approved retry, want 1", n)
	}
	// The identical retry runs, once; the same keys in another order count
	// as the same call.
	reordered := map[string]any{"card_number": "4111111111111111", "amount": 250.0, "order_id": "o-1"}
	if res := callTool(t, a, "shop_issue_refund", reordered); res.IsError {
		t.Fatalf("approved retry: %s", resultText(res))
	}
	if n := s.refunds.Load(); n != 2 {
		t.Fatalf("upstream saw %d refunds, want 2", n)
	}
	link2, id2 := wantHeld(t, "second retry", callTool(t, a, "shop_issue_refund", refund), reason)
	if id2 == id || s.refunds.Load() != 2 {
		t.Fatalf("the second retry ran on the used approval")
	}

	// Denied: the repeated call is refused with who declined.
	s.decideApproval(t, link2, "bob", "deny")
	if res := callTool(t, a, "shop_issue_refund", refund); !res.IsError || !strings.HasPrefix(resultText(res), "denied: bob@acme.example declined") {
		t.Fatalf("denied approval: %q", resultText(res))
	}
	if s.refunds.Load() != 2 {
		t.Fatal("a denied call reached the upstream")
	}

	// The audit trail: held calls, the approved call with its approval,
	// the denial with who denied.
	var held, approved, deniedRecs int
	f, err := os.Open(s.gw.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Decision, Tool, Reason string
			Approval               *struct{ ID, By string }
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		switch {
		case rec.Decision == "approval_required" && rec.Tool == "shop_issue_refund":
			held++
		case rec.Decision == "allow" && rec.Approval != nil && rec.Approval.ID == id && rec.Approval.By == "bob@acme.example":
			approved++
		case rec.Decision == "deny" && rec.Approval != nil && rec.Approval.ID == id2 && rec.Approval.By == "bob@acme.example":
			deniedRecs++
		}
	}
	if held != 5 || approved != 1 || deniedRecs != 1 {
		t.Errorf("audit: %d approval_required (want 5), %d approved calls (want 1), %d denials (want 1)", held, approved, deniedRecs)
	}
}

// TestApprovalURLElicitation: a 2025-11-25 client that declared
// elicitation.url gets -32042 with the approval URL; deletes need the
// human's own approval (self), and an expired approval holds the call again.
func TestApprovalURLElicitation(t *testing.T) {
	const hookSecret = "e2e-webhook-secret-0123"
	hooked := make(chan map[string]any, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(approvals.SignatureHeader) != approvals.Sign([]byte(hookSecret), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		hooked <- m
	}))
	t.Cleanup(hook.Close)
	s := startApprovalStack(t, `{
  "grants": {"support": {"read": ["*"], "write": ["tickets", "refunds"]}},
  "approvals": {
    "delete_ticket": {"roles": ["support"], "approvers": ["self"], "reason": "deleting a ticket needs your own confirmation", "ttl": "10m"},
    "issue_refund": {"roles": ["support"], "approvers": ["self"], "reason": "refunds need your own confirmation", "ttl": "5s"}}
}`, fmt.Sprintf("approvals:\n  webhook_url: %s\n  webhook_secret: %s\n", hook.URL, hookSecret))
	c := s.agent(t, "alice", "copilot-a", []string{"support"}, eras[1], true)
	heldCall := func(what, tool string, args map[string]any, reason string) (string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req := mcp.CallToolRequest{}
		req.Params.Name = tool
		req.Params.Arguments = args
		_, err := c.CallTool(ctx, req)
		var ue mcp.URLElicitationRequiredError
		if !errors.As(err, &ue) || len(ue.Elicitations) != 1 {
			t.Fatalf("%s: got %v, want -32042 URLElicitationRequired", what, err)
		}
		el := ue.Elicitations[0]
		if el.Mode != "url" || el.ElicitationID == "" || el.URL != s.gw.URL+"/approvals/"+el.ElicitationID || !strings.Contains(el.Message, reason) {
			t.Fatalf("%s: elicitation %+v", what, el)
		}
		return el.URL, el.ElicitationID
	}
	held := func(what string) (string, string) {
		t.Helper()
		return heldCall(what, "shop_delete_ticket", map[string]any{"ticket_id": "t-7"}, "deleting a ticket needs your own confirmation")
	}
	link, id := held("delete")
	// The webhook receiver got the new request, signed.
	if m := <-hooked; m["id"] != id || m["url"] != link || !strings.Contains(fmt.Sprint(m["text"]), link) {
		t.Fatalf("webhook body %v", m)
	}
	// self: alice approves her own agent's call.
	s.decideApproval(t, link, "alice", "approve")
	if res := callTool(t, c, "shop_delete_ticket", map[string]any{"ticket_id": "t-7"}); res.IsError || s.deletes.Load() != 1 {
		t.Fatalf("approved delete: %q, %d deletes", resultText(res), s.deletes.Load())
	}
	if _, id2 := held("second delete"); id2 == id {
		t.Fatal("the second delete reused the consumed approval")
	}
	if s.deletes.Load() != 1 {
		t.Fatalf("upstream saw %d deletes, want 1", s.deletes.Load())
	}
	// Expired: a refund (ttl 5s) approved, but repeated after its ttl.
	refund := map[string]any{"order_id": "o-3", "amount": 20}
	const refundReason = "refunds need your own confirmation"
	created := time.Now()
	link3, id3 := heldCall("refund", "shop_issue_refund", refund, refundReason)
	s.decideApproval(t, link3, "alice", "approve")
	time.Sleep(time.Until(created.Add(5500 * time.Millisecond))) // past the 5s ttl
	if _, id4 := heldCall("refund after expiry", "shop_issue_refund", refund, refundReason); id4 == id3 {
		t.Fatal("an expired approval was found again")
	}
	if s.refunds.Load() != 0 {
		t.Fatalf("upstream saw %d refunds, want 0", s.refunds.Load())
	}
}

// TestApprovalReplicas: two replicas on Redis; the call is held on B, the
// approval page is served by A (public_url), the retry on B runs once.
func TestApprovalReplicas(t *testing.T) {
	s := startApprovalReplicas(t, 2, "", fmt.Sprintf("ratelimit:\n  redis_url: %q\n", redistest.Start(t)))
	b := s.replicas[1]
	const reason = "refunds over 100 EUR need an admin's approval"
	refund := map[string]any{"order_id": "o-9", "amount": 500}
	onB := s.agentAt(t, b, "alice", "copilot-a", []string{"support"}, eras[0], false)
	link, id := wantHeld(t, "held on B", callTool(t, onB, "shop_issue_refund", refund), reason)
	if !strings.HasPrefix(link, s.gw.URL+"/approvals/") {
		t.Fatalf("approval link %s is not at public_url %s", link, s.gw.URL)
	}
	s.decideApproval(t, link, "bob", "approve") // served by A
	if res := callTool(t, onB, "shop_issue_refund", refund); res.IsError || s.refunds.Load() != 1 {
		t.Fatalf("approved retry on B: %q, %d refunds", resultText(res), s.refunds.Load())
	}
	// Consumed for both replicas: the next identical call on A is held.
	onA := s.agent(t, "alice", "copilot-a", []string{"support"}, eras[0], false)
	if _, id2 := wantHeld(t, "again on A", callTool(t, onA, "shop_issue_refund", refund), reason); id2 == id || s.refunds.Load() != 1 {
		t.Fatal("the consumed approval ran the call again on the other replica")
	}
}

// tsApprovalAnswer is one answer the ts-approval.mjs driver prints.
type tsApprovalAnswer struct {
	IsError, Thrown bool
	Code            int
	Text            string
	Elicitations    []struct {
		Mode, ElicitationID, URL, Message string
	}
}

// TestApprovalTSSDK: the official TypeScript SDK client, once declaring
// elicitation.url (it gets -32042 with the URL elicitation) and once
// declaring nothing (it gets the tool error with the URL); after bob
// approves over HTTP the first gets notifications/elicitation/complete on
// its session's GET stream, and the identical repeat runs once.
func TestApprovalTSSDK(t *testing.T) {
	s := startApprovalStack(t, "", "")
	for i, mode := range []string{"url", "plain"} {
		t.Run(mode, func(t *testing.T) {
			s.tsApproval(t, s.gw, mode, fmt.Sprintf(`{"order_id":"o-ts-%d","amount":300}`, i))
		})
	}
}

// TestApprovalCompleteAcrossReplicas: the TypeScript SDK session lives on
// replica B, bob approves on A (public_url); B learns it from the shared
// store and sends notifications/elicitation/complete on the session's GET
// stream.
func TestApprovalCompleteAcrossReplicas(t *testing.T) {
	s := startApprovalReplicas(t, 2, "", fmt.Sprintf("ratelimit:\n  redis_url: %q\n", redistest.Start(t)))
	s.tsApproval(t, s.replicas[1], "url", `{"order_id":"o-ts-r","amount":300}`)
}

// tsApproval runs ts-approval.mjs against gw in mode (url: the client
// declares elicitation.url; plain: nothing) for a refund over the limit
// with args: held, approved by bob over HTTP, then (url) the
// elicitation/complete notification, and the retry runs once.
func (s *approvalStack) tsApproval(t *testing.T, gw *gateway, mode, args string) {
	t.Helper()
	const reason = "refunds over 100 EUR need an admin's approval"
	before := s.refunds.Load()
	tok := mint(t, s.iss, s.gw.URL, map[string]any{"sub": "alice", "roles": []string{"support"}, "email": "alice@acme.example", "azp": "copilot-ts"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, npmtest.Node(t), interopScript(t, "ts-approval.mjs"), gw.URL+"/mcp", tok, mode, "shop_issue_refund", args)
	cmd.Env = npmtest.Env(t)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	next := func(out any) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("ts-approval.mjs ended early: %v\nstderr:\n%s", lines.Err(), stderr.String())
		}
		if err := json.Unmarshal(lines.Bytes(), out); err != nil {
			t.Fatalf("ts-approval.mjs printed %q: %v", lines.Text(), err)
		}
	}
	var first struct {
		ProtocolVersion string
		First           tsApprovalAnswer
	}
	next(&first)
	var link, elicitationID string
	switch a := first.First; mode {
	case "url":
		if !a.Thrown || a.Code != -32042 || len(a.Elicitations) != 1 {
			t.Fatalf("declared elicitation.url (%s): got %+v, want -32042", first.ProtocolVersion, a)
		}
		el := a.Elicitations[0]
		if el.Mode != "url" || el.ElicitationID == "" || el.URL != s.gw.URL+"/approvals/"+el.ElicitationID || !strings.Contains(el.Message, reason) {
			t.Fatalf("elicitation %+v", el)
		}
		link, elicitationID = el.URL, el.ElicitationID
	default:
		m := approvalURLRe.FindStringSubmatch(a.Text)
		if a.Thrown || !a.IsError || m == nil || !strings.HasPrefix(a.Text, "approval required: "+reason+". ") {
			t.Fatalf("no elicitation.url (%s): got %+v, want the tool error", first.ProtocolVersion, a)
		}
		link = m[1]
	}
	if n := s.refunds.Load(); n != before {
		t.Fatalf("the held call reached the upstream (%d refunds)", n)
	}
	s.decideApproval(t, link, "bob", "approve")
	if _, err := io.WriteString(stdin, "approved\n"); err != nil {
		t.Fatal(err)
	}
	var retry struct {
		Completed []string
		Retry     tsApprovalAnswer
	}
	next(&retry)
	if mode == "url" && !slices.Equal(retry.Completed, []string{elicitationID}) {
		t.Errorf("notifications/elicitation/complete: got %q, want [%s]", retry.Completed, elicitationID)
	}
	if a := retry.Retry; a.Thrown || a.IsError || !strings.Contains(a.Text, "issued") {
		t.Fatalf("approved retry: %+v", a)
	}
	if n := s.refunds.Load(); n != before+1 {
		t.Fatalf("upstream saw %d refunds, want %d", n, before+1)
	}
}

// elicitFunc is a client.ElicitationHandler.
type elicitFunc func(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error)

func (f elicitFunc) Elicit(ctx context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return f(ctx, r)
}

// TestApprovalInputRequired: a 2026-07-28 request whose per-request client
// capabilities include elicitation.url gets an input_required result with
// one URL elicitation and a requestState; mcp-go's client shows it (here:
// bob approves over HTTP) and retries with inputResponses and the state,
// and the call runs once. A requestState replayed on another call is
// refused.
func TestApprovalInputRequired(t *testing.T) {
	s := startApprovalStack(t, "", "")
	const reason = "refunds over 100 EUR need an admin's approval"
	tok := mint(t, s.iss, s.gw.URL, map[string]any{"sub": "alice", "roles": []string{"support"}, "email": "alice@acme.example", "azp": "copilot-mrtr"})
	var asked []mcp.ElicitationParams
	handler := elicitFunc(func(ctx context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
		asked = append(asked, r.Params)
		s.decideApproval(t, r.Params.URL, "bob", "approve")
		return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept}}, nil
	})
	open := func(opts ...client.ClientOption) *client.Client {
		return connectWith(t, s.gw.URL, tok, era{}, "harness-e2e-mrtr", append([]client.ClientOption{withURLElicitation}, opts...))
	}
	c := open(client.WithElicitationHandler(handler))
	refund := map[string]any{"order_id": "o-mrtr", "amount": 400}
	if res := callTool(t, c, "shop_issue_refund", refund); res.IsError || !strings.Contains(resultText(res), "issued") {
		t.Fatalf("call after approval: %q", resultText(res))
	}
	if len(asked) != 1 || asked[0].Mode != mcp.ElicitationModeURL || asked[0].URL != s.gw.URL+"/approvals/"+asked[0].ElicitationID || !strings.Contains(asked[0].Message, reason) {
		t.Fatalf("elicitations shown: %+v", asked)
	}
	if n := s.refunds.Load(); n != 1 {
		t.Fatalf("upstream saw %d refunds, want 1", n)
	}

	// Manual round trips: the requestState of one call, echoed on a call
	// with another amount, is refused.
	m := open(client.WithManualInputRoundTrips())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = "shop_issue_refund"
	req.Params.Arguments = map[string]any{"order_id": "o-mrtr-2", "amount": 500}
	res, err := m.CallTool(ctx, req)
	if err != nil || !res.NeedsInput() || res.RequestState == "" || len(res.InputRequests) != 1 {
		t.Fatalf("manual call: %+v, %v; want input_required", res, err)
	}
	req.Params.Arguments = map[string]any{"order_id": "o-mrtr-2", "amount": 5000}
	req.Params.RequestState = res.RequestState
	res2, err := m.CallTool(ctx, req)
	if err != nil || !res2.IsError || !strings.Contains(resultText(res2), "requestState belongs to another call") {
		t.Fatalf("requestState replayed on another call: %+v, %v", res2, err)
	}
	if n := s.refunds.Load(); n != 1 {
		t.Fatalf("upstream saw %d refunds, want 1", n)
	}
}
