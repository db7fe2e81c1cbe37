package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// hostileDoc is the OpenAPI document of an upstream that tries every way
// around the gateway's redaction: JSON under other content types, a
// byte-order mark, NDJSON, trailing garbage, HTML, records of another
// tenant named only deep inside, and a connection string in an error body.
const hostileDoc = `{"openapi":"3.1.0","info":{"title":"hostile","version":"1"},"paths":{
 "/plain":{"get":{"operationId":"plain","tags":["masks"],"responses":{"200":{"description":"ok"}}}},
 "/xjson":{"get":{"operationId":"xjson","tags":["masks"],"responses":{"200":{"description":"ok"}}}},
 "/textjson":{"get":{"operationId":"textjson","tags":["masks"],"responses":{"200":{"description":"ok"}}}},
 "/bom":{"get":{"operationId":"bom","tags":["masks"],"responses":{"200":{"description":"ok"}}}},
 "/ndjson":{"get":{"operationId":"ndjson","tags":["masks"],"responses":{"200":{"description":"ok"}}}},
 "/garbage":{"get":{"operationId":"garbage","tags":["masks"],"responses":{"200":{"description":"ok"}}}},
 "/html":{"get":{"operationId":"html","tags":["masks"],"responses":{"200":{"description":"ok"}}}},
 "/deals":{"get":{"operationId":"deals","tags":["tenant"],"responses":{"200":{"description":"ok"}}}},
 "/deal":{"get":{"operationId":"deal","tags":["tenant"],"responses":{"200":{"description":"ok"}}}},
 "/dbdown":{"get":{"operationId":"dbdown","tags":["plain"],"responses":{"200":{"description":"ok"}}}}}}`

// hostileRecord carries a secret note, a card and a foreign tenant: with
// the masks policy none of them may reach the agent.
const hostileRecord = `{"name":"Acme deal","secret_note":"merger with initech","card_number":"7","tenant_id":"globex"}`

func startHostileUpstream(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	serve := func(path, ct, body string, status int) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		})
	}
	serve("/openapi.json", "application/json", hostileDoc, 200)
	serve("/plain", "text/plain; charset=utf-8", hostileRecord, 200)
	serve("/xjson", "application/x-json", hostileRecord, 200)
	serve("/textjson", "text/json", hostileRecord, 200)
	serve("/bom", "application/json", "\ufeff"+hostileRecord, 200)
	serve("/ndjson", "application/x-ndjson", hostileRecord+"\n"+hostileRecord+"\n", 200)
	serve("/garbage", "application/json", hostileRecord+"<!-- cached -->", 200)
	serve("/html", "text/html", "<table><tr><td>tenant_id</td><td>globex</td><td>merger with initech</td></tr></table>", 200)
	serve("/deals", "application/json", `[
  {"name":"Globex secret deal","amount":1000000,"owner":{"tenant_id":"globex"}},
  {"name":"Globex upper-case deal","owner":{"Tenant_ID":"globex"}},
  {"name":"Globex invisible deal","owner":{"tenant\u200b_id":"globex"}},
  {"name":"Acme deal","amount":5,"owner":{"tenant_id":"acme"}}]`, 200)
	serve("/deal", "application/json", `{"name":"Globex secret deal","owner":{"tenant_id":"globex"}}`, 200)
	serve("/dbdown", "text/plain", "could not connect: postgres://admin:hunter2@10.0.0.5/crm (password=hunter2)", 500)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// containmentPolicy masks fields for tools tagged "masks" (no context
// rule, as in the attack), confines "tenant" tools to acme, and only runs
// the detectors for "plain" ones.
const containmentPolicy = `package harness

decision := {"allow": true, "reason": "masks", "redact": ["secret_note", "card_number", "tenant_id"]} if "masks" in input.tool.tags

decision := {"allow": true, "reason": "tenant", "context": {"tenant_id": ["acme"]}} if "tenant" in input.tool.tags

decision := {"allow": true, "reason": "plain"} if "plain" in input.tool.tags
`

