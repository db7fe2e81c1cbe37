package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/devissuer"
	"github.com/agentharness/harness/internal/redistest"
)

// The preview environment tests (issue 18, docs/previews.md): two gateway
// replicas on one Redis, a production FastAPI and the branch's (differing
// in one endpoint, get_customer_loyalty), a human IdP and a CI issuer whose
// tokens have GitHub Actions' claim set.

const (
	previewRepo          = "acme/crm"
	previewBranch        = "feat-loyalty"
	previewWebhookSecret = "e2e-webhook-secret-0123456789abcdef"
	// loyaltyTool exists only in the branch's service.
	loyaltyTool = "crm_get_customer_loyalty"
)

type previewStack struct {
	iss, ci      *devissuer.Issuer // the humans' IdP; GitHub Actions
	gitlab       *devissuer.Issuer // GitLab CI
	public       string            // the shared public_url (nothing listens there)
	a, b         *gateway
	prod, branch string // FastAPI base URLs
	prodLogs     *syncBuffer
}

// mcpURL is the MCP endpoint of environment name at replica g ("" = production).
func (ps *previewStack) mcpURL(g *gateway, name string) string {
	if name == "" {
		return g.URL + "/mcp"
	}
	return g.URL + "/env/" + name + "/mcp"
}

// resource is the protected resource of environment name.
func (ps *previewStack) resource(name string) string { return ps.public + "/env/" + name + "/mcp" }

