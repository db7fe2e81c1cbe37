package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/store"
)

// fakeMinter issues opaque "tokens" and remembers what it issued.
type fakeMinter struct {
	mu     sync.Mutex
	issued []delegation.Issued
	n      int
}

func (m *fakeMinter) Issue(_ context.Context, subj *delegation.Subject, agent string, scopes []string, ttl time.Duration) (string, delegation.Issued, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	now := time.Now()
	iss := delegation.Issued{ID: "jti-" + string(rune('a'+m.n)), Subject: subj.Subject, SubjectIssuer: subj.Issuer, Agent: agent,
		Scopes: scopes, IssuedAt: now, ExpiresAt: now.Add(ttl), Resource: subj.Resource}
	m.issued = append(m.issued, iss)
	return "access-" + iss.ID, iss, nil
}

func newTestServer(t *testing.T) (*Server, *store.Memory, *fakeMinter) {
	t.Helper()
	st := store.NewMemory()
	m := &fakeMinter{}
	s, err := New(Options{
		Issuer: "https://gw.example", Resource: "https://gw.example/mcp", KV: st, Revocations: st, Minter: m,
		Login: Login{Issuer: "https://idp.example", ClientID: "harness"}, AccessTTL: time.Hour, RefreshTTL: 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, st, m
}

func TestPKCE(t *testing.T) {
	v := oauth2.GenerateVerifier()
	ch := oauth2.S256ChallengeFromVerifier(v)
	if !pkceOK(v, ch) {
		t.Fatal("a verifier does not match its own S256 challenge")
	}
	for name, verifier := range map[string]string{
		"other verifier":                oauth2.GenerateVerifier(),
		"challenge as verifier (plain)": ch,
		"too short":                     "abc",
		"bad character":                 strings.Repeat("a", 42) + "+",
		"empty":                         "",
	} {
		if pkceOK(verifier, ch) {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestValidRedirectURI(t *testing.T) {
	for _, ok := range []string{"https://app.example.com/cb", "http://127.0.0.1/cb", "http://127.0.0.1:8123/cb", "http://[::1]:9/cb", "http://localhost:3000/x?y=1", "cursor://anysphere.cursor-mcp/oauth/callback", "com.example.app:/oauth2redirect"} {
		if err := validRedirectURI(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/relative", "http://app.example.com/cb", "https://app.example.com/cb#f", "https://user:pw@app.example.com/cb", "javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "https:///nohost", "http://127.0.0.2.example.com/cb"} {
		if err := validRedirectURI(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestRedirectMatches(t *testing.T) {
	reg := []string{"http://127.0.0.1/callback", "https://app.example.com/cb", "http://localhost:3000/cb", "cursor://x/cb"}
	for _, ok := range []string{
		"http://127.0.0.1/callback", "http://127.0.0.1:49152/callback", "http://127.0.0.1:1/callback",
		"https://app.example.com/cb", "http://localhost:3000/cb", "http://localhost:4000/cb", "cursor://x/cb",
	} {
		if !redirectMatches(reg, ok) {
			t.Errorf("%s refused", ok)
		}
	}
	for _, bad := range []string{
		"", "http://127.0.0.1:49152/callback/x", "http://127.0.0.1:49152/callback?x=1", "http://localhost:49152/callback",
		"https://127.0.0.1:49152/callback", "https://app.example.com:444/cb", "https://app.example.com/cb/", "https://app.example.com/CB",
		"http://127.0.0.1:49152/callback#f", "http://u@127.0.0.1:1/callback", "cursor://x/cb2", "http://[::1]:5/callback",
	} {
		if redirectMatches(reg, bad) {
			t.Errorf("%s accepted", bad)
		}
	}
}

// grantFor stores a consented code and redeems it, like /oauth/token.
func grantFor(t *testing.T, s *Server, verifier string) map[string]any {
	t.Helper()
	code := "code-" + randomString(8)
	cr := codeRecord{
		Human: Human{Issuer: "https://idp.example", Subject: "alice"}, ClientID: "hc_1", RedirectURI: "http://127.0.0.1:5/cb",
		Challenge: oauth2.S256ChallengeFromVerifier(verifier), Resource: "https://gw.example/mcp", Scopes: []string{"tool:*"}, ConsentAt: time.Now(), CheckedAt: time.Now(),
	}
	if err := s.putJSON(context.Background(), "oauth:code:"+hashKey(code), cr, codeTTL); err != nil {
		t.Fatal(err)
	}
	resp, err := s.redeemCode(context.Background(), url.Values{
		"code": {code}, "client_id": {"hc_1"}, "redirect_uri": {"http://127.0.0.1:5/cb"}, "code_verifier": {verifier},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func wantInvalidGrant(t *testing.T, what string, err error) {
	t.Helper()
	var te *tokenError
	if !errors.As(err, &te) || te.code != "invalid_grant" {
		t.Errorf("%s: err = %v, want invalid_grant", what, err)
	}
}

func TestRefreshRotationAndReuse(t *testing.T) {
	s, st, m := newTestServer(t)
	ctx := context.Background()
	first := grantFor(t, s, oauth2.GenerateVerifier())
	rt1, _ := first["refresh_token"].(string)
	if !strings.HasPrefix(rt1, refreshPrefix) {
		t.Fatalf("refresh token %q", rt1)
	}
	refresh := func(rt, client string) (map[string]any, error) {
		return s.refresh(ctx, url.Values{"refresh_token": {rt}, "client_id": {client}})
	}
	second, err := refresh(rt1, "hc_1")
	if err != nil {
		t.Fatal(err)
	}
	rt2, _ := second["refresh_token"].(string)
	if rt2 == "" || rt2 == rt1 {
		t.Fatal("the refresh token did not rotate")
	}
	// Refresh tokens are stored hashed, never in clear.
	if _, ok, _ := st.Get(ctx, "oauth:refresh:"+rt2); ok {
		t.Error("refresh token stored in clear")
	}
	third, err := refresh(rt2, "hc_1")
	if err != nil {
		t.Fatal(err)
	}
	rt3, _ := third["refresh_token"].(string)

	// rt1 again: reuse. The grant ends and every live access token is revoked.
	var revocations []string
	s.o.OnRevoke = func(_ context.Context, h Human, clientID, _, reason string) {
		revocations = append(revocations, h.Subject+" "+clientID+" "+reason)
	}
	_, err = refresh(rt1, "hc_1")
	wantInvalidGrant(t, "reused refresh token", err)
	if len(revocations) != 1 || revocations[0] != "alice hc_1 refresh token reused" {
		t.Errorf("revocations reported %q, want alice's grant for refresh token reuse", revocations)
	}
	for _, iss := range m.issued {
		if revoked, _ := st.IsRevoked(ctx, iss.ID); !revoked {
			t.Errorf("access token %s not revoked after reuse", iss.ID)
		}
	}
	_, err = refresh(rt3, "hc_1")
	wantInvalidGrant(t, "latest refresh token after reuse", err)
	if gs, _ := s.grantsOf(ctx, Human{Issuer: "https://idp.example", Subject: "alice"}); len(gs) != 0 {
		t.Errorf("grant still listed after reuse: %v", gs)
	}

	// Another client cannot use a refresh token (and spending it ends the grant).
	other := grantFor(t, s, oauth2.GenerateVerifier())
	_, err = refresh(other["refresh_token"].(string), "hc_2")
	wantInvalidGrant(t, "refresh by another client", err)
	_, err = refresh("hrt_unknown", "hc_1")
	wantInvalidGrant(t, "unknown refresh token", err)
}

func TestCodeSingleUseAndBound(t *testing.T) {
	s, st, m := newTestServer(t)
	ctx := context.Background()
	v := oauth2.GenerateVerifier()
	put := func() string {
		code := randomString(16)
		cr := codeRecord{Human: Human{Issuer: "https://idp.example", Subject: "bob"}, ClientID: "hc_1", RedirectURI: "https://app.example/cb",
			Challenge: oauth2.S256ChallengeFromVerifier(v), Resource: "https://gw.example/mcp", Scopes: []string{"tool:a"}, ConsentAt: time.Now()}
		if err := s.putJSON(ctx, "oauth:code:"+hashKey(code), cr, codeTTL); err != nil {
			t.Fatal(err)
		}
		return code
	}
	form := func(code string, mod func(url.Values)) url.Values {
		f := url.Values{"code": {code}, "client_id": {"hc_1"}, "redirect_uri": {"https://app.example/cb"}, "code_verifier": {v}}
		if mod != nil {
			mod(f)
		}
		return f
	}
	for name, mod := range map[string]func(url.Values){
		"other client":   func(f url.Values) { f.Set("client_id", "hc_2") },
		"other redirect": func(f url.Values) { f.Set("redirect_uri", "https://app.example/cb2") },
		"wrong verifier": func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) },
	} {
		code := put()
		_, err := s.redeemCode(ctx, form(code, mod))
		wantInvalidGrant(t, name, err)
		_, err = s.redeemCode(ctx, form(code, nil))
		wantInvalidGrant(t, name+", then the right request", err)
	}
	code := put()
	if _, err := s.redeemCode(ctx, form(code, func(f url.Values) { f.Set("resource", "https://elsewhere/mcp") })); err == nil {
		t.Error("wrong resource accepted")
	}
	code = put()
	if _, err := s.redeemCode(ctx, form(code, nil)); err != nil {
		t.Fatal(err)
	}
	_, err := s.redeemCode(ctx, form(code, nil))
	wantInvalidGrant(t, "reused code", err)
	last := m.issued[len(m.issued)-1]
	if revoked, _ := st.IsRevoked(ctx, last.ID); !revoked {
		t.Error("the token of a reused code is not revoked")
	}
}

func TestCSRF(t *testing.T) {
	s, _, _ := newTestServer(t)
	ss := &session{CSRF: "token-1"}
	check := func(form url.Values, origin string) bool {
		r := httptest.NewRequest(http.MethodPost, "https://gw.example/oauth/consent", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		return s.checkCSRF(r, ss)
	}
	if !check(url.Values{"csrf": {"token-1"}}, "") || !check(url.Values{"csrf": {"token-1"}}, "https://gw.example") {
		t.Error("the right token refused")
	}
	for name, c := range map[string]struct {
		form   url.Values
		origin string
	}{
		"missing":      {url.Values{}, ""},
		"empty":        {url.Values{"csrf": {""}}, ""},
		"wrong":        {url.Values{"csrf": {"token-2"}}, ""},
		"prefix":       {url.Values{"csrf": {"token-"}}, ""},
		"repeated":     {url.Values{"csrf": {"token-1", "token-1"}}, ""},
		"cross origin": {url.Values{"csrf": {"token-1"}}, "https://evil.example"},
		"http origin":  {url.Values{"csrf": {"token-1"}}, "http://gw.example"},
	} {
		if check(c.form, c.origin) {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestMetadataClientRefusesPrivateAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	if _, err := newMetadataClient(false, nil).Get(srv.URL + "/client.json"); err == nil || !strings.Contains(err.Error(), "non-public") {
		t.Errorf("loopback fetch without the allowance: %v", err)
	}
	resp, err := newMetadataClient(true, nil).Get(srv.URL + "/client.json")
	if err != nil {
		t.Fatalf("loopback fetch with the allowance: %v", err)
	}
	resp.Body.Close()
	s, _, _ := newTestServer(t)
	if s.isMetadataClientID(srv.URL+"/client.json") || !s.isMetadataClientID("https://app.example/client.json") {
		t.Error("http client ids must need the loopback allowance")
	}
}

func TestCookiesOnHTTPS(t *testing.T) {
	s, _, _ := newTestServer(t)
	w := httptest.NewRecorder()
	s.setCookie(w, sessionCookie, "v", time.Hour)
	c := w.Result().Cookies()[0]
	if c.Name != "__Host-harness_session" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie %+v", c)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1 hour", 24 * time.Hour: "24 hours", 90 * time.Minute: "1 hour 30 minutes",
		30 * time.Minute: "30 minutes", 72 * time.Hour: "3 days", 5 * time.Second: "5 seconds",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}
