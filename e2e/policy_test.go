package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/devissuer"
)

// The policy tests run a policy written as an outsider would: its own
// package and query, deciding from tags, a custom claim and an argument.

// gateRego is the policy "acme.gate": support staff (claim department ==
// "support") may list and call tools tagged with one of allowedTags;
// customer c-2 is under legal hold; tools tagged "unlisted" are never
// listed (but the call decision alone would allow them).
func gateRego(allowedTags ...string) string {
	quoted := make([]string, len(allowedTags))
	for i, t := range allowedTags {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	return `package acme.gate

allowed_tags := {` + strings.Join(quoted, ", ") + `}

tag_ok if {
	some t in input.tool.tags
	t in allowed_tags
}

support if input.subject.claims.department == "support"

legal_hold if {
	input.tool.name == "crm_get_customer"
	input.arguments.customer_id == "c-2"
}

unlisted if {
	input.action == "list"
	"unlisted" in input.tool.tags
}

reason := "acme-gate: customer c-2 is under legal hold" if legal_hold
else := sprintf("acme-gate: %s is not in support", [input.subject.sub]) if not support
else := sprintf("acme-gate: %s is not one of our tools", [input.tool.name]) if not tag_ok
else := "acme-gate: not listed" if unlisted
else := "acme-gate: support may use this tool"

default allow := false

allow if {
	support
	tag_ok
	not legal_hold
	not unlisted
}

decision := {"allow": allow, "reason": reason}
`
}

// gateTestRego holds Rego tests of gateRego("customers"); failing adds one
// that fails.
func gateTestRego(failing bool) string {
	s := `package acme.gate_test

import data.acme.gate

sam := {"sub": "sam", "claims": {"department": "support"}}

get_customer := {"name": "crm_get_customer", "tags": ["customers"]}

test_support_reads_customers if {
	gate.decision.allow with input as {"action": "call", "subject": sam, "tool": get_customer, "arguments": {"customer_id": "c-1"}}
}

test_legal_hold_denied if {
	d := gate.decision with input as {"action": "call", "subject": sam, "tool": get_customer, "arguments": {"customer_id": "c-2"}}
	d.allow == false
	contains(d.reason, "legal hold")
}
`
	if failing {
		s += `
# Deliberately wrong: sales staff are not allowed.
test_sales_reads_customers if {
	gate.decision.allow with input as {"action": "call", "subject": {"sub": "sid", "claims": {"department": "sales"}}, "tool": get_customer, "arguments": {}}
}
`
	}
	return s
}

// polCRM is a Go upstream named crm counting the calls it receives per
// operation (the OpenAPI document is not counted).
type polCRM struct {
	URL  string
	mu   sync.Mutex
	hits map[string]int
}

func (u *polCRM) hit(op string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hits[op]++
}

// count returns the calls op received.
func (u *polCRM) count(op string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[op]
}

// snapshot returns a copy of every counter.
func (u *polCRM) snapshot() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := make(map[string]int, len(u.hits))
	for k, v := range u.hits {
		m[k] = v
	}
	return m
}

