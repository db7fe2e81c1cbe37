package e2e

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

var (
	hrefRe = regexp.MustCompile(`href="([^"]+)" data-testid="(retry|return)"`)
)

// TestOAuthSignInFailureNamesTheCause: the gateway's client secret at the
// IdP is wrong. The human gets a page naming the cause, a request id, a
// retry link and a link back to the copilot carrying error=server_error
// with state and iss, so the copilot stops waiting.
func TestOAuthSignInFailureNamesTheCause(t *testing.T) {
	s := startOAuth(t, oauthOptions{idpSecret: "another-secret"})
	id := registerClient(t, s.gw.URL, "Stuck Copilot", "http://127.0.0.1/cb")
	c := copilot{id: id, redirect: "http://127.0.0.1:55000/cb", verifier: oauth2.GenerateVerifier()}
	resp, page := newBrowser(t).follow(s.authorizeURL(c, "st-x", "", "alice"), s.gw.URL, s.iss.URL())
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Request.URL.Path, "/oauth/callback") {
		t.Fatalf("callback with a wrong client secret: %d at %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	if !strings.Contains(page, "client secret") || !strings.Contains(page, "tell your administrator") {
		t.Errorf("the page does not name the cause:\n%s", page)
	}
	if rid := resp.Header.Get("X-Request-Id"); rid == "" || !strings.Contains(page, rid) {
		t.Errorf("the page lacks the request id %q", rid)
	}
	links := map[string]string{}
	for _, m := range hrefRe.FindAllStringSubmatch(page, -1) {
		links[m[2]] = html.UnescapeString(m[1])
	}
	ret, err := url.Parse(links["return"])
	if err != nil || !strings.HasPrefix(links["return"], c.redirect) {
		t.Fatalf("return link %q", links["return"])
	}
	if q := ret.Query(); q.Get("error") != "server_error" || q.Get("state") != "st-x" || q.Get("iss") != s.gw.URL {
		t.Errorf("return link query %v: want error=server_error, state and iss", q)
	}
	if !strings.HasPrefix(links["retry"], "/oauth/consent?request=") {
		t.Errorf("retry link %q", links["retry"])
	}
	waitLogs(t, s.gw.process, "sign-in at the login issuer failed", "invalid_client")
}

// TestOAuthNoRolesClaim: the ID token lacks roles_claim. The gateway logs
// a warning naming the claim and the scope that usually releases it, and
// the consent page says the IdP sent no roles.
func TestOAuthNoRolesClaim(t *testing.T) {
	s := startOAuth(t, oauthOptions{rolesClaim: "groups"})
	id := registerClient(t, s.gw.URL, "Roleless Copilot", "http://127.0.0.1/cb")
	c := copilot{id: id, redirect: "http://127.0.0.1:55001/cb", verifier: oauth2.GenerateVerifier()}
	page, _, _, _ := s.toConsent(t, newBrowser(t), c, "st-n", "", "alice")
	if !strings.Contains(page, `data-testid="no-roles"`) || !strings.Contains(page, "sent no roles") || !strings.Contains(page, "groups") {
		t.Errorf("consent page does not say the IdP sent no roles:\n%s", page)
	}
	waitLogs(t, s.gw.process, "has no roles claim", "roles_claim=groups", "groups scope")
}

// waitLogs waits until every one of wants is in p's output (logs travel
// through a pipe: a line written before an answer may be read after it).
func waitLogs(t *testing.T, p *process, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs, missing := p.logs.String(), ""
		for _, w := range wants {
			if !strings.Contains(logs, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the log lacks %q", missing)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
