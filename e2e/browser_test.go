package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// The browser tests drive a real headless Chromium through the pages a
// human sees: the development IdP's user picker, the consent page and "My
// agents". They need Chromium (`apt-get install chromium`; .ci/run installs
// it) and fail without it: a missing browser is not a reason to skip.

// screenshotDir is where the browser tests write the screenshots the
// documentation shows (docs/oauth.md, "Screenshots").
var screenshotDir = filepath.Join("..", "docs", "screenshots")

const (
	browserWidth  = 1280
	browserHeight = 900
	// pageTime is the layout of the times the pages show ("when" in
	// internal/oauth/pages.go).
	pageTime = "2 Jan 2006, 15:04 MST"
)

// chromiumPath finds the browser: $HARNESS_CHROMIUM, else chromium on PATH
// (Debian's package), else the other usual names.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HARNESS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the browser tests need Chromium: apt-get install -y chromium (.ci/run installs it), or set HARNESS_CHROMIUM")
	return ""
}

// newChromium starts a headless Chromium with a fresh profile and returns
// the context of its first tab, bounded by d. The browser is stopped and its
// profile removed at cleanup.
func newChromium(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	profile, err := os.MkdirTemp("", "harness-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(browserWidth, browserHeight),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true), // only 127.0.0.1, never a proxy
		chromedp.Flag("lang", "en-US"),
		chromedp.CombinedOutput(logs),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), d)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(f string, a ...any) {
		fmt.Fprintf(logs, "chromedp: "+f+"\n", a...)
	}))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
		cancelTimeout()
		if t.Failed() {
			t.Logf("--- chromium output ---\n%s", logs.String())
		}
		// Chromium's helpers can still write to the profile for a moment.
		deadline := time.Now().Add(10 * time.Second)
		for os.RemoveAll(profile) != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	})
	// Start the browser now; a viewport of exactly 1280×900 at scale 1 makes
	// the screenshots the same size on every machine.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(browserWidth, browserHeight)); err != nil {
		t.Fatalf("starting Chromium (%s): %v\n%s", exe, err, logs.String())
	}
	return tab
}

// do runs browser actions and fails the test with what went wrong.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s: %v (browser at %s)", what, err, loc)
	}
}

// get runs one browser action with a result.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// attrs is the value of attribute name on every element matching css (at
// least one must match).
func attrs(t *testing.T, ctx context.Context, css, name string) []string {
	t.Helper()
	all := get(t, ctx, "attributes of "+css, chromedp.AttributesAll(chromedp.CSSAll(css)))
	out := make([]string, 0, len(all))
	for _, a := range all {
		out = append(out, a[name])
	}
	return out
}

// text is the visible text of the first element matching css.
func text(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	return strings.Join(strings.Fields(get(t, ctx, "text of "+css, chromedp.Text(chromedp.CSS(css)))), " ")
}

