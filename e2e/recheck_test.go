package e2e

import (
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/agentharness/harness/internal/devissuer"
)

// switchableIdP serves a development issuer on a fixed address that a test
// can take down and bring back (connection refused in between).
type switchableIdP struct {
	t    *testing.T
	iss  *devissuer.Issuer
	addr string
	srv  *http.Server
}

func (p *switchableIdP) up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port was ours a moment ago; wait until it is free
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.srv = &http.Server{Handler: p.iss.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
}

func (p *switchableIdP) down() { _ = p.srv.Close() }

// pastRecheck waits until the last check at the IdP is older than
// oauth.recheck (1s in these tests).
func pastRecheck() { time.Sleep(1100 * time.Millisecond) }

// signedInCopilot registers a copilot and runs the whole front channel for
// user, returning the copilot and its first token answer.
func (s *oauthStack) signedInCopilot(t *testing.T, name, user string) (copilot, tokenAnswer) {
	t.Helper()
	id := registerClient(t, s.gw.URL, name, "http://127.0.0.1/cb")
	c := copilot{id: id, redirect: "http://127.0.0.1:54000/cb", verifier: oauth2.GenerateVerifier()}
	tok := s.redeem(t, c, s.codeFor(t, newBrowser(t), c, user))
	wantOK(t, name+" redemption", tok)
	return c, tok
}

// TestOAuthRefreshRechecksTheHuman: past oauth.recheck, a copilot's refresh
// asks the IdP first. A group removed there narrows the tools at once; a
// disabled user loses the grant; an unreachable IdP refuses the refresh but
// keeps the grant, and a later refresh works.
func TestOAuthRefreshRechecksTheHuman(t *testing.T) {
	idp := &switchableIdP{t: t, addr: freeAddr(t)}
	s := startOAuth(t, oauthOptions{
		recheck: "1s",
		issuer:  func(o *devissuer.Options) { o.Issuer = "http://" + idp.addr },
		serve: func(iss *devissuer.Issuer) {
			idp.iss = iss
			idp.up()
			t.Cleanup(idp.down)
		},
	})
	gw := s.gw.URL

	t.Run("group removed", func(t *testing.T) {
		c, tok := s.signedInCopilot(t, "Group Copilot", "bob")
		if names := listNames(t, connect(t, gw, tok.str("access_token"), eras[0])); !slices.Contains(names, "crm_delete_customer") {
			t.Fatalf("bob (admin) sees %v", names)
		}
		if err := s.iss.SetRoles("bob", []string{"support"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.iss.SetRoles("bob", []string{"admin"}) })
		pastRecheck()
		tok2 := s.refresh(t, c, tok.str("refresh_token"))
		wantOK(t, "refresh after the group change", tok2)
		if roles, _ := jwtClaims(t, tok2.str("access_token"))["roles"].([]any); !slices.Equal(roles, []any{"support"}) {
			t.Errorf("refreshed token roles = %v, want [support]", roles)
		}
		names := listNames(t, connect(t, gw, tok2.str("access_token"), eras[0]))
		slices.Sort(names)
		if !slices.Equal(names, []string{"crm_create_ticket", "crm_get_customer"}) {
			t.Errorf("tools/list after the group was removed = %v", names)
		}
	})

	t.Run("IdP down", func(t *testing.T) {
		c, tok := s.signedInCopilot(t, "Outage Copilot", "alice")
		pastRecheck()
		idp.down()
		a := s.refresh(t, c, tok.str("refresh_token"))
		idp.up()
		if a.status != http.StatusServiceUnavailable || a.str("error") != "temporarily_unavailable" || a.str("access_token") != "" {
			t.Fatalf("refresh with the IdP down: %d %v, want 503 temporarily_unavailable", a.status, a.body)
		}
		// The grant is kept: the same refresh token works once the IdP is back.
		wantOK(t, "refresh once the IdP is back", s.refresh(t, c, tok.str("refresh_token")))
	})

	t.Run("gateway's own secret refused", func(t *testing.T) {
		c, tok := s.signedInCopilot(t, "Misconfigured Copilot", "alice")
		pastRecheck()
		// The IdP no longer accepts the gateway's client secret: that is
		// the gateway's problem, not the human's; nothing is revoked.
		if err := s.iss.AddClient(devissuer.Client{ID: oauthLoginClient, Secret: "rotated-at-the-idp", RedirectURIs: []string{s.gw.URL + "/oauth/callback"}}); err != nil {
			t.Fatal(err)
		}
		a := s.refresh(t, c, tok.str("refresh_token"))
		if err := s.iss.AddClient(devissuer.Client{ID: oauthLoginClient, Secret: "s3cret-value", RedirectURIs: []string{s.gw.URL + "/oauth/callback"}}); err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusServiceUnavailable || a.str("error") != "temporarily_unavailable" {
			t.Fatalf("refresh with the gateway's secret refused: %d %v, want 503 temporarily_unavailable", a.status, a.body)
		}
		wantOK(t, "refresh once the secret is fixed", s.refresh(t, c, tok.str("refresh_token")))
	})

	t.Run("user disabled", func(t *testing.T) {
		c, tok := s.signedInCopilot(t, "Fired Copilot", "alice")
		if st := mcpStatus(t, gw, tok.str("access_token")); st != http.StatusOK {
			t.Fatalf("access token before: %d", st)
		}
		if err := s.iss.DisableUser("alice", true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.iss.DisableUser("alice", false) })
		pastRecheck()
		wantGrantError(t, "refresh of a disabled user", s.refresh(t, c, tok.str("refresh_token")), "invalid_grant")
		// The grant is revoked: its access token too, at once.
		waitRefused(t, gw, tok.str("access_token"), "access token of a disabled user")
		if err := s.iss.DisableUser("alice", false); err != nil {
			t.Fatal(err)
		}
		wantGrantError(t, "refresh after revocation", s.refresh(t, c, tok.str("refresh_token")), "invalid_grant")
	})
}

// TestOAuthRefreshWithoutIdPRefreshToken: an IdP that gives no refresh
// token cannot confirm the human later: past oauth.recheck the refresh is
// refused (invalid_grant) and the human signs in again.
func TestOAuthRefreshWithoutIdPRefreshToken(t *testing.T) {
	s := startOAuth(t, oauthOptions{recheck: "1s", issuer: func(o *devissuer.Options) { o.NoRefreshTokens = true }})
	c, tok := s.signedInCopilot(t, "Offline Copilot", "alice")
	pastRecheck()
	a := s.refresh(t, c, tok.str("refresh_token"))
	wantGrantError(t, "refresh without an IdP refresh token", a, "invalid_grant")
	waitRefused(t, s.gw.URL, tok.str("access_token"), "access token of a grant that must sign in again")
	// Signing in again works: a new grant.
	wantOK(t, "new sign-in", s.redeem(t, c, s.codeFor(t, newBrowser(t), c, "alice")))
}