func polStartCRM(t testing.TB) *polCRM {
	t.Helper()
	u := &polCRM{hits: map[string]int{}}
	doc := `{"openapi":"3.1.0","info":{"title":"crm","version":"1"},"paths":{
 "/customers":{"get":{"operationId":"list_customers","tags":["customers"],"responses":{"200":{"description":"ok"}}}},
 "/customers/{customer_id}":{"get":{"operationId":"get_customer","tags":["customers"],
   "parameters":[{"name":"customer_id","in":"path","required":true,"schema":{"type":"string"}}],
   "responses":{"200":{"description":"ok"}}}},
 "/exports/customers":{"get":{"operationId":"export_customers","tags":["customers","unlisted"],"responses":{"200":{"description":"ok"}}}},
 "/tickets":{
   "get":{"operationId":"list_tickets","tags":["tickets"],"responses":{"200":{"description":"ok"}}},
   "post":{"operationId":"create_ticket","tags":["tickets"],
     "requestBody":{"required":true,"content":{"application/json":{"schema":{"type":"object","properties":{"subject":{"type":"string"}},"required":["subject"]}}}},
     "responses":{"200":{"description":"ok"}}}},
 "/admin/purge":{"post":{"operationId":"purge","tags":["admin"],"responses":{"200":{"description":"ok"}}}}}}`
	reply := func(op string, body any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			u.hit(op)
			w.Header().Set("Content-Type", "application/json")
			v := body
			if op == "get_customer" {
				v = map[string]any{"customer_id": r.PathValue("customer_id"), "name": "Customer " + r.PathValue("customer_id")}
			}
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	})
	mux.HandleFunc("GET /customers", reply("list_customers", []map[string]any{{"customer_id": "c-1"}}))
	mux.HandleFunc("GET /customers/{customer_id}", reply("get_customer", nil))
	mux.HandleFunc("GET /exports/customers", reply("export_customers", map[string]any{"export": "all-customers"}))
	mux.HandleFunc("GET /tickets", reply("list_tickets", []map[string]any{{"ticket_id": "t-1", "subject": "hello"}}))
	mux.HandleFunc("POST /tickets", reply("create_ticket", map[string]any{"ticket_id": "t-2"}))
	mux.HandleFunc("POST /admin/purge", reply("purge", map[string]any{"purged": true}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// policyStack is a gateway whose policy lives in PolicyDir.
type policyStack struct {
	iss       *devissuer.Issuer
	up        *polCRM
	gw        *gateway
	PolicyDir string
	sam, sid  string // support and sales tokens
}

// startPolicyStack writes files into a fresh policy dir and runs a gateway
// with policy.dir pointing at it and policy.query = query.
func startPolicyStack(t *testing.T, query string, files map[string]string) *policyStack {
	t.Helper()
	ps := &policyStack{iss: startIssuer(t), up: polStartCRM(t), PolicyDir: t.TempDir()}
	for name, content := range files {
		writePolicyFile(t, filepath.Join(ps.PolicyDir, name), content)
	}
	ps.gw = startGateway(t, fmt.Sprintf(`listen: "{{LISTEN}}"
public_url: "http://{{LISTEN}}"
environment: test
auth:
  issuers:
    - issuer: %q
policy:
  dir: %q
  query: %s
ratelimit:
  default: {requests: 100000, per: 1m}
upstreams:
  - name: crm
    base_url: %q
    openapi: %q
audit:
  path: "{{DIR}}/audit.log"
`, ps.iss.URL(), ps.PolicyDir, query, ps.up.URL, ps.up.URL+"/openapi.json"))
	ps.sam = mint(t, ps.iss, ps.gw.URL, map[string]any{"sub": "sam", "department": "support", "email": "sam@acme.example"})
	ps.sid = mint(t, ps.iss, ps.gw.URL, map[string]any{"sub": "sid", "department": "sales", "email": "sid@acme.example"})
	return ps
}

// writePolicyFile replaces path atomically (a temporary dotfile, which the
// policy loader skips, renamed over it): a reload never sees half a file.
func writePolicyFile(t testing.TB, path, content string) {
	t.Helper()
	if err := polWriteAtomic(path, content); err != nil {
		t.Fatal(err)
	}
}

func polWriteAtomic(path, content string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func polSortedNames(t testing.TB, c *client.Client) []string {
	t.Helper()
	n := listNames(t, c)
	sort.Strings(n)
	return n
}

// polWantDenied checks res is a tool error starting with "denied:" and
// containing reason.
func polWantDenied(t testing.TB, what string, res *mcp.CallToolResult, reason string) {
	t.Helper()
	txt := resultText(res)
	if !res.IsError || !strings.HasPrefix(txt, "denied:") || !strings.Contains(txt, reason) {
		t.Errorf("%s: want a tool error \"denied: …%s…\", got isError=%v %q", what, reason, res.IsError, txt)
	}
}

func polWantAllowed(t testing.TB, what string, res *mcp.CallToolResult, contains string) {
	t.Helper()
	txt := resultText(res)
	if res.IsError || !strings.Contains(txt, contains) {
		t.Errorf("%s: want success containing %q, got isError=%v %q", what, contains, res.IsError, txt)
	}
}

// polReadyz returns the status and body of /readyz.
func polReadyz(t testing.TB, gwURL string) (int, string) {
	t.Helper()
	resp, err := getReadyz(gwURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body)
}

// polPollUntil calls cond every 100 ms until it is true or d passes.
func polPollUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var polCustomerTools = []string{"crm_get_customer", "crm_list_customers"}

func TestPolicyCustomRegoListAndCall(t *testing.T) {
	ps := startPolicyStack(t, "data.acme.gate.decision", map[string]string{"gate.rego": gateRego("customers")})
	for _, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			before := ps.up.snapshot()
			sam := connect(t, ps.gw.URL, ps.sam, e)
			if got := polSortedNames(t, sam); !slices.Equal(got, polCustomerTools) {
				t.Errorf("support lists %v, want exactly %v", got, polCustomerTools)
			}
			polWantAllowed(t, "support reads c-1", callTool(t, sam, "crm_get_customer", map[string]any{"customer_id": "c-1"}), `"customer_id":"c-1"`)
			polWantAllowed(t, "support lists customers", callTool(t, sam, "crm_list_customers", nil), "c-1")
			polWantDenied(t, "argument rule (c-2)", callTool(t, sam, "crm_get_customer", map[string]any{"customer_id": "c-2"}), "acme-gate: customer c-2 is under legal hold")
			polWantDenied(t, "tickets tool", callTool(t, sam, "crm_list_tickets", nil), "acme-gate: crm_list_tickets is not one of our tools")
			polWantDenied(t, "ticket write", callTool(t, sam, "crm_create_ticket", map[string]any{"subject": "x"}), "acme-gate: crm_create_ticket is not one of our tools")
			polWantDenied(t, "admin tool", callTool(t, sam, "crm_purge", nil), "is not one of our tools")
			// Allowed by the call decision but not listed: still refused.
			polWantDenied(t, "unlisted tool", callTool(t, sam, "crm_export_customers", nil), "")

			sid := connect(t, ps.gw.URL, ps.sid, e)
			if got := listNames(t, sid); len(got) != 0 {
				t.Errorf("sales lists %v, want nothing", got)
			}
			polWantDenied(t, "sales reads c-1", callTool(t, sid, "crm_get_customer", map[string]any{"customer_id": "c-1"}), "acme-gate: sid is not in support")

			after := ps.up.snapshot()
			if d := after["get_customer"] - before["get_customer"]; d != 1 {
				t.Errorf("get_customer reached the upstream %d times, want 1 (only c-1 by support)", d)
			}
			if d := after["list_customers"] - before["list_customers"]; d != 1 {
				t.Errorf("list_customers reached the upstream %d times, want 1", d)
			}
			for _, op := range []string{"list_tickets", "create_ticket", "purge", "export_customers"} {
				if after[op] != 0 {
					t.Errorf("denied operation %s reached the upstream %d times", op, after[op])
				}
			}
		})
	}

	// Denied calls are audited with the policy's reason.
	audit, err := os.ReadFile(ps.gw.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	var denies, legalHold int
	sc := bufio.NewScanner(strings.NewReader(string(audit)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct{ Decision, Reason, Tool, Subject string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, sc.Text())
		}
		if rec.Decision == "deny" {
			denies++
			if rec.Tool == "crm_get_customer" && rec.Subject == "sam" && strings.Contains(rec.Reason, "legal hold") {
				legalHold++
			}
		}
	}
	if denies != 2*6 || legalHold != 2 {
		t.Errorf("audit: %d deny records (want 12), %d legal-hold denials for sam (want 2)", denies, legalHold)
	}
}

func TestPolicyHotReload(t *testing.T) {
	file := "gate.rego"
	ps := startPolicyStack(t, "data.acme.gate.decision", map[string]string{file: gateRego("customers")})
	path := filepath.Join(ps.PolicyDir, file)
	modern := connect(t, ps.gw.URL, ps.sam, eras[0])
	legacy := connect(t, ps.gw.URL, ps.sam, eras[1]) // a session opened before the reloads
	sid := connect(t, ps.gw.URL, ps.sid, eras[0])
	pid := ps.gw.cmd.Process.Pid

	if got := polSortedNames(t, modern); !slices.Equal(got, polCustomerTools) {
		t.Fatalf("before reload: %v", got)
	}
	polWantDenied(t, "before reload: tickets", callTool(t, modern, "crm_list_tickets", nil), "is not one of our tools")

	// 1. Edit in place: tickets are allowed too.
	withTickets := []string{"crm_create_ticket", "crm_get_customer", "crm_list_customers", "crm_list_tickets"}
	writePolicyFile(t, path, gateRego("customers", "tickets"))
	polPollUntil(t, 15*time.Second, "the edited policy lists tickets", func() bool {
		return slices.Equal(polSortedNames(t, modern), withTickets)
	})
	if got := polSortedNames(t, legacy); !slices.Equal(got, withTickets) {
		t.Errorf("after reload, an existing legacy session lists %v, want %v", got, withTickets)
	}
	ticketsBefore := ps.up.count("list_tickets")
	polWantAllowed(t, "after reload: tickets (modern)", callTool(t, modern, "crm_list_tickets", nil), "t-1")
	polWantAllowed(t, "after reload: tickets (legacy)", callTool(t, legacy, "crm_list_tickets", nil), "t-1")
	if d := ps.up.count("list_tickets") - ticketsBefore; d != 2 {
		t.Errorf("list_tickets reached the upstream %d times, want 2", d)
	}
	polWantDenied(t, "after reload: legal hold still applies", callTool(t, modern, "crm_get_customer", map[string]any{"customer_id": "c-2"}), "legal hold")
	if code, body := polReadyz(t, ps.gw.URL); code != http.StatusOK {
		t.Errorf("/readyz after a good reload: %d %s", code, body)
	}

	// 2. A broken policy: the last good one keeps deciding, /readyz says why.
	writePolicyFile(t, path, "package acme.gate\n\ndecision := {\"allow\": true,\n")
	var body string
	polPollUntil(t, 15*time.Second, "/readyz reports the broken policy", func() bool {
		var code int
		code, body = polReadyz(t, ps.gw.URL)
		return code == http.StatusServiceUnavailable
	})
	var rz struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &rz); err != nil {
		t.Fatalf("/readyz body: %v: %s", err, body)
	}
	if rz.Ready || rz.Checks["policy"] == "" || rz.Checks["policy"] == "ok" {
		t.Errorf("/readyz does not name the policy: %s", body)
	}
	for name, v := range rz.Checks {
		if name != "policy" && v != "ok" {
			t.Errorf("/readyz: %s is not ok: %s", name, v)
		}
	}
	// The engine marks itself stale just before it logs: poll for the line.
	polPollUntil(t, 15*time.Second, "a log line of the failed reload naming "+file, func() bool {
		for _, line := range strings.Split(ps.gw.logs.String(), "\n") {
			if strings.Contains(line, "reload failed") && strings.Contains(line, file) {
				return true
			}
		}
		return false
	})
	if got := polSortedNames(t, modern); !slices.Equal(got, withTickets) {
		t.Errorf("with a broken policy on disk, support lists %v, want the last good policy's %v", got, withTickets)
	}
	polWantAllowed(t, "broken on disk: tickets still allowed", callTool(t, modern, "crm_list_tickets", nil), "t-1")
	polWantAllowed(t, "broken on disk: c-1 still allowed", callTool(t, legacy, "crm_get_customer", map[string]any{"customer_id": "c-1"}), `"customer_id":"c-1"`)
	polWantDenied(t, "broken on disk: legal hold still applies", callTool(t, modern, "crm_get_customer", map[string]any{"customer_id": "c-2"}), "legal hold")
	polWantDenied(t, "broken on disk: sales still denied", callTool(t, sid, "crm_get_customer", map[string]any{"customer_id": "c-1"}), "sid is not in support")

	// 3. Fixed again (back to customers only): ready, and the change applies.
	writePolicyFile(t, path, gateRego("customers"))
	polPollUntil(t, 15*time.Second, "/readyz 200 after the fix", func() bool {
		code, _ := polReadyz(t, ps.gw.URL)
		return code == http.StatusOK
	})
	polPollUntil(t, 15*time.Second, "the fixed policy hides tickets", func() bool {
		return slices.Equal(polSortedNames(t, modern), polCustomerTools)
	})
	ticketsBefore = ps.up.count("list_tickets")
	polWantDenied(t, "after the fix: tickets", callTool(t, legacy, "crm_list_tickets", nil), "is not one of our tools")
	if ps.up.count("list_tickets") != ticketsBefore {
		t.Error("a denied call reached the upstream after the fix")
	}
	if ps.gw.cmd.Process.Pid != pid {
		t.Error("the gateway was restarted")
	}
	select {
	case <-ps.gw.done:
		t.Fatalf("the gateway exited during the reloads:\n%s", ps.gw.logs.String())
	default:
	}
}