// screenshot captures the whole page (1280 wide) as name, in
// docs/screenshots when HARNESS_UPDATE_SCREENSHOTS is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() != browserWidth || b.Dy() < 300 {
		t.Errorf("screenshot %s is %dx%d, want %d wide", name, b.Dx(), b.Dy(), browserWidth)
	}
	// The documentation's copies change only on request:
	// HARNESS_UPDATE_SCREENSHOTS=1 go test -run TestBrowser ./e2e/
	dir := t.TempDir()
	if os.Getenv("HARNESS_UPDATE_SCREENSHOTS") != "" {
		dir = screenshotDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantStyled checks that the stylesheet applied (the CSP lets 'self'
// styles in) and that nothing overflows the 1280-pixel viewport sideways.
func wantStyled(t *testing.T, ctx context.Context, page, css, wantBackground string) {
	t.Helper()
	bg := get(t, ctx, page+" style", chromedp.Evaluate[string](
		fmt.Sprintf(`getComputedStyle(document.querySelector(%q)).backgroundColor`, css)))
	if bg != wantBackground {
		t.Errorf("%s: %s has background %q, want %q (stylesheet not applied?)", page, css, bg, wantBackground)
	}
	overflow := get(t, ctx, page+" width", chromedp.Evaluate[int](`document.documentElement.scrollWidth - document.documentElement.clientWidth`))
	if overflow > 0 {
		t.Errorf("%s overflows the %d-pixel viewport by %d pixels", page, browserWidth, overflow)
	}
}

// redirectSink is the copilot's loopback redirect URI: it records every
// authorization response and shows a page the browser can be seen to reach.
type redirectSink struct {
	URL string // the redirect URI
	got chan url.Values
}

func newRedirectSink(t *testing.T) *redirectSink {
	t.Helper()
	s := &redirectSink{got: make(chan url.Values, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.got <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Browser Copilot</title><p id="returned">Back in the application. You can close this window.</p>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/callback"
	return s
}

// next is the next authorization response the sink received.
func (s *redirectSink) next(t *testing.T) url.Values {
	t.Helper()
	select {
	case q := <-s.got:
		return q
	case <-time.After(15 * time.Second):
		t.Fatal("the redirect URI received no authorization response")
		return nil
	}
}

// parseWhen reads a time as the pages show it.
func parseWhen(t *testing.T, what, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(pageTime, strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("%s: %q is not a time like %q: %v", what, s, pageTime, err)
	}
	return tm
}

// wantMinuteBetween checks that tm (shown to the minute) lies in [lo, hi].
func wantMinuteBetween(t *testing.T, what string, tm, lo, hi time.Time) {
	t.Helper()
	if tm.Before(lo.Truncate(time.Minute)) || tm.After(hi) {
		t.Errorf("%s = %s, want between %s and %s", what, tm.Format(pageTime), lo.UTC().Format(pageTime), hi.UTC().Format(pageTime))
	}
}

// TestBrowserConsentAndMyAgents is the human's side of OAuth in a real
// browser: a copilot registers and sends the human to /oauth/authorize; the
// human picks a user at the development IdP, reads the consent page and
// clicks Allow; the copilot gets a code and uses the token over MCP. Then
// "My agents" shows the copilot and Revoke ends its access; a second
// authorization the human denies gives the copilot access_denied.
func TestBrowserConsentAndMyAgents(t *testing.T) {
	ctx := newChromium(t, 50*time.Second) // first: no Chromium, no stack
	s := startOAuthStack(t)
	gw := s.gw.URL
	sink := newRedirectSink(t)
	id := registerClient(t, gw, "Browser Copilot", sink.URL)
	c := copilot{id: id, redirect: sink.URL, verifier: oauth2.GenerateVerifier()}
	allTools := []string{"crm_create_ticket", "crm_delete_customer", "crm_get_customer", "crm_list_invoices"}

	// 1. Authorize: the IdP's user picker (no login_hint), then consent.
	before := time.Now()
	do(t, ctx, "open the authorization URL",
		chromedp.Navigate(s.authorizeURL(c, "st-browser", "", "", "login_hint")),
		chromedp.WaitVisible(chromedp.ID("user-bob")))
	if loc := get(t, ctx, "location", chromedp.Location()); !strings.HasPrefix(loc, s.iss.URL()+"/authorize") {
		t.Fatalf("not at the IdP's sign-in page: %s", loc)
	}
	if got := attrs(t, ctx, `[data-testid="dev-user"]`, "value"); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("IdP offers users %v, want alice and bob", got)
	}
	do(t, ctx, "sign in as bob at the IdP",
		chromedp.Click(chromedp.ID("user-bob")),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="consent"]`)))
	after := time.Now()
	loc, _ := url.Parse(get(t, ctx, "location", chromedp.Location()))
	if loc == nil || loc.Scheme+"://"+loc.Host != gw || loc.Path != "/oauth/consent" {
		t.Fatalf("not on the gateway's consent page: %v", loc)
	}

	if got := text(t, ctx, `[data-testid="client-name"]`); got != "Browser Copilot" {
		t.Errorf("client name %q", got)
	}
	if got := text(t, ctx, `[data-testid="client-id"]`); got != id {
		t.Errorf("client id %q, want %q", got, id)
	}
	if got, want := text(t, ctx, `[data-testid="redirect-host"]`), strings.TrimPrefix(sink.URL, "http://"); !strings.Contains(want, got) || !strings.Contains(got, "127.0.0.1:") {
		t.Errorf("returns to %q, want the host of %s", got, sink.URL)
	}
	human := text(t, ctx, `[data-testid="human"]`)
	for _, want := range []string{"Bob Admin", "bob@acme.example", "admin"} {
		if !strings.Contains(human, want) {
			t.Errorf("consent 'acting for' = %q, lacks %q", human, want)
		}
	}
	if got := text(t, ctx, `[data-testid="signed-in-as"]`); !strings.Contains(got, "Bob Admin") {
		t.Errorf("header shows %q, want Bob Admin signed in", got)
	}
	dur := text(t, ctx, `[data-testid="duration"]`)
	if !strings.Contains(dur, "(2 hours)") || !strings.Contains(dur, "30 minutes each") {
		t.Errorf("duration %q: want refresh_ttl 2 hours and access_ttl 30 minutes", dur)
	}
	if i, j := strings.Index(dur, "Until "), strings.Index(dur, " ("); i < 0 || j < i {
		t.Errorf("duration %q names no end", dur)
	} else {
		wantMinuteBetween(t, "consent: until", parseWhen(t, "consent: until", dur[i+len("Until "):j]), before.Add(2*time.Hour), after.Add(2*time.Hour))
	}
	if got := text(t, ctx, `[data-testid="scopes"]`); got != "tool:*" {
		t.Errorf("scope %q, want the default tool:*", got)
	}
	// The tools, grouped by tag (the default policy lets an admin use all four).
	if got := attrs(t, ctx, `[data-testid="tool-group"]`, "data-tag"); !slices.Equal(got, []string{"billing", "customers", "tickets"}) {
		t.Errorf("tool groups %v", got)
	}
	for tag, want := range map[string][]string{
		"billing":   {"crm_list_invoices"},
		"customers": {"crm_delete_customer", "crm_get_customer"},
		"tickets":   {"crm_create_ticket"},
	} {
		if got := attrs(t, ctx, fmt.Sprintf(`[data-testid="tool-group"][data-tag=%q] [data-testid="tool"]`, tag), "data-tool"); !slices.Equal(got, want) {
			t.Errorf("group %s holds %v, want %v", tag, got, want)
		}
	}
	if got := text(t, ctx, `[data-testid="tool-count"]`); got != "4" {
		t.Errorf("tool count %q", got)
	}
	for tool, want := range map[string][2]string{
		"crm_delete_customer": {"pill write", "Delete a customer"},
		"crm_get_customer":    {"pill read", "Read one customer"},
	} {
		sel := fmt.Sprintf(`[data-tool=%q]`, tool)
		if got := attrs(t, ctx, sel+" .pill", "class"); !slices.Equal(got, []string{want[0]}) {
			t.Errorf("%s is marked %v, want %q", tool, got, want[0])
		}
		if got := text(t, ctx, sel); !strings.Contains(got, want[1]) {
			t.Errorf("%s shown as %q, without its summary %q", tool, got, want[1])
		}
	}
	do(t, ctx, "consent buttons", chromedp.WaitVisible(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.ID("deny")))
	wantStyled(t, ctx, "consent page", "#approve", "rgb(29, 78, 216)")
	screenshot(t, ctx, "consent.png")

	// Allow: the browser lands on the copilot's redirect URI with code, state and iss.
	do(t, ctx, "click Allow", chromedp.Click(chromedp.ID("approve")), chromedp.WaitVisible(chromedp.ID("returned")))
	landed, _ := url.Parse(get(t, ctx, "location", chromedp.Location()))
	if landed == nil || !strings.HasPrefix(landed.String(), sink.URL+"?") {
		t.Fatalf("after Allow the browser is at %v, want %s", landed, sink.URL)
	}
	q := sink.next(t)
	if q.Get("code") == "" || q.Get("state") != "st-browser" || q.Get("iss") != gw || q.Get("error") != "" {
		t.Fatalf("authorization response %v: want code, state st-browser and iss %s", q, gw)
	}
	if landed.Query().Get("code") != q.Get("code") {
		t.Errorf("the browser's URL and the copilot disagree on the code")
	}

	// The copilot redeems the code and lists its tools over MCP.
	tok := s.redeem(t, c, q.Get("code"))
	wantOK(t, "code redemption", tok)
	access := tok.str("access_token")
	if cl := jwtClaims(t, access); cl["sub"] != "bob" || cl["aud"] != gw+"/mcp" {
		t.Errorf("access token claims %v", cl)
	}
	mc := connect(t, gw, access, eras[0])
	names := listNames(t, mc)
	slices.Sort(names)
	if !slices.Equal(names, allTools) {
		t.Errorf("tools/list with the browser-approved token = %v, want %v", names, allTools)
	}
	if r := callTool(t, mc, "crm_get_customer", map[string]any{"id": "c-7"}); r.IsError || !strings.Contains(resultText(r), "Ada") {
		t.Errorf("call with the browser-approved token: %v %q", r.IsError, resultText(r))
	}

	// 2. My agents, in the same browser session: no second sign-in.
	do(t, ctx, "open My agents",
		chromedp.Navigate(gw+"/oauth/agents"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="agent"]`)))
	if got := attrs(t, ctx, `[data-testid="agent"]`, "data-client-id"); !slices.Equal(got, []string{id}) {
		t.Fatalf("My agents lists %v, want only %s", got, id)
	}
	grant := attrs(t, ctx, `[data-testid="agent"]`, "data-grant")[0]
	if got := text(t, ctx, `[data-testid="agent"] h2`); got != "Browser Copilot" {
		t.Errorf("agent name %q", got)
	}
	since := parseWhen(t, "since", text(t, ctx, `[data-testid="since"]`))
	wantMinuteBetween(t, "since", since, before, time.Now())
	if until := parseWhen(t, "until", text(t, ctx, `[data-testid="until"]`)); until.Sub(since) != 2*time.Hour {
		t.Errorf("until %s, want since + refresh_ttl (2h) = %s", until.Format(pageTime), since.Add(2*time.Hour).Format(pageTime))
	}
	if got := text(t, ctx, `[data-testid="last-used"]`); !strings.Contains(got, "1 access token live") {
		t.Errorf("last token %q, want one live access token", got)
	}
	tools := attrs(t, ctx, `[data-testid="agent"] [data-testid="tool"]`, "data-tool")
	slices.Sort(tools)
	if !slices.Equal(tools, allTools) {
		t.Errorf("My agents shows tools %v, want %v", tools, allTools)
	}
	do(t, ctx, "agent's tools and Revoke visible",
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="agent"] [data-tool="crm_get_customer"]`)),
		chromedp.WaitVisible(chromedp.ID("revoke-"+grant)))
	wantStyled(t, ctx, "My agents", "#revoke-"+grant, "rgb(255, 255, 255)")
	screenshot(t, ctx, "my-agents.png")

	if st := mcpStatus(t, gw, access); st != http.StatusOK {
		t.Fatalf("access token before Revoke: status %d", st)
	}
	do(t, ctx, "click Revoke",
		chromedp.Click(chromedp.ID("revoke-"+grant)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="revoked-notice"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="no-agents"]`)))
	if page := get(t, ctx, "My agents after Revoke", chromedp.OuterHTML(chromedp.CSS(`[data-testid="agents"]`))); strings.Contains(page, grant) || strings.Contains(page, id) {
		t.Errorf("the revoked agent is still on My agents:\n%s", page)
	}
	waitRefused(t, gw, access, "access token after Revoke on My agents")
	wantGrantError(t, "refresh after Revoke on My agents", s.refresh(t, c, tok.str("refresh_token")), "invalid_grant")

	// 3. Deny: a second authorization (already signed in) → Deny → access_denied.
	do(t, ctx, "second authorization",
		chromedp.Navigate(s.authorizeURL(c, "st-deny", "", "", "login_hint")),
		chromedp.WaitVisible(chromedp.ID("deny")))
	if got := text(t, ctx, `[data-testid="client-name"]`); got != "Browser Copilot" {
		t.Errorf("second consent names %q", got)
	}
	do(t, ctx, "click Deny", chromedp.Click(chromedp.ID("deny")), chromedp.WaitVisible(chromedp.ID("returned")))
	q = sink.next(t)
	if q.Get("error") != "access_denied" || q.Get("state") != "st-deny" || q.Get("iss") != gw || q.Get("code") != "" {
		t.Errorf("after Deny the copilot got %v, want error=access_denied, state st-deny, iss %s and no code", q, gw)
	}
	if landed, _ := url.Parse(get(t, ctx, "location", chromedp.Location())); landed == nil || landed.Query().Get("error") != "access_denied" {
		t.Errorf("after Deny the browser is at %v", landed)
	}
	do(t, ctx, "My agents after Deny",
		chromedp.Navigate(gw+"/oauth/agents"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="no-agents"]`)))
}

// TestBrowserSignInFailure: the gateway's client secret at the IdP is
// wrong. In a real browser the human lands on a page that names the cause,
// with the request id, a retry link and a link back to the copilot; that
// link gives the copilot error=server_error with state and iss.
func TestBrowserSignInFailure(t *testing.T) {
	ctx := newChromium(t, 50*time.Second)
	s := startOAuth(t, oauthOptions{idpSecret: "not-the-gateways-secret"})
	sink := newRedirectSink(t)
	id := registerClient(t, s.gw.URL, "Browser Copilot", sink.URL)
	c := copilot{id: id, redirect: sink.URL, verifier: oauth2.GenerateVerifier()}

	do(t, ctx, "authorize; the IdP signs alice in and returns to the gateway",
		chromedp.Navigate(s.authorizeURL(c, "st-fail", "", "alice")),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="signin-failed"]`)))
	if cause := text(t, ctx, `[data-testid="cause"]`); !strings.Contains(cause, "client secret") || !strings.Contains(cause, "tell your administrator") {
		t.Errorf("cause %q does not name the client secret", cause)
	}
	if rid := text(t, ctx, `[data-testid="request-id"]`); rid == "" {
		t.Error("no request id on the page")
	} else {
		waitLogs(t, s.gw.process, rid, "invalid_client")
	}
	if got := attrs(t, ctx, `[data-testid="retry"]`, "href"); len(got) != 1 || !strings.HasPrefix(got[0], "/oauth/consent?request=") {
		t.Errorf("retry link %v", got)
	}
	wantStyled(t, ctx, "sign-in failure", `[data-testid="retry"]`, "rgb(29, 78, 216)")
	screenshot(t, ctx, "signin-failed.png")

	do(t, ctx, "return to the application",
		chromedp.Click(chromedp.CSS(`[data-testid="return"]`)),
		chromedp.WaitVisible(chromedp.ID("returned")))
	q := sink.next(t)
	if q.Get("error") != "server_error" || q.Get("state") != "st-fail" || q.Get("iss") != s.gw.URL || q.Get("code") != "" {
		t.Errorf("the copilot got %v, want error=server_error with state and iss", q)
	}
}

