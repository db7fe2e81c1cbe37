package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/app"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/devissuer"
	"github.com/agentharness/harness/internal/sampleapi"
	"github.com/agentharness/harness/internal/samplemcp"
)

// demoUser is a sample human of the demo.
type demoUser struct {
	sub, name, email string
	roles            []string
	tenant           string
	what             string
}

var demoUsers = []demoUser{
	{"alice", "Alice Support", "alice@acme.example", []string{"support"}, "acme", "support at acme: reads customers, orders and tickets of acme; writes tickets; refunds over 20.00 wait for an admin's approval"},
	{"bob", "Bob Admin", "bob@acme.example", []string{"admin"}, "", "admin: every tool"},
	{"carol", "Carol Viewer", "carol@globex.example", []string{"viewer"}, "globex", "viewer at globex: reads only"},
}

// demoAgent is the client id (azp) the demo tokens name.
const demoAgent = "demo-agent"

// demoUpstream is the sample API's upstream name: its tools' prefix and
// the audience of the assertions it verifies.
const demoUpstream = "crm"

// demoOAuthClient is the gateway's client id at the development issuer.
const demoOAuthClient = "harness-demo"

// The demo's preview environment: pull request #42 of acme/crm, branch
// feat-loyalty, opened by alice, the branch's author.
const (
	demoPreviewName = "pr-42"
	demoBranch      = "feat-loyalty"
	demoPR          = 42
	demoRepository  = "acme/crm"
	demoAuthor      = "alice"
	demoViewer      = "carol"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--listen ADDR] [flags]", stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address of the gateway (port 0 picks a free one)")
	auditPath := fs.String("audit", "", "audit file (default: a new file under the system temp directory)")
	tokenTTL := fs.Duration("token-ttl", 12*time.Hour, "life of the printed sample tokens")
	var lf logFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (try --listen 127.0.0.1:0)", *listen, err)
	}
	addr := ln.Addr().String()
	publicURL := "http://" + addr

	// The sample API accepts only calls that carry the gateway's assertion,
	// verified against its JWKS, as any upstream behind Harness should.
	apiURL, stopAPI, err := sampleapi.Start(ctx, "127.0.0.1:0", sampleapi.Verification{
		JWKSURL: publicURL + "/.well-known/jwks.json", Issuer: publicURL, Audience: demoUpstream,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("sample API: %w", err)
	}
	defer stopAPI(context.Background())
	// The branch's deployment: the sample API plus the branch's change. It
	// verifies the preview's assertions only (iss public_url/env/pr-42,
	// signed by the preview's own key), never production's.
	branchURL, stopBranch, err := sampleapi.StartBranch(ctx, "127.0.0.1:0", demoBranch, sampleapi.Verification{
		JWKSURL: publicURL + "/.well-known/jwks.json", Issuer: publicURL + "/env/" + demoPreviewName, Audience: demoUpstream,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("sample API (branch): %w", err)
	}
	defer stopBranch(context.Background())
	handbookURL, stopHandbook, err := samplemcp.Start(ctx, "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return fmt.Errorf("sample MCP server: %w", err)
	}
	defer stopHandbook(context.Background())

	// The development issuer doubles as the company IdP humans sign in at
	// when a copilot connects by OAuth (no password: pick a sample user).
	oauthSecret := randomHex(16)
	devUsers := make([]devissuer.User, 0, len(demoUsers))
	for _, u := range demoUsers {
		du := devissuer.User{Subject: u.sub, Name: u.name, Email: u.email, Roles: u.roles}
		if u.tenant != "" {
			du.Claims = map[string]any{"tenant": u.tenant}
		}
		devUsers = append(devUsers, du)
	}
	iss, err := devissuer.New(devissuer.Options{
		Users:   devUsers,
		Clients: []devissuer.Client{{ID: demoOAuthClient, Secret: oauthSecret, RedirectURIs: []string{publicURL + "/oauth/callback"}}},
	})
	if err != nil {
		ln.Close()
		return err
	}
	if err := iss.Start("127.0.0.1:0"); err != nil {
		ln.Close()
		return fmt.Errorf("development issuer: %w", err)
	}
	defer iss.Close()
	// A second development issuer stands for GitHub Actions' OIDC issuer:
	// the demo's "CI" creates the preview with a token of it, as a pull
	// request's workflow does (environments.ci_issuers).
	ci, err := devissuer.New(devissuer.Options{})
	if err != nil {
		ln.Close()
		return err
	}
	if err := ci.Start("127.0.0.1:0"); err != nil {
		ln.Close()
		return fmt.Errorf("development CI issuer: %w", err)
	}
	defer ci.Close()

	dir, err := os.MkdirTemp("", "harness-demo-")
	if err != nil {
		ln.Close()
		return err
	}
	if *auditPath == "" {
		*auditPath = filepath.Join(dir, "audit.log")
	}
	policyDir := filepath.Join(dir, "policy")
	if err := os.Mkdir(policyDir, 0o700); err != nil {
		ln.Close()
		return err
	}
	if err := writeDemoPolicy(policyDir); err != nil {
		ln.Close()
		return err
	}
	yaml := fmt.Sprintf(`listen: %q
public_url: %q
environment: demo
auth:
  issuers:
    - issuer: %q
      roles_claim: roles
upstreams:
  - name: %s
    base_url: %q
    openapi: %q
  - name: handbook
    mcp: %q
policy:
  dir: %q
audit:
  path: %q
oauth:
  login_issuer: %q
  client_id: %q
  client_secret: %q
environments:
  ci_issuers:
    - issuer: %q
      audiences: [%q]
      claims: {repository: %q, event_name: pull_request}
  admin_roles: [admin]
  allowed_upstreams: [%q]
  max_ttl: %s
  max: 5
`, addr, publicURL, iss.URL(), demoUpstream, apiURL, apiURL+"/openapi.json", handbookURL, policyDir, *auditPath, iss.URL(), demoOAuthClient, oauthSecret,
		ci.URL(), publicURL, demoRepository, branchURL, max(168*time.Hour, *tokenTTL))
	cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo config: %w", err)
	}

	tokens := make([]string, len(demoUsers))
	for i, u := range demoUsers {
		claims := map[string]any{
			"sub": u.sub, "name": u.name, "email": u.email, "roles": u.roles,
			"aud": cfg.ResourceURL(), "azp": demoAgent,
		}
		if u.tenant != "" {
			claims["tenant"] = u.tenant
		}
		if tokens[i], err = iss.Mint(claims, *tokenTTL); err != nil {
			ln.Close()
			return err
		}
	}
	log.Warn("DEMO MODE: a development issuer with an ephemeral key signs the sample tokens. Not for production.")
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	return serve(ctx, cfg, log, 5*time.Second, ln, func() {
		// The preview is created once the gateway serves, the way CI does
		// it: a PUT with the CI issuer's token. Then the printout.
		go func() {
			pv, err := openDemoPreview(bg, publicURL, branchURL, ci, iss, filepath.Join(dir, "ci-token"), *tokenTTL)
			if err != nil {
				if bg.Err() != nil {
					return
				}
				log.Error("the demo's preview environment could not be created", "err", err)
			}
			printDemo(stdout, cfg.ResourceURL(), apiURL, handbookURL, iss.URL(), *auditPath, tokens, pv)
		}()
	}, app.Options{})
}