// TestPolicySIGHUP reloads by signal. The file watcher reloads only a
// change that stays put for a polling interval (about a second), so a
// goroutine keeps rewriting the policy (same rules, a changing comment)
// every 100 ms: the watcher never settles and the change below can only
// take effect through SIGHUP.
func TestPolicySIGHUP(t *testing.T) {
	file := "gate.rego"
	ps := startPolicyStack(t, "data.acme.gate.decision", map[string]string{file: gateRego("customers")})
	path := filepath.Join(ps.PolicyDir, file)
	c := connect(t, ps.gw.URL, ps.sam, eras[1])
	if got := polSortedNames(t, c); !slices.Equal(got, polCustomerTools) {
		t.Fatalf("before: %v", got)
	}

	var content atomic.Pointer[string]
	var writes atomic.Int64
	v1 := gateRego("customers")
	content.Store(&v1)
	stop := make(chan struct{})
	churnDone := make(chan error, 1)
	go func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				churnDone <- nil
				return
			default:
			}
			if err := polWriteAtomic(path, *content.Load()+fmt.Sprintf("\n# churn %d\n", n)); err != nil {
				churnDone <- err
				return
			}
			writes.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	stopChurn := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		if err := <-churnDone; err != nil {
			t.Errorf("rewriting the policy: %v", err)
		}
	}
	t.Cleanup(stopChurn)

	v2 := gateRego("customers", "tickets")
	content.Store(&v2)
	w := writes.Load()
	polPollUntil(t, 15*time.Second, "the new policy is on disk", func() bool { return writes.Load() >= w+2 })
	if err := ps.gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	withTickets := []string{"crm_create_ticket", "crm_get_customer", "crm_list_customers", "crm_list_tickets"}
	polPollUntil(t, 15*time.Second, "SIGHUP reloads the policy", func() bool {
		return slices.Equal(polSortedNames(t, c), withTickets)
	})
	before := ps.up.count("list_tickets")
	polWantAllowed(t, "after SIGHUP: tickets", callTool(t, c, "crm_list_tickets", nil), "t-1")
	if ps.up.count("list_tickets") != before+1 {
		t.Error("the allowed call did not reach the upstream")
	}
	stopChurn()
	if logs := ps.gw.logs.String(); !strings.Contains(logs, "SIGHUP") {
		t.Errorf("the gateway did not log the SIGHUP:\n%s", logs)
	}
	if code, body := polReadyz(t, ps.gw.URL); code != http.StatusOK {
		t.Errorf("/readyz after SIGHUP: %d %s", code, body)
	}
	select {
	case <-ps.gw.done:
		t.Fatal("the gateway exited on SIGHUP")
	default:
	}
}