// TestBrowserApproval: an approver signs in at the IdP from the link the
// agent got, sees the held call and approves it; the agent's retry runs.
func TestBrowserApproval(t *testing.T) {
	ctx := newChromium(t, 50*time.Second)
	s := startApprovalStack(t, "", "")
	agent := s.agent(t, "alice", "copilot-a", []string{"support"}, eras[0], false)
	refund := map[string]any{"order_id": "o-42", "amount": 180, "card_number": "4111111111111111"}
	link, _ := wantHeld(t, "refund", callTool(t, agent, "shop_issue_refund", refund), "refunds over 100 EUR need an admin's approval")

	do(t, ctx, "open the approval link",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("user-bob")))
	do(t, ctx, "sign in as bob at the IdP",
		chromedp.Click(chromedp.ID("user-bob")),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="approval"]`)))
	if loc := get(t, ctx, "location", chromedp.Location()); loc != link {
		t.Fatalf("after sign-in at %s, want %s", loc, link)
	}
	for css, want := range map[string]string{
		`[data-testid="approval-human"]`:  "alice@acme.example",
		`[data-testid="approval-agent"]`:  "copilot-a",
		`[data-testid="approval-tool"]`:   "shop_issue_refund",
		`[data-testid="approval-reason"]`: "refunds over 100 EUR need an admin's approval",
		`[data-testid="approval-status"]`: "pending",
	} {
		if got := text(t, ctx, css); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want %q", css, got, want)
		}
	}
	args := text(t, ctx, `[data-testid="approval-arguments"]`)
	if !strings.Contains(args, "180") || strings.Contains(args, "4111111111111111") {
		t.Errorf("arguments shown %q: want the amount, not the card number", args)
	}
	wantStyled(t, ctx, "approval page", "#approve", "rgb(29, 78, 216)")
	screenshot(t, ctx, "approval.png")
	do(t, ctx, "approve",
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="approval-done"]`)))
	if got := text(t, ctx, `[data-testid="approval-status"]`); !strings.Contains(got, "approved by bob@acme.example") {
		t.Errorf("status after approving: %q", got)
	}
	if res := callTool(t, agent, "shop_issue_refund", refund); res.IsError || s.refunds.Load() != 1 {
		t.Fatalf("retry after approval: %q, %d refunds", resultText(res), s.refunds.Load())
	}
}