// human mints a token of the humans' IdP for aud.
func (ps *previewStack) human(t testing.TB, aud, sub string, roles ...string) string {
	t.Helper()
	tok, err := ps.iss.Mint(map[string]any{"sub": sub, "aud": aud, "azp": "copilot", "roles": roles, "email": sub + "@acme.example"}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ciToken mints a GitHub Actions token of repository for pull request pr.
func (ps *previewStack) ciToken(t testing.TB, repository string, pr int) string {
	t.Helper()
	tok, err := ps.ci.Mint(devissuer.GitHubActionsClaims(devissuer.GitHubActions{
		Repository: repository, Actor: "alice", PullRequest: pr, HeadRef: previewBranch, Audience: ps.public,
	}), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// writeToken puts tok in a private file for --token-file.
func writeToken(t testing.TB, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startFastAPILogged runs examples/fastapi with access logs, so a test can
// tell whether it was called.
func startFastAPILogged(t testing.TB, name string, env ...string) (string, *syncBuffer) {
	t.Helper()
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(python(), "-m", "uvicorn", "app:app", "--app-dir", "../examples/fastapi",
		"--host", host, "--port", port, "--log-level", "info")
	cmd.Env = append(os.Environ(), env...)
	p := startProcess(t, name, cmd)
	base := "http://" + addr
	waitHTTP(t, base+"/openapi.json", 200, 30*time.Second, p.logs.String)
	return base, p.logs
}

func startPreviewStack(t *testing.T) *previewStack {
	t.Helper()
	ps := &previewStack{iss: startIssuer(t), ci: startIssuer(t), gitlab: startIssuer(t), public: "http://" + freeAddr(t)}
	redis := redistest.StartServer(t)
	aAddr, bAddr := freeAddr(t), freeAddr(t)
	ps.prod, ps.prodLogs = startFastAPILogged(t, "fastapi-production")
	// The branch's service verifies the assertions of preview pr-42: signed
	// by a key in the gateway's JWKS, with the preview's iss.
	ps.branch, _ = startFastAPILogged(t, "fastapi-branch",
		"HARNESS_SAMPLE_BRANCH="+previewBranch,
		"HARNESS_JWKS_URL=http://"+aAddr+"/.well-known/jwks.json",
		"HARNESS_ISSUER="+ps.public+"/env/pr-42",
		"HARNESS_AUDIENCE=crm")
	cfg := func(addr, dir string) string {
		return fmt.Sprintf(`listen: %q
public_url: %q
environment: production
auth:
  issuers:
    - issuer: %q
ratelimit:
  redis_url: %q
  redis_timeout: 2s
upstreams:
  - name: crm
    base_url: %q
    openapi: %q
audit:
  path: %q
environments:
  ci_issuers:
    - issuer: %q
      audiences: [%q]
      claims: {repository: %q, event_name: pull_request}
    - issuer: %q
      audiences: [%q]
      claims: {project_path: %q, pipeline_source: merge_request_event}
  admin_roles: [platform-admin]
  allowed_upstreams: [%q]
  github_webhook_secret: %q
  default_ttl: 1h
  max_ttl: 2h
  max: 5
`, addr, ps.public, ps.iss.URL(), redis.URL(), ps.prod, ps.prod+"/openapi.json", filepath.Join(dir, "audit.log"),
			ps.ci.URL(), ps.public, previewRepo, ps.gitlab.URL(), ps.public, previewRepo, ps.branch, previewWebhookSecret)
	}
	aDir, bDir := t.TempDir(), t.TempDir()
	ps.a = startGatewayAt(t, aAddr, aDir, cfg(aAddr, aDir))
	ps.b = startGatewayAt(t, bAddr, bDir, cfg(bAddr, bDir))
	return ps
}

// envCLI runs the real `gateway env …` and returns stdout, stderr and the exit code.
func envCLI(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(gatewayBin, append([]string{"env"}, args...)...)
	cmd.Env = os.Environ()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// apiCall sends one request to the environments API and decodes the JSON answer.
func apiCall(t testing.TB, method, u, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, u, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw := readAll(t, resp.Body)
	var m map[string]any
	_ = json.Unmarshal([]byte(raw), &m)
	return resp.StatusCode, m
}

// mcpRPC posts one 2025-11-25 JSON-RPC request to an MCP URL; it returns
// the status, the headers and the body.
func mcpRPC(t testing.TB, u, token, sid, method string) (int, http.Header, string) {
	t.Helper()
	params := map[string]any{}
	if method == "initialize" {
		params = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "e2e", "version": "1"}}
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header, readAll(t, resp.Body)
}

// legacySession opens a 2025-11-25 session at u and returns its id.
func legacySession(t testing.TB, u, token string) string {
	t.Helper()
	status, h, body := mcpRPC(t, u, token, "", "initialize")
	sid := h.Get("Mcp-Session-Id")
	if status != http.StatusOK || sid == "" {
		t.Fatalf("initialize at %s: %d, session %q: %s", u, status, sid, body)
	}
	if status, _, body := mcpRPC(t, u, token, sid, "tools/list"); status != http.StatusOK || !strings.Contains(body, loyaltyTool) {
		t.Fatalf("tools/list in the session at %s: %d %s", u, status, body)
	}
	return sid
}

// refusedRetired reports whether an answer is the 401 of a retired environment.
func refusedRetired(status int, h http.Header, body string) bool {
	return status == http.StatusUnauthorized && strings.Contains(h.Get("WWW-Authenticate")+body, "environment retired")
}

// within polls f every 25 ms until it returns "" or d passes, then fails
// with f's last answer.
func within(t testing.TB, d time.Duration, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, d, msg)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// bundleDir writes a policy directory: the default policy with a branch
// role "developer" that may read everything (production has no such role).
func bundleDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	rego, err := os.ReadFile("../policy/harness.rego")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(readFile(t, "../policy/data.json")), &data); err != nil {
		t.Fatal(err)
	}
	data["grants"].(map[string]any)["developer"] = map[string]any{"read": []string{"*"}, "write": []string{}}
	dj, _ := json.Marshal(data)
	if err := os.WriteFile(filepath.Join(dir, "harness.rego"), rego, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.json"), dj, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// brokenBundle is a .tar.gz whose policy/harness.rego fails to parse at line 5.
func brokenBundle(t testing.TB) string {
	t.Helper()
	rego := "package harness\n\nallow if {\n\tinput.user ==\n}\n"
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "policy/harness.rego", Mode: 0o644, Size: int64(len(rego)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(rego))
	_ = tw.Close()
	_ = gz.Close()
	p := filepath.Join(t.TempDir(), "broken.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// auditRecords returns the kind=environment records of both replicas.
func (ps *previewStack) auditRecords(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, g := range []*gateway{ps.a, ps.b} {
		raw, err := os.ReadFile(g.AuditPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["kind"] == "environment" {
				out = append(out, r)
			}
		}
	}
	return out
}

// findRecord is the first environment record for name with action, or nil.
func findRecord(recs []map[string]any, name, action string) map[string]any {
	for _, r := range recs {
		b, _ := json.Marshal(r)
		if r["action"] == action && strings.Contains(string(b), `"`+name+`"`) {
			return r
		}
	}
	return nil
}

func recordText(r map[string]any) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// TestPreviewEnvironments is the flow end to end: CI creates a
// preview with its OIDC token; copilots use it with the branch's policy
// against the branch's service only; the webhook, the API and the TTL
// retire previews on both replicas at once; everything is audited.
func TestPreviewEnvironments(t *testing.T) {
	ps := startPreviewStack(t)
	ci42 := writeToken(t, ps.ciToken(t, previewRepo, 42))
	branchUp := "crm=" + ps.branch + ",openapi=" + ps.branch + "/openapi.json"
	create := func(gwURL, name, tokenFile string, extra ...string) (string, string, int) {
		return envCLI(t, append([]string{"create", name, "--url", gwURL, "--token-file", tokenFile,
			"--branch", previewBranch, "--repository", previewRepo, "--owner", "alice"}, extra...)...)
	}

	t.Run("create", func(t *testing.T) {
		// A token of another repository: refused, nothing created.
		evil := writeToken(t, ps.ciToken(t, "evil/crm", 42))
		out, errOut, code := create(ps.a.URL, "pr-42", evil, "--pr", "42", "--upstream", branchUp)
		if code != 1 || out != "" || !strings.Contains(errOut, "403") {
			t.Errorf("wrong repository: exit %d, stdout %q, stderr %q; want exit 1 and a 403", code, out, errOut)
		}
		status, m := apiCall(t, http.MethodPut, ps.a.URL+"/environments/pr-42", ps.ciToken(t, "evil/crm", 42),
			map[string]any{"repository": "evil/crm", "pull_request": 42, "upstreams": map[string]any{"crm": map[string]any{"base_url": ps.branch}}})
		if status != http.StatusForbidden || m["error"] == nil || m["error_description"] == nil {
			t.Errorf("wrong repository by API: %d %v, want 403 with error and error_description", status, m)
		}
		// No token at all.
		if status, _ := apiCall(t, http.MethodPut, ps.a.URL+"/environments/pr-42", "",
			map[string]any{"upstreams": map[string]any{"crm": map[string]any{"base_url": ps.branch}}}); status != http.StatusUnauthorized {
			t.Errorf("no token: %d, want 401", status)
		}
		// Production's URL is outside allowed_upstreams.
		out, errOut, code = create(ps.a.URL, "pr-42", ci42, "--pr", "42", "--upstream", "crm="+ps.prod+",openapi="+ps.prod+"/openapi.json")
		if code != 1 || out != "" || !strings.Contains(errOut, "403") {
			t.Errorf("production upstream: exit %d, stdout %q, stderr %q; want exit 1 and a 403", code, out, errOut)
		}
		// A broken policy bundle: 400 naming file:line.
		out, errOut, code = create(ps.a.URL, "pr-42", ci42, "--pr", "42", "--upstream", branchUp, "--policy-bundle", brokenBundle(t))
		if code != 1 || out != "" || !strings.Contains(errOut, "400") || !strings.Contains(errOut, "harness.rego:5") {
			t.Errorf("broken bundle: exit %d, stdout %q, stderr %q; want exit 1, a 400 naming harness.rego:5", code, out, errOut)
		}
		for _, g := range []*gateway{ps.a, ps.b} {
			status, m := apiCall(t, http.MethodGet, g.URL+"/environments", ps.ciToken(t, previewRepo, 42), nil)
			if envs, _ := m["environments"].([]any); status != http.StatusOK || len(envs) != 0 {
				t.Fatalf("after refusals, GET /environments at %s = %d %v, want none", g.URL, status, m)
			}
		}

		// The good one, with the branch's policy built from a directory.
		out, errOut, code = create(ps.a.URL, "pr-42", ci42, "--pr", "42", "--upstream", branchUp, "--policy-bundle", bundleDir(t), "--ttl", "1h")
		if code != 0 {
			t.Fatalf("create: exit %d: %s", code, errOut)
		}
		if first, _, _ := strings.Cut(out, "\n"); first != ps.resource("pr-42") {
			t.Fatalf("create printed %q first, want the MCP URL %s", first, ps.resource("pr-42"))
		}
		// Every replica knows it, with who created it.
		for _, g := range []*gateway{ps.a, ps.b} {
			status, m := apiCall(t, http.MethodGet, g.URL+"/environments/pr-42", ps.ciToken(t, previewRepo, 42), nil)
			if status != http.StatusOK || m["mcp_url"] != ps.resource("pr-42") || m["resource"] != ps.resource("pr-42") ||
				m["created_by"] != "alice" || m["repository"] != previewRepo || m["pull_request"] != float64(42) || m["branch"] != previewBranch {
				t.Errorf("GET /environments/pr-42 at %s = %d %v", g.URL, status, m)
			}
		}
		// The list through the CLI, from the other replica.
		out, errOut, code = envCLI(t, "list", "--url", ps.b.URL, "--token-file", ci42)
		if code != 0 || !strings.Contains(out, "pr-42") || !strings.Contains(out, previewRepo) {
			t.Errorf("env list: exit %d, %q %q", code, out, errOut)
		}
		// Its own protected-resource metadata.
		resp, err := http.Get(ps.b.URL + "/.well-known/oauth-protected-resource/env/pr-42/mcp")
		if err != nil {
			t.Fatal(err)
		}
		var meta map[string]any
		_ = json.Unmarshal([]byte(readAll(t, resp.Body)), &meta)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || meta["resource"] != ps.resource("pr-42") {
			t.Errorf("preview metadata: %d %v", resp.StatusCode, meta)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	dev := ps.human(t, ps.resource("pr-42"), "alice", "developer")
	t.Run("serve", func(t *testing.T) {
		// Created on one replica, served by both within a second.
		within(t, 1500*time.Millisecond, "pr-42 served on "+ps.b.URL, func() string {
			if status, _, body := mcpRPC(t, ps.mcpURL(ps.b, "pr-42"), dev, "", "initialize"); status != http.StatusOK {
				return fmt.Sprintf("%d %s", status, body)
			}
			return ""
		})
		before := len(ps.prodLogs.String())
		for _, g := range []*gateway{ps.a, ps.b} {
			for _, e := range eras {
				c := connect(t, g.URL+"/env/pr-42", dev, e)
				names := listNames(t, c)
				if !slices.Contains(names, loyaltyTool) {
					t.Errorf("%s %s: tools = %v, want the branch's %s", g.URL, e.name, names, loyaltyTool)
				}
				res := callTool(t, c, loyaltyTool, map[string]any{"customer_id": "c-1"})
				if txt := resultText(res); res.IsError || !strings.Contains(txt, `"branch":"`+previewBranch+`"`) {
					t.Errorf("%s %s: %s = %s", g.URL, e.name, loyaltyTool, txt)
				}
				// The branch's service verified the assertion: the preview's
				// iss, signed by a key the gateway publishes.
				res = callTool(t, c, "crm_whoami", nil)
				var w struct {
					Verification    string         `json:"verification"`
					Human           string         `json:"human"`
					AssertionClaims map[string]any `json:"assertion_claims"`
				}
				if err := json.Unmarshal([]byte(resultText(res)), &w); err != nil || res.IsError {
					t.Fatalf("%s %s: whoami: %v %s", g.URL, e.name, err, resultText(res))
				}
				if w.Verification != "on" || w.Human != "alice" || w.AssertionClaims["iss"] != ps.public+"/env/pr-42" {
					t.Errorf("%s %s: the branch's service saw %+v, want a verified assertion with iss %s/env/pr-42", g.URL, e.name, w, ps.public)
				}
			}
		}
		// Production's service was never called by the preview.
		for _, line := range strings.Split(ps.prodLogs.String()[before:], "\n") {
			if strings.Contains(line, `"GET /`) && !strings.Contains(line, "/openapi.json") {
				t.Errorf("the preview reached production's service: %s", line)
			}
		}
		// Production's gateway does not know the developer role: the
		// branch's policy decided above. Production's tools lack the branch's.
		prod := ps.human(t, ps.public+"/mcp", "alice", "admin")
		if names := listNames(t, connect(t, ps.a.URL, prod, eras[0])); slices.Contains(names, loyaltyTool) || len(names) == 0 {
			t.Errorf("production tools = %v", names)
		}
		// A production token at the preview, a preview token at production.
		for _, g := range []*gateway{ps.a, ps.b} {
			if status, _, body := mcpRPC(t, ps.mcpURL(g, "pr-42"), prod, "", "initialize"); status != http.StatusUnauthorized {
				t.Errorf("production token at the preview (%s): %d %s", g.URL, status, body)
			}
			if status, _, body := mcpRPC(t, ps.mcpURL(g, ""), dev, "", "initialize"); status != http.StatusUnauthorized {
				t.Errorf("preview token at production (%s): %d %s", g.URL, status, body)
			}
		}
	})

	t.Run("retire by webhook", func(t *testing.T) {
		// A delegation for the preview (token exchange with resource=), and
		// a legacy session on each replica.
		status, m := oauthPost(t, ps.a.URL+"/oauth/token", url.Values{
			"grant_type": {grantTokenExchange}, "subject_token": {dev}, "subject_token_type": {tokenTypeAccess},
			"scope": {"tool:" + loyaltyTool}, "resource": {ps.resource("pr-42")},
		})
		grant, _ := m["access_token"].(string)
		if status != http.StatusOK || grant == "" {
			t.Fatalf("token exchange for the preview: %d %v", status, m)
		}
		sessions := map[*gateway]string{}
		for _, g := range []*gateway{ps.a, ps.b} {
			if names := listNames(t, connect(t, g.URL+"/env/pr-42", grant, eras[0])); !slices.Equal(names, []string{loyaltyTool}) {
				t.Errorf("the delegation at %s lists %v", g.URL, names)
			}
			sessions[g] = legacySession(t, ps.mcpURL(g, "pr-42"), dev)
		}

		body := []byte(fmt.Sprintf(`{"action":"closed","number":42,"pull_request":{"number":42,"merged":true,"head":{"ref":%q}},"repository":{"full_name":%q},"sender":{"login":"carol"}}`, previewBranch, previewRepo))
		mac := hmac.New(sha256.New, []byte(previewWebhookSecret))
		mac.Write(body)
		good := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		wrong := "sha256=" + strings.Repeat("0", 64)
		hook := func(sig string) (int, string) {
			req, _ := http.NewRequest(http.MethodPost, ps.b.URL+"/hooks/github", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "pull_request")
			req.Header.Set("X-GitHub-Delivery", "e2e-delivery-1")
			if sig != "" {
				req.Header.Set("X-Hub-Signature-256", sig)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			return resp.StatusCode, readAll(t, resp.Body)
		}
		for _, sig := range []string{"", wrong} {
			if status, answer := hook(sig); status != http.StatusUnauthorized {
				t.Errorf("webhook with signature %q: %d %s, want 401", sig, status, answer)
			}
		}
		// Nothing changed: the preview still serves.
		if status, _, body := mcpRPC(t, ps.mcpURL(ps.a, "pr-42"), dev, "", "initialize"); status != http.StatusOK {
			t.Fatalf("after unsigned webhooks the preview answers %d %s", status, body)
		}

		status, answer := hook(good)
		var retired struct {
			Retired []string `json:"retired"`
		}
		_ = json.Unmarshal([]byte(answer), &retired)
		if status != http.StatusOK || !slices.Equal(retired.Retired, []string{"pr-42"}) {
			t.Fatalf("signed webhook: %d %s, want 200 retiring pr-42", status, answer)
		}
		// Within a second everything for it fails on both replicas.
		for _, g := range []*gateway{ps.a, ps.b} {
			within(t, 1500*time.Millisecond, "retired at "+g.URL, func() string {
				if status, h, body := mcpRPC(t, ps.mcpURL(g, "pr-42"), dev, "", "initialize"); !refusedRetired(status, h, body) {
					return fmt.Sprintf("token: %d %q %s", status, h.Get("WWW-Authenticate"), body)
				}
				if status, h, body := mcpRPC(t, ps.mcpURL(g, "pr-42"), grant, "", "initialize"); !refusedRetired(status, h, body) {
					return fmt.Sprintf("delegation: %d %q %s", status, h.Get("WWW-Authenticate"), body)
				}
				if status, _, body := mcpRPC(t, ps.mcpURL(g, "pr-42"), dev, sessions[g], "tools/list"); status == http.StatusOK {
					return "session still answers: " + body
				}
				return ""
			})
			if status, m := apiCall(t, http.MethodGet, g.URL+"/environments/pr-42", ps.ciToken(t, previewRepo, 42), nil); status != http.StatusNotFound {
				t.Errorf("GET /environments/pr-42 at %s after retirement: %d %v", g.URL, status, m)
			}
		}
		// No new delegation for it either.
		if status, m := oauthPost(t, ps.b.URL+"/oauth/token", url.Values{
			"grant_type": {grantTokenExchange}, "subject_token": {dev}, "subject_token_type": {tokenTypeAccess},
			"scope": {"tool:" + loyaltyTool}, "resource": {ps.resource("pr-42")},
		}); status == http.StatusOK {
			t.Errorf("token exchange for a retired preview: %d %v", status, m)
		}
		// Production is untouched.
		prod := ps.human(t, ps.public+"/mcp", "alice", "admin")
		if status, _, body := mcpRPC(t, ps.mcpURL(ps.b, ""), prod, "", "initialize"); status != http.StatusOK {
			t.Errorf("production after retiring the preview: %d %s", status, body)
		}
	})

	t.Run("retire by API", func(t *testing.T) {
		ci43 := writeToken(t, ps.ciToken(t, previewRepo, 43))
		if _, errOut, code := create(ps.b.URL, "pr-43", ci43, "--pr", "43", "--upstream", branchUp); code != 0 {
			t.Fatalf("create pr-43: exit %d: %s", code, errOut)
		}
		dev43 := ps.human(t, ps.resource("pr-43"), "alice", "admin")
		within(t, 1500*time.Millisecond, "pr-43 served on "+ps.a.URL, func() string {
			if status, _, body := mcpRPC(t, ps.mcpURL(ps.a, "pr-43"), dev43, "", "initialize"); status != http.StatusOK {
				return fmt.Sprintf("%d %s", status, body)
			}
			return ""
		})
		// An admin human retires it through the CLI, on the other replica.
		admin := writeToken(t, ps.human(t, ps.public+"/mcp", "platform-pat", "platform-admin"))
		out, errOut, code := envCLI(t, "retire", "pr-43", "--url", ps.a.URL, "--token-file", admin)
		if code != 0 || out != "environment pr-43 retired\n" {
			t.Fatalf("env retire: exit %d, %q %q", code, out, errOut)
		}
		for _, g := range []*gateway{ps.a, ps.b} {
			within(t, 1500*time.Millisecond, "pr-43 retired at "+g.URL, func() string {
				if status, h, body := mcpRPC(t, ps.mcpURL(g, "pr-43"), dev43, "", "initialize"); !refusedRetired(status, h, body) {
					return fmt.Sprintf("%d %q %s", status, h.Get("WWW-Authenticate"), body)
				}
				return ""
			})
		}
		// Again: unknown now (404, exit 1), fine with --missing-ok.
		if _, errOut, code := envCLI(t, "retire", "pr-43", "--url", ps.b.URL, "--token-file", admin); code != 1 || !strings.Contains(errOut, "404") {
			t.Errorf("retire twice: exit %d, %q", code, errOut)
		}
		if _, errOut, code := envCLI(t, "retire", "pr-43", "--missing-ok", "--url", ps.b.URL, "--token-file", admin); code != 0 {
			t.Errorf("retire twice --missing-ok: exit %d, %q", code, errOut)
		}
	})

	t.Run("retire by TTL", func(t *testing.T) {
		ci44 := writeToken(t, ps.ciToken(t, previewRepo, 44))
		out, errOut, code := create(ps.a.URL, "pr-44", ci44, "--pr", "44", "--upstream", branchUp, "--ttl", "2s", "--json")
		var info struct {
			ExpiresAt time.Time `json:"expires_at"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
			t.Fatalf("create pr-44 --ttl 2s: exit %d, %q %q", code, out, errOut)
		}
		dev44 := ps.human(t, ps.resource("pr-44"), "alice", "admin")
		// Once it has expired, both replicas refuse it.
		time.Sleep(time.Until(info.ExpiresAt))
		for _, g := range []*gateway{ps.a, ps.b} {
			within(t, 1500*time.Millisecond, "pr-44 expired at "+g.URL, func() string {
				if status, h, body := mcpRPC(t, ps.mcpURL(g, "pr-44"), dev44, "", "initialize"); !refusedRetired(status, h, body) {
					return fmt.Sprintf("%d %q %s", status, h.Get("WWW-Authenticate"), body)
				}
				return ""
			})
		}
	})

	t.Run("gitlab", func(t *testing.T) {
		mint := func(project string) string {
			tok, err := ps.gitlab.Mint(devissuer.GitLabCIClaims(devissuer.GitLabCI{
				ProjectPath: project, UserLogin: "dora", Ref: previewBranch, Audience: ps.public,
			}), 5*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return writeToken(t, tok)
		}
		if _, errOut, code := create(ps.a.URL, "mr-7", mint("evil/crm"), "--pr", "7", "--upstream", branchUp); code != 1 || !strings.Contains(errOut, "403") {
			t.Errorf("GitLab token of another project: exit %d, %q", code, errOut)
		}
		tok := mint(previewRepo)
		if _, errOut, code := create(ps.a.URL, "mr-7", tok, "--pr", "7", "--upstream", branchUp); code != 0 {
			t.Fatalf("GitLab create: exit %d: %s", code, errOut)
		}
		if status, m := apiCall(t, http.MethodGet, ps.b.URL+"/environments/mr-7", strings.TrimSpace(readFile(t, tok)), nil); status != http.StatusOK || m["created_by"] != "dora" {
			t.Errorf("GET mr-7: %d %v, want created_by dora (user_login)", status, m)
		}
		if out, errOut, code := envCLI(t, "retire", "mr-7", "--url", ps.b.URL, "--token-file", tok); code != 0 {
			t.Errorf("GitLab retire: exit %d, %q %q", code, out, errOut)
		}
	})

	t.Run("audit", func(t *testing.T) {
		var recs []map[string]any
		within(t, 5*time.Second, "environment audit records", func() string {
			recs = ps.auditRecords(t)
			for _, want := range [][2]string{{"pr-42", "create"}, {"pr-42", "retire"}, {"pr-43", "create"}, {"pr-43", "retire"}, {"pr-44", "expire"}} {
				if findRecord(recs, want[0], want[1]) == nil {
					return fmt.Sprintf("no %s record for %s among %d", want[1], want[0], len(recs))
				}
			}
			return ""
		})
		// Who created it (the CI token's actor) and who retired it, and why.
		if r := findRecord(recs, "pr-42", "create"); !strings.Contains(recordText(r), `"alice"`) {
			t.Errorf("create record does not name alice: %s", recordText(r))
		}
		if r := findRecord(recs, "pr-42", "retire"); r["reason"] == nil || r["reason"] == "" || !regexp.MustCompile(`(?i)webhook|pull request|closed`).MatchString(recordText(r)) {
			t.Errorf("webhook retire record does not say why: %s", recordText(r))
		} else if !strings.Contains(recordText(r), `"carol"`) {
			t.Errorf("webhook retire record does not name who closed the pull request (carol): %s", recordText(r))
		}
		if r := findRecord(recs, "pr-43", "retire"); !strings.Contains(recordText(r), "platform-pat") {
			t.Errorf("API retire record does not name the admin: %s", recordText(r))
		}
		if r := findRecord(recs, "pr-44", "expire"); !regexp.MustCompile(`(?i)ttl|expire`).MatchString(fmt.Sprint(r["reason"])) {
			t.Errorf("expire record does not say why: %s", recordText(r))
		}
		for _, r := range recs {
			if txt := recordText(r); strings.Contains(txt, "eyJ") || strings.Contains(txt, previewWebhookSecret) {
				t.Errorf("an environment record holds a token or the webhook secret: %s", txt)
			}
		}
	})
}