func TestPolicyFailClosed(t *testing.T) {
	cases := map[string]string{
		"allow is not a boolean": `package acme.broken

decision := {"allow": "yes", "reason": "looks fine to me"}
`,
		"decision is not an object": `package acme.broken

decision := ["allow", true]
`,
		"decision undefined": `package acme.broken

decision := {"allow": true, "reason": "looks fine to me"} if input.subject.claims.department == "nobody"
`,
	}
	for name, rego := range cases {
		t.Run(name, func(t *testing.T) {
			ps := startPolicyStack(t, "data.acme.broken.decision", map[string]string{"broken.rego": rego})
			for _, e := range eras {
				c := connect(t, ps.gw.URL, ps.sam, e)
				if got := listNames(t, c); len(got) != 0 {
					t.Errorf("%s: a failing policy lists %v", e.name, got)
				}
				for _, tool := range []string{"crm_get_customer", "crm_list_tickets", "crm_purge"} {
					res := callTool(t, c, tool, map[string]any{"customer_id": "c-1"})
					polWantDenied(t, e.name+" "+tool, res, "")
					if strings.Contains(resultText(res), "looks fine") {
						t.Errorf("%s: the denial carries the malformed decision's reason: %s", tool, resultText(res))
					}
				}
			}
			if got := ps.up.snapshot(); len(got) != 0 {
				t.Errorf("a failing policy let calls reach the upstream: %v", got)
			}
		})
	}
}

