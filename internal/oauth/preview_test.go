package oauth

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// liveSet is a delegation.Resources of the previews named live.
type liveSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (l *liveSet) Live(r string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[r]
}

func (l *liveSet) set(r string, live bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[r] = live
}

const previewResource = "https://gw.example/env/pr-1/mcp"

// TestPreviewResource: resource= of a live preview is accepted (and the
// tokens issued carry it); an unknown or retired one is refused; without
// Options.Resources only production's resource is.
func TestPreviewResource(t *testing.T) {
	s, _, _ := newTestServer(t)
	if _, ok := s.resource(previewResource); ok {
		t.Fatal("a preview accepted without Options.Resources")
	}
	live := &liveSet{m: map[string]bool{previewResource: true}}
	s.o.Resources = live
	for asked, want := range map[string]bool{
		"https://gw.example/mcp":           true,
		"https://gw.example/mcp/":          true,
		previewResource:                    true,
		"https://gw.example/env/pr-2/mcp":  false,
		"https://elsewhere/env/pr-1/mcp":   false,
		"https://gw.example/env/pr-1/mcpx": false,
	} {
		if _, ok := s.resource(asked); ok != want {
			t.Errorf("resource %q accepted = %v, want %v", asked, ok, want)
		}
	}
	live.set(previewResource, false)
	if _, ok := s.resource(previewResource); ok {
		t.Error("a retired preview's resource accepted")
	}
}

// TestPreviewGrantEndsWithIt: a grant for a preview issues tokens for that
// preview; once it is retired, its refresh token is refused with
// "environment retired" and the grant's access tokens are revoked; a code
// for a retired preview is refused.
func TestPreviewGrantEndsWithIt(t *testing.T) {
	s, st, m := newTestServer(t)
	live := &liveSet{m: map[string]bool{previewResource: true}}
	s.o.Resources = live
	ctx := context.Background()
	redeem := func() (map[string]any, error) {
		v := oauth2.GenerateVerifier()
		code := "code-" + randomString(8)
		cr := codeRecord{
			Human: Human{Issuer: "https://idp.example", Subject: "alice"}, ClientID: "hc_1", RedirectURI: "http://127.0.0.1:5/cb",
			Challenge: oauth2.S256ChallengeFromVerifier(v), Resource: previewResource, Scopes: []string{"tool:*"}, ConsentAt: time.Now(), CheckedAt: time.Now(),
		}
		if err := s.putJSON(ctx, "oauth:code:"+hashKey(code), cr, codeTTL); err != nil {
			t.Fatal(err)
		}
		return s.redeemCode(ctx, url.Values{"code": {code}, "client_id": {"hc_1"}, "redirect_uri": {"http://127.0.0.1:5/cb"}, "code_verifier": {v}})
	}
	first, err := redeem()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.issued[len(m.issued)-1].Resource; got != previewResource {
		t.Fatalf("token issued for %q, want the preview %q", got, previewResource)
	}
	second, err := s.refresh(ctx, url.Values{"refresh_token": {first["refresh_token"].(string)}, "client_id": {"hc_1"}})
	if err != nil {
		t.Fatalf("refresh while the preview lives: %v", err)
	}
	if got := m.issued[len(m.issued)-1].Resource; got != previewResource {
		t.Fatalf("refreshed token for %q, want %q", got, previewResource)
	}

	live.set(previewResource, false)
	_, err = s.refresh(ctx, url.Values{"refresh_token": {second["refresh_token"].(string)}, "client_id": {"hc_1"}})
	var te *tokenError
	if !errors.As(err, &te) || te.code != "invalid_grant" || te.desc != "environment retired" {
		t.Fatalf("refresh after retirement: %v, want invalid_grant environment retired", err)
	}
	for _, iss := range m.issued {
		if revoked, _ := st.IsRevoked(ctx, iss.ID); !revoked {
			t.Errorf("access token %s of the retired preview's grant not revoked", iss.ID)
		}
	}
	if _, err := redeem(); !errors.As(err, &te) || te.code != "invalid_grant" || te.desc != "environment retired" {
		t.Fatalf("code for a retired preview: %v, want invalid_grant environment retired", err)
	}
}