// demoPreview is what the printout tells of the demo's preview.
type demoPreview struct {
	mcpURL, apiURL, ciIssuer string
	tokenFile                string // the CI token, for gateway env retire
	author, viewer           string // tokens for the preview's resource
}

// openDemoPreview creates the demo's preview environment through the
// environments API, as a pull request's CI job would: a GitHub-Actions-shaped
// token of the CI issuer (written to tokenFile, for retiring it later), the
// branch's deployment as its only upstream and a policy bundle making the
// branch's author an admin there. It then mints the author's and the
// viewer's tokens for the preview's protected resource.
func openDemoPreview(ctx context.Context, publicURL, branchURL string, ci, idp *devissuer.Issuer, tokenFile string, ttl time.Duration) (*demoPreview, error) {
	ref := fmt.Sprintf("refs/pull/%d/merge", demoPR)
	ciToken, err := ci.Mint(map[string]any{
		"sub": "repo:" + demoRepository + ":pull_request", "aud": publicURL,
		"repository": demoRepository, "repository_owner": strings.Split(demoRepository, "/")[0],
		"actor": demoAuthor, "ref": ref, "event_name": "pull_request", "head_ref": demoBranch, "base_ref": "main",
		"workflow_ref":     demoRepository + "/.github/workflows/preview.yml@" + ref,
		"job_workflow_ref": demoRepository + "/.github/workflows/preview.yml@" + ref,
	}, ttl)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(tokenFile, []byte(ciToken+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("CI token file: %w", err)
	}
	bundle, err := demoPreviewBundle()
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string]any{
		"branch": demoBranch, "pull_request": demoPR, "repository": demoRepository, "owner": demoAuthor,
		"ttl":           ttl.String(),
		"upstreams":     map[string]any{demoUpstream: map[string]string{"base_url": branchURL, "openapi": branchURL + "/openapi.json"}},
		"policy_bundle": base64.StdEncoding.EncodeToString(bundle),
	})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPut, publicURL+"/environments/"+demoPreviewName, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+ciToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("PUT /environments/%s: %w", demoPreviewName, err)
	}
	defer resp.Body.Close()
	var ans struct {
		MCPURL      string `json:"mcp_url"`
		Resource    string `json:"resource"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans); err != nil || resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("PUT /environments/%s: %s %s", demoPreviewName, resp.Status, ans.Description)
	}
	pv := &demoPreview{mcpURL: ans.MCPURL, apiURL: branchURL, ciIssuer: ci.URL(), tokenFile: tokenFile}
	// Tokens for the preview: its resource is their audience (minted after
	// it was created: a token issued before is refused there).
	for _, u := range demoUsers {
		var dst *string
		switch u.sub {
		case demoAuthor:
			dst = &pv.author
		case demoViewer:
			dst = &pv.viewer
		default:
			continue
		}
		claims := map[string]any{"sub": u.sub, "name": u.name, "email": u.email, "roles": u.roles, "aud": ans.Resource, "azp": demoAgent}
		if u.tenant != "" {
			claims["tenant"] = u.tenant
		}
		if *dst, err = idp.Mint(claims, ttl); err != nil {
			return nil, err
		}
	}
	return pv, nil
}

// printPreview writes the preview's part of the printout.
func printPreview(b *strings.Builder, base string, pv *demoPreview) {
	fmt.Fprintf(b, "Preview environment %s: pull request #%d of %s, branch %s, opened by CI as a pull request's\n", demoPreviewName, demoPR, demoRepository, demoBranch)
	fmt.Fprintf(b, "workflow does (PUT %s/environments/%s with a GitHub-Actions-shaped token of the CI issuer %s).\n", base, demoPreviewName, pv.ciIssuer)
	fmt.Fprintf(b, "  preview MCP    %s  (its own protected resource: production's tokens are refused there)\n", pv.mcpURL)
	fmt.Fprintf(b, "  branch API     %s  (its only upstream, \"crm\"; adds crm_get_customer_loyalty; it accepts\n                 only the preview's assertions: iss %s/env/%s, signed by the preview's own key)\n", pv.apiURL, base, demoPreviewName)
	fmt.Fprintf(b, "  policy         the branch's bundle: %s, the branch's author, is admin there; %s stays read-only\n\n", demoAuthor, demoViewer)
	fmt.Fprintf(b, "  export HARNESS_PREVIEW_TOKEN_%s=%s\n  export HARNESS_PREVIEW_TOKEN_%s=%s\n\n", strings.ToUpper(demoAuthor), pv.author, strings.ToUpper(demoViewer), pv.viewer)
	b.WriteString("  Retire it as CI does when the pull request closes (its tokens then get 401 \"environment retired\"):\n")
	fmt.Fprintf(b, "    gateway env retire %s --url %s --token-file %s\n", demoPreviewName, base, pv.tokenFile)
	fmt.Fprintf(b, "    or: curl -X DELETE %s/environments/%s -H \"Authorization: Bearer $(cat %s)\"\n\n", base, demoPreviewName, pv.tokenFile)
}

func printDemo(w io.Writer, mcpURL, apiURL, handbookURL, issuerURL, auditPath string, tokens []string, pv *demoPreview) {
	var b strings.Builder
	line := strings.Repeat("─", 78)
	fmt.Fprintf(&b, "\n%s\n Harness demo — NOT FOR PRODUCTION (development issuer, ephemeral keys)\n%s\n\n", line, line)
	fmt.Fprintf(&b, "  MCP endpoint   %s\n  sample API     %s  (upstream \"crm\", OpenAPI; only through the gateway: it verifies the gateway's assertion)\n  sample MCP     %s  (upstream \"handbook\", federated MCP server:\n                 tool handbook_search_handbook, handbook:// resources, prompt handbook_reply_to_customer)\n  dev issuer     %s\n  audit trail    %s\n\n", mcpURL, apiURL, handbookURL, issuerURL, auditPath)
	base := strings.TrimSuffix(mcpURL, "/mcp")
	b.WriteString("Connect a copilot by OAuth (no token to paste): give it only the MCP URL above.\n")
	b.WriteString("It discovers Harness, registers, and opens a browser: pick alice, bob or carol at the\n")
	b.WriteString("development issuer (no password), then approve the agent on the consent page.\n")
	fmt.Fprintf(&b, "  e.g. VS Code: {\"servers\": {\"harness\": {\"type\": \"http\", \"url\": %q}}}\n", mcpURL)
	fmt.Fprintf(&b, "  My agents (see and revoke): %s/oauth/agents\n\n", base)
	b.WriteString("Tokens for the sample users (agent \"" + demoAgent + "\"):\n\n")
	for i, u := range demoUsers {
		fmt.Fprintf(&b, "  %s — %s\n  export HARNESS_TOKEN_%s=%s\n\n", u.sub, u.what, strings.ToUpper(u.sub), tokens[i])
	}
	fmt.Fprintf(&b, "Approvals: alice's refunds over %d.%02d (crm_issue_refund with amount_cents > %d) are held\n", demoRefundLimit/100, demoRefundLimit%100, demoRefundLimit)
	b.WriteString("until an admin approves: the agent is told to approve at " + base + "/approvals/<id>; sign in there as\n")
	fmt.Fprintf(&b, "bob (inbox: %s/approvals), approve, and alice's agent repeats the call, which then runs once.\n\n", base)
	if pv != nil {
		printPreview(&b, base, pv)
	} else {
		b.WriteString("Preview environment: not created (see the log above).\n\n")
	}
	fmt.Fprintf(&b, "Try it:\n\n  curl -s %s -H \"Authorization: Bearer $HARNESS_TOKEN_ALICE\" \\\n", mcpURL)
	b.WriteString("    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\\n")
	b.WriteString("    -H 'Mcp-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/list' \\\n")
	b.WriteString(`    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'` + "\n\n")
	b.WriteString("Client configuration (alice's token; paste into the client's MCP settings):\n\n")
	fmt.Fprintf(&b, "  VS Code (.vscode/mcp.json):\n%s\n", indent(mustJSON(map[string]any{
		"servers": map[string]any{"harness": map[string]any{"type": "http", "url": mcpURL,
			"headers": map[string]string{"Authorization": "Bearer " + tokens[0]}}}}), "    "))
	fmt.Fprintf(&b, "  Cursor (~/.cursor/mcp.json):\n%s\n", indent(mustJSON(map[string]any{
		"mcpServers": map[string]any{"harness": map[string]any{"url": mcpURL,
			"headers": map[string]string{"Authorization": "Bearer " + tokens[0]}}}}), "    "))
	// As docs/clients.md shows it: no space inside args (some clients split
	// them), so the token travels in the environment.
	fmt.Fprintf(&b, "  Claude Desktop (claude_desktop_config.json, through the mcp-remote bridge):\n%s\n", indent(mustJSON(map[string]any{
		"mcpServers": map[string]any{"harness": map[string]any{"command": "npx",
			"args": []string{"-y", "mcp-remote", mcpURL, "--transport", "http-only", "--header", "Authorization:${HARNESS_AUTH}"},
			"env":  map[string]string{"HARNESS_AUTH": "Bearer " + tokens[0]}}}}), "    "))
	fmt.Fprintf(&b, "Then: gateway audit show %s\n%s\n", auditPath, line)
	_, _ = io.WriteString(w, b.String())
}

func mustJSON(v any) string {
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre) + "\n"
}