// policyCLI runs `gateway policy args…` and returns its output and exit code.
func policyCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(gatewayBin, append([]string{"policy"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("policy %v: %v", args, err)
		}
	}
	return string(out), cmd.ProcessState.ExitCode()
}

func TestPolicyCommands(t *testing.T) {
	t.Run("test embedded", func(t *testing.T) {
		out, code := policyCLI(t, "test")
		if code != 0 || !strings.Contains(out, "PASS") {
			t.Errorf("policy test (embedded): exit %d\n%s", code, out)
		}
		out, code = policyCLI(t, "test", "-v")
		if code != 0 || !strings.Contains(out, "test_support_may_read_customers") {
			t.Errorf("policy test -v (embedded) does not list the tests: exit %d\n%s", code, out)
		}
	})

	good := t.TempDir()
	writePolicyFile(t, filepath.Join(good, "gate.rego"), gateRego("customers"))
	writePolicyFile(t, filepath.Join(good, "gate_test.rego"), gateTestRego(false))
	bad := t.TempDir()
	writePolicyFile(t, filepath.Join(bad, "gate.rego"), gateRego("customers"))
	writePolicyFile(t, filepath.Join(bad, "gate_test.rego"), gateTestRego(true))

	t.Run("test dir", func(t *testing.T) {
		out, code := policyCLI(t, "test", "-v", good)
		if code != 0 {
			t.Errorf("passing tests: exit %d\n%s", code, out)
		}
		for _, name := range []string{"test_support_reads_customers", "test_legal_hold_denied"} {
			if !strings.Contains(out, name) {
				t.Errorf("policy test -v does not list %s:\n%s", name, out)
			}
		}
		out, code = policyCLI(t, "test", bad)
		if code == 0 {
			t.Errorf("a failing Rego test exited 0:\n%s", out)
		}
		if !strings.Contains(out, "FAIL") || !strings.Contains(out, "test_sales_reads_customers") {
			t.Errorf("the failing test is not named:\n%s", out)
		}
		if strings.Contains(out, "PASS  acme.gate_test.test_support_reads_customers") {
			t.Errorf("without -v, passing tests are listed:\n%s", out)
		}
	})

	t.Run("broken dir", func(t *testing.T) {
		broken := t.TempDir()
		writePolicyFile(t, filepath.Join(broken, "gate.rego"), "package acme.gate\n\ndecision := {\n")
		writePolicyFile(t, filepath.Join(broken, "gate_test.rego"), gateTestRego(false))
		if out, code := policyCLI(t, "test", broken); code == 0 || !strings.Contains(out, "gate.rego") {
			t.Errorf("policy test on a policy with a syntax error: exit %d, want non-zero naming gate.rego:\n%s", code, out)
		}
		in := filepath.Join(broken, "input.json")
		writePolicyFile(t, in, `{"action":"call","subject":{"sub":"sam"},"tool":{"name":"crm_get_customer"}}`)
		if out, code := policyCLI(t, "eval", "--input", in, "--dir", broken, "--query", "data.acme.gate.decision"); code == 0 || !strings.Contains(out, "gate.rego") {
			t.Errorf("policy eval on a policy with a syntax error: exit %d, want non-zero naming gate.rego:\n%s", code, out)
		}
	})

	t.Run("eval", func(t *testing.T) {
		dir := t.TempDir()
		input := func(name, sub, dept, customer string) string {
			p := filepath.Join(dir, name)
			doc := map[string]any{
				"action":     "call",
				"subject":    map[string]any{"iss": "https://idp.example", "sub": sub, "email": "", "name": "", "roles": []string{}, "claims": map[string]any{"sub": sub, "department": dept}},
				"agent":      map[string]any{"id": "test-agent", "session_id": ""},
				"delegation": nil,
				"tool": map[string]any{"name": "crm_get_customer", "upstream": "crm", "operation": "get_customer",
					"method": "GET", "path": "/customers/{customer_id}", "tags": []string{"customers"}},
				"arguments":   map[string]any{"customer_id": customer},
				"environment": "test",
				"time":        "2026-01-01T00:00:00Z",
			}
			b, _ := json.Marshal(doc)
			writePolicyFile(t, p, string(b))
			return p
		}
		for _, tc := range []struct {
			file, sub, dept, customer string
			allow                     bool
			reason                    string
		}{
			{"allow.json", "sam", "support", "c-1", true, "support may use this tool"},
			{"hold.json", "sam", "support", "c-2", false, "legal hold"},
			{"sales.json", "sid", "sales", "c-1", false, "sid is not in support"},
		} {
			out, code := policyCLI(t, "eval", "--input", input(tc.file, tc.sub, tc.dept, tc.customer), "--dir", good, "--query", "data.acme.gate.decision")
			if code != 0 {
				t.Errorf("%s: exit %d\n%s", tc.file, code, out)
				continue
			}
			var dec map[string]any
			if err := json.Unmarshal([]byte(out), &dec); err != nil {
				t.Errorf("%s: output is not a JSON decision: %v\n%s", tc.file, err, out)
				continue
			}
			allow, ok := dec["allow"].(bool)
			if !ok || allow != tc.allow {
				t.Errorf("%s: decision %v, want \"allow\": %v", tc.file, dec, tc.allow)
			}
			if r, _ := dec["reason"].(string); !strings.Contains(r, tc.reason) {
				t.Errorf("%s: decision %v, want \"reason\" containing %q", tc.file, dec, tc.reason)
			}
		}
		// The embedded policy decides the same document too.
		out, code := policyCLI(t, "eval", "--input", input("embedded.json", "sam", "support", "c-1"))
		var dec map[string]any
		if err := json.Unmarshal([]byte(out), &dec); err != nil || code != 0 {
			t.Errorf("eval on the embedded policy: exit %d, %v\n%s", code, err, out)
		} else if _, ok := dec["allow"].(bool); !ok {
			t.Errorf("eval on the embedded policy: no boolean \"allow\": %s", out)
		}
	})
}