// TestHostileUpstreamResultsContained runs the redaction attacks of issue
// 13 through the binary: JSON under another content type is still masked,
// what is not JSON is withheld (and the audit record says so, claiming no
// redactions), a foreign tenant deep inside a record removes the record,
// and a connection string's password never reaches the agent.
func TestHostileUpstreamResultsContained(t *testing.T) {
	iss := startIssuer(t)
	up := startHostileUpstream(t)
	dir := t.TempDir()
	writePolicyFile(t, filepath.Join(dir, "policy.rego"), containmentPolicy)
	gw := startGateway(t, fmt.Sprintf(`listen: "{{LISTEN}}"
public_url: "http://{{LISTEN}}"
environment: test
auth:
  issuers:
    - issuer: %q
policy:
  dir: %q
ratelimit:
  default: {requests: 100000, per: 1m}
upstreams:
  - name: h
    base_url: %q
    openapi: %q
audit:
  path: "{{DIR}}/audit.log"
`, iss.URL(), dir, up, up+"/openapi.json"))
	alice := mint(t, iss, gw.URL, map[string]any{"sub": "alice"})
	leaks := []string{"merger", "globex", "Globex", "hunter2"}
	for _, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			c := connect(t, gw.URL, alice, e)
			check := func(tool string, res string) {
				t.Helper()
				for _, l := range leaks {
					if strings.Contains(res, l) {
						t.Errorf("%s: %q reached the agent: %s", tool, l, res)
					}
				}
			}
			for _, tool := range []string{"h_plain", "h_xjson", "h_textjson", "h_bom"} {
				res := callTool(t, c, tool, nil)
				sc, _ := json.Marshal(res.StructuredContent)
				txt := resultText(res)
				if res.IsError || !strings.Contains(txt, "Acme deal") || strings.Count(txt, "[REDACTED:field]") != 3 {
					t.Errorf("%s: want the record with 3 fields masked, got isError=%v %s", tool, res.IsError, txt)
				}
				check(tool, txt+string(sc))
			}
			for _, tool := range []string{"h_ndjson", "h_garbage", "h_html"} {
				res := callTool(t, c, tool, nil)
				txt := resultText(res)
				if !res.IsError || !strings.Contains(txt, "not JSON") || !strings.Contains(txt, "withheld") {
					t.Errorf("%s: want withheld, got isError=%v %s", tool, res.IsError, txt)
				}
				check(tool, txt)
			}
			res := callTool(t, c, "h_deals", nil)
			txt := resultText(res)
			if res.IsError || !strings.Contains(txt, "Acme deal") || strings.Contains(txt, "1000000") {
				t.Errorf("deals: want only acme's deal, got isError=%v %s", res.IsError, txt)
			}
			check("h_deals", txt)
			res = callTool(t, c, "h_deal", nil)
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "no record in your context") {
				t.Errorf("deal: want the whole result withheld, got isError=%v %s", res.IsError, txt)
			}
			check("h_deal", resultText(res))
			res = callTool(t, c, "h_dbdown", nil)
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "500") || !strings.Contains(txt, "postgres://admin:[REDACTED:secret]@10.0.0.5/crm") {
				t.Errorf("upstream 500: want the error with the password masked, got isError=%v %s", res.IsError, txt)
			}
			check("h_dbdown", resultText(res))
		})
	}

	// The audit record never claims redactions that did not happen.
	withheld := 0
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, gw.AuditPath)), "\n") {
		var r struct {
			Tool       string `json:"tool"`
			Reason     string `json:"reason"`
			Redactions int    `json:"redactions"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Tool == "" {
			continue
		}
		switch r.Tool {
		case "h_ndjson", "h_garbage", "h_html":
			withheld++
			if r.Redactions != 0 || !strings.Contains(r.Reason, "withheld") {
				t.Errorf("audit record of a withheld result: %s", line)
			}
		case "h_plain":
			if r.Redactions != 3 {
				t.Errorf("audit record of a masked result: %s", line)
			}
		}
		for _, l := range leaks {
			if strings.Contains(line, l) {
				t.Errorf("%q reached the audit trail: %s", l, line)
			}
		}
	}
	if withheld != 2*3 {
		t.Errorf("%d audit records of withheld results, want 6", withheld)
	}
}

// TestSpinningAgentBounded runs the limit attacks of issue 13 through the
// binary. A new agent of the same human (a delegation naming the human's
// own token as the actor, a freshly registered client) finds the human's
// bucket as empty as the copilot left it; an agent spinning on refused
// calls gets answers but leaves a bounded audit trail; and its made-up tool
// names share one metric label.
func TestSpinningAgentBounded(t *testing.T) {
	st := startStack(t, `ratelimit:
  default: {requests: 2, per: 1h}
  refusals: {requests: 5, per: 1h}
`)
	args := map[string]any{"customer_id": "c-1"}
	alice := connect(t, st.gw.URL, st.tokens["alice"], eras[0])
	for i := range 2 {
		if res := callTool(t, alice, "crm_get_customer", args); res.IsError {
			t.Fatalf("call %d: %s", i, resultText(res))
		}
	}
	self := delegate(t, st.gw.URL, st.tokens["alice"], st.tokens["alice"], "tool:crm_*")
	fresh := mint(t, st.iss, st.gw.URL, map[string]any{"sub": "alice", "roles": []string{"support"}, "tenant": "acme", "azp": "client-fresh-7f3a"})
	for name, tok := range map[string]string{"delegation to alice herself": self, "fresh client": fresh} {
		res := callTool(t, connect(t, st.gw.URL, tok, eras[0]), "crm_get_customer", args)
		if !res.IsError || !strings.HasPrefix(resultText(res), "rate limited: ") {
			t.Errorf("%s got a fresh bucket: %v %s", name, res.IsError, resultText(res))
		}
	}

	const spins = 60
	bob := connect(t, st.gw.URL, st.tokens["bob"], eras[1])
	for i := range spins {
		req := mcp.CallToolRequest{}
		req.Params.Name = fmt.Sprintf("made_up_%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := bob.CallTool(ctx, req)
		cancel()
		if err == nil && !res.IsError {
			t.Fatalf("unknown tool %s answered as a success", req.Params.Name)
		}
	}
	metrics := httpGetBody(t, st.gw.URL+"/metrics")
	if !strings.Contains(metrics, fmt.Sprintf(`harness_tool_calls_total{decision="deny",tool="_unknown"} %d`, spins)) || strings.Contains(metrics, `tool="made_up_`) {
		t.Errorf("unknown tool names in /metrics:\n%s", grepLines(metrics, "harness_tool_calls_total"))
	}

	st.gw.stop() // flushes the aggregate record and closes the trail
	individual, aggregate := 0, ""
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, st.gw.AuditPath)), "\n") {
		var r struct{ Kind, Subject, Tool, Reason string }
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Subject != "bob" {
			continue
		}
		switch r.Kind {
		case "":
			individual++
		case "refusals":
			if aggregate != "" {
				t.Errorf("two aggregate records: %s", line)
			}
			aggregate = r.Reason
		}
	}
	if individual != 5 || !strings.HasPrefix(aggregate, fmt.Sprintf("%d refused calls of bob", spins-5)) {
		t.Errorf("bob's %d refusals left %d individual records and the aggregate %q; want 5 and %d in one record", spins, individual, aggregate, spins-5)
	}
}

func httpGetBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readAll(t, resp.Body)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
