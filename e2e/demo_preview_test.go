package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// checkDemoPreview checks, through the running `gateway demo` process p
// (gateway at base, production token prodAlice), the preview environment
// the demo opens next to production as a pull request's CI would: its MCP
// URL lists the branch's tool and only the preview's upstream, a call
// reaches the branch's API with the preview's own assertion, the branch's
// author may write there while the viewer is refused, a production token is
// refused at the preview (and a preview token at production), and retiring
// it as the printout says makes its token get 401 "environment retired",
// with both changes in the audit trail.
func checkDemoPreview(t *testing.T, p *process, base, prodAlice, auditPath string) {
	t.Helper()
	out := p.logs.String()
	find := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the demo's printout has no %s:\n%s", re, out)
		}
		return m[1]
	}
	previewMCP := find(`preview MCP\s+(http://\S+)`)
	if previewMCP != base+"/env/pr-42/mcp" {
		t.Fatalf("preview MCP URL %s, want %s/env/pr-42/mcp", previewMCP, base)
	}
	preview := strings.TrimSuffix(previewMCP, "/mcp")
	alice, carol := find(`HARNESS_PREVIEW_TOKEN_ALICE=(\S+)`), find(`HARNESS_PREVIEW_TOKEN_CAROL=(\S+)`)
	tokenFile := find(`gateway env retire pr-42 --url \S+ --token-file (\S+)`)
	branchAPI := find(`branch API\s+(http://\S+)`)

	for _, e := range eras {
		c := connect(t, preview, alice, e)
		names := listNames(t, c)
		if !slices.Contains(names, "crm_get_customer_loyalty") || slices.Contains(names, "handbook_search_handbook") {
			t.Errorf("%s: the preview lists %v, want the branch's crm_get_customer_loyalty and only its upstream", e.name, names)
		}
		// The call reaches the branch's API, which verified the preview's
		// assertion.
		res := callTool(t, c, "crm_get_customer_loyalty", map[string]any{"customer_id": "c-1"})
		if txt := resultText(res); res.IsError || !strings.Contains(txt, `"branch":"feat-loyalty"`) {
			t.Errorf("%s: the branch's endpoint through the preview: %s", e.name, txt)
		}
		res = callTool(t, c, "crm_whoami", nil)
		var who struct {
			Verified bool           `json:"verified"`
			Claims   map[string]any `json:"assertion_claims"`
		}
		if err := json.Unmarshal([]byte(resultText(res)), &who); err != nil || !who.Verified || who.Claims["iss"] != preview || who.Claims["sub"] != "alice" {
			t.Errorf("%s: whoami at the branch's API: %v %s", e.name, err, resultText(res))
		}
		// The author is admin there; the viewer stays read-only.
		ticket := map[string]any{"customer_id": "c-1", "subject": "Loyalty points missing", "body": "Seen in the preview", "priority": "low"}
		if res := callTool(t, c, "crm_create_ticket", ticket); res.IsError || !strings.Contains(resultText(res), "ticket_id") {
			t.Errorf("%s: the branch's author cannot write in the preview: %s", e.name, resultText(res))
		}
		if res := callTool(t, c, "crm_list_refunds", nil); res.IsError {
			t.Errorf("%s: the branch's author (admin there) cannot list refunds in the preview: %s", e.name, resultText(res))
		}
		v := connect(t, preview, carol, e)
		if res := callTool(t, v, "crm_get_customer_loyalty", map[string]any{"customer_id": "c-3"}); res.IsError {
			t.Errorf("%s: the viewer cannot read in the preview: %s", e.name, resultText(res))
		}
		// The tenant context holds there too: acme's customer is not globex's viewer's.
		if res := callTool(t, v, "crm_get_customer_loyalty", map[string]any{"customer_id": "c-1"}); strings.Contains(resultText(res), `"customer_id":"c-1"`) {
			t.Errorf("%s: globex's viewer sees acme's loyalty points in the preview: %s", e.name, resultText(res))
		}
		if res := callTool(t, v, "crm_create_ticket", ticket); !res.IsError || !strings.HasPrefix(resultText(res), "denied:") {
			t.Errorf("%s: the viewer wrote in the preview: %s", e.name, resultText(res))
		}
	}
	// Production is unchanged: no branch tool, and alice stays support.
	prod := connect(t, base, prodAlice, eras[0])
	if names := listNames(t, prod); slices.Contains(names, "crm_get_customer_loyalty") {
		t.Errorf("production lists the branch's tool: %v", names)
	}
	if res := callTool(t, prod, "crm_list_refunds", nil); !res.IsError {
		t.Errorf("alice lists refunds in production: %s", resultText(res))
	}
	// Each token only where it belongs.
	if code, body := mcpPost(t, previewMCP, prodAlice); code != http.StatusUnauthorized {
		t.Errorf("a production token at the preview: %d %s, want 401", code, body)
	}
	if code, body := mcpPost(t, base+"/mcp", alice); code != http.StatusUnauthorized {
		t.Errorf("a preview token at production: %d %s, want 401", code, body)
	}
	// The branch's API accepts only the preview's assertions.
	if code, body := directGet(t, branchAPI+"/customers/c-1/loyalty", "Bearer "+alice); code != http.StatusUnauthorized {
		t.Errorf("the branch's API without the gateway: %d %s, want 401", code, body)
	}

	// Retire it with the command the printout gives (the real CLI, the CI
	// token in the file it names).
	cli, err := exec.Command(gatewayBin, "env", "retire", "pr-42", "--url", base, "--token-file", tokenFile).CombinedOutput()
	if err != nil {
		t.Fatalf("gateway env retire pr-42, as the demo prints it: %v\n%s", err, cli)
	}
	code, answer, challenge := mcpPostFull(t, previewMCP, alice)
	if code != http.StatusUnauthorized || !strings.Contains(answer+challenge, "environment retired") {
		t.Errorf("the preview's token after retirement: %d %s %s, want 401 environment retired", code, challenge, answer)
	}
	trail := readFile(t, auditPath)
	for _, action := range []string{"create", "retire"} {
		if !regexp.MustCompile(`"kind":"environment"[^\n]*"action":"` + action + `"|"action":"` + action + `"[^\n]*"kind":"environment"`).MatchString(trail) {
			t.Errorf("the audit trail has no environment %s record", action)
		}
	}
}

// mcpPost sends an MCP initialize to url with token, answering the status
// and body.
func mcpPost(t *testing.T, url, token string) (int, string) {
	t.Helper()
	code, body, _ := mcpPostFull(t, url, token)
	return code, body
}

// mcpPostFull is mcpPost plus the WWW-Authenticate challenge.
func mcpPostFull(t *testing.T, url, token string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body), resp.Header.Get("WWW-Authenticate")
}
