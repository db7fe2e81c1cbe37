package delegation

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExchangeSuccess(t *testing.T) {
	e := newEnv(t)
	f := e.form(e.humanToken(t, nil), e.agentToken(t, "agent-42"), "tool:crm_* tool:billing_get_invoice tool:crm_*")
	f.Add("resource", testAudience)
	f.Add("audience", testIssuer)
	f.Set("requested_token_type", TokenTypeAccessToken)
	rep := e.mustExchange(t, f)

	if rep.IssuedTokenType != TokenTypeAccessToken || rep.TokenType != "Bearer" {
		t.Errorf("issued_token_type/token_type = %q/%q", rep.IssuedTokenType, rep.TokenType)
	}
	if rep.ExpiresIn != 900 {
		t.Errorf("expires_in = %d, want 900", rep.ExpiresIn)
	}
	if rep.Scope != "tool:crm_* tool:billing_get_invoice" {
		t.Errorf("scope = %q", rep.Scope)
	}
	hdr, c := stdVerify(t, jwks(t, e.keys), rep.AccessToken)
	if hdr["typ"] != "at+jwt" {
		t.Errorf("typ = %v", hdr["typ"])
	}
	now := float64(e.clock.Now().Unix())
	want := map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "alice", "sub_iss": idpIssuer,
		"act": map[string]any{"sub": "agent-42"}, "client_id": "agent-42",
		"scope": rep.Scope, "email": "alice@example.test", "name": "Alice",
		"roles": []any{"support"}, "iat": now, "nbf": now, "exp": now + 900,
	}
	for k, v := range want {
		if !reflect.DeepEqual(c[k], v) {
			t.Errorf("claim %s = %#v, want %#v", k, c[k], v)
		}
	}
	if jti, _ := c["jti"].(string); jti == "" {
		t.Error("no jti")
	}

	got, err := e.ex.VerifyDelegation(context.Background(), rep.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "alice" || got.SubjectIssuer != idpIssuer || got.Agent != "agent-42" || len(got.Actors) != 0 ||
		got.ID != c["jti"] || !got.ExpiresAt.Equal(e.clock.Now().Add(15*time.Minute)) ||
		!reflect.DeepEqual(got.Scopes, []string{"tool:crm_*", "tool:billing_get_invoice"}) ||
		!reflect.DeepEqual(got.Roles, []string{"support"}) || got.Email != "alice@example.test" {
		t.Errorf("claims = %+v", got)
	}
	if len(e.issued) != 1 || e.issued[0].ID != got.ID || e.issued[0].Agent != "agent-42" || e.issued[0].Subject != "alice" {
		t.Errorf("OnIssue got %+v", e.issued)
	}
}

func TestExchangeAgentFromSubjectToken(t *testing.T) {
	e := newEnv(t)
	rep := e.mustExchange(t, e.form(e.humanToken(t, map[string]any{"azp": "cursor"}), "", "tool:crm_get_customer"))
	c, err := e.ex.VerifyDelegation(context.Background(), rep.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent != "cursor" {
		t.Errorf("agent = %q, want the subject token's agent claim", c.Agent)
	}
}

func TestExchangeErrors(t *testing.T) {
	e := newEnv(t)
	human := e.humanToken(t, nil)
	agent := e.agentToken(t, "agent-42")
	valid := func() url.Values { return e.form(human, agent, "tool:crm_*") }
	with := func(mod func(url.Values)) string { f := valid(); mod(f); return f.Encode() }
	delegated := e.mustExchange(t, valid()).AccessToken
	revoked := e.mustExchange(t, valid()).AccessToken
	if w := post(t, e.ex.RevokeHandler(), url.Values{"token": {revoked}}.Encode()); w.Code != http.StatusOK {
		t.Fatalf("revoke: %d", w.Code)
	}
	e.verifier.fixed["no-exp"] = &Subject{Issuer: idpIssuer, Subject: "alice", Agent: "a", Claims: map[string]any{}}
	e.verifier.fixed["no-sub"] = &Subject{Issuer: idpIssuer, Agent: "a", Claims: map[string]any{"exp": float64(t0.Add(time.Hour).Unix())}}

	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        string
		wantStatus  int
		wantErr     string
	}{
		{name: "bad grant type", body: with(func(f url.Values) { f.Set("grant_type", "client_credentials") }), wantErr: "unsupported_grant_type"},
		{name: "missing grant type", body: with(func(f url.Values) { f.Del("grant_type") }), wantErr: "invalid_request"},
		{name: "missing subject token", body: with(func(f url.Values) { f.Del("subject_token") }), wantErr: "invalid_request"},
		{name: "missing subject token type", body: with(func(f url.Values) { f.Del("subject_token_type") }), wantErr: "invalid_request"},
		{name: "saml subject token type", body: with(func(f url.Values) { f.Set("subject_token_type", "urn:ietf:params:oauth:token-type:saml2") }), wantErr: "invalid_request"},
		{name: "forged subject token", body: with(func(f url.Values) { f.Set("subject_token", tamper(t, human, "sub", "admin")) }), wantErr: "invalid_grant"},
		{name: "expired subject token", body: with(func(f url.Values) {
			f.Set("subject_token", e.humanToken(t, map[string]any{"exp": t0.Add(-time.Second).Unix()}))
		}), wantErr: "invalid_grant"},
		{name: "untrusted subject token", body: with(func(f url.Values) {
			tok, err := e.rogue.Sign(context.Background(), map[string]any{"iss": idpIssuer, "sub": "alice", "exp": t0.Add(time.Hour).Unix()})
			if err != nil {
				t.Fatal(err)
			}
			f.Set("subject_token", tok)
		}), wantErr: "invalid_grant"},
		{name: "garbage subject token", body: with(func(f url.Values) { f.Set("subject_token", "not-a-token") }), wantErr: "invalid_grant"},
		{name: "revoked delegation as subject", body: with(func(f url.Values) { f.Set("subject_token", revoked) }), wantErr: "invalid_grant"},
		{name: "subject without expiry", body: with(func(f url.Values) { f.Set("subject_token", "no-exp") }), wantErr: "invalid_grant"},
		{name: "subject without sub", body: with(func(f url.Values) { f.Set("subject_token", "no-sub") }), wantErr: "invalid_grant"},
		{name: "actor token without type", body: with(func(f url.Values) { f.Del("actor_token_type") }), wantErr: "invalid_request"},
		{name: "wrong actor token type", body: with(func(f url.Values) { f.Set("actor_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }), wantErr: "invalid_request"},
		{name: "actor token type without token", body: with(func(f url.Values) { f.Del("actor_token") }), wantErr: "invalid_request"},
		{name: "forged actor token", body: with(func(f url.Values) { f.Set("actor_token", tamper(t, agent, "sub", "agent-root")) }), wantErr: "invalid_grant"},
		{name: "delegation token as actor", body: with(func(f url.Values) { f.Set("actor_token", delegated) }), wantErr: "invalid_grant"},
		{name: "no actor at all", body: with(func(f url.Values) { f.Del("actor_token"); f.Del("actor_token_type") }), wantErr: "invalid_request"},
		{name: "empty scope", body: with(func(f url.Values) { f.Set("scope", "") }), wantErr: "invalid_scope"},
		{name: "blank scope", body: with(func(f url.Values) { f.Set("scope", "   ") }), wantErr: "invalid_scope"},
		{name: "missing scope", body: with(func(f url.Values) { f.Del("scope") }), wantErr: "invalid_scope"},
		{name: "scope not tool", body: with(func(f url.Values) { f.Set("scope", "tool:crm_* openid") }), wantErr: "invalid_scope"},
		{name: "scope tool without name", body: with(func(f url.Values) { f.Set("scope", "tool:") }), wantErr: "invalid_scope"},
		{name: "scope bad character", body: with(func(f url.Values) { f.Set("scope", "tool:crm/get") }), wantErr: "invalid_scope"},
		{name: "wrong resource", body: with(func(f url.Values) { f.Set("resource", "https://other.example.test/mcp") }), wantErr: "invalid_target"},
		{name: "wrong audience", body: with(func(f url.Values) { f.Set("audience", "crm") }), wantErr: "invalid_target"},
		{name: "one good one bad resource", body: with(func(f url.Values) { f["resource"] = []string{testAudience, "https://evil.test"} }), wantErr: "invalid_target"},
		{name: "refresh token requested", body: with(func(f url.Values) { f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }), wantErr: "invalid_request"},
		{name: "bad expires_in", body: with(func(f url.Values) { f.Set("expires_in", "-5") }), wantErr: "invalid_request"},
		{name: "repeated scope", body: with(func(f url.Values) { f["scope"] = []string{"tool:a", "tool:b"} }), wantErr: "invalid_request"},
		{name: "repeated subject token", body: with(func(f url.Values) { f["subject_token"] = []string{human, human} }), wantErr: "invalid_request"},
		{name: "malformed form", body: "a=%zz", wantErr: "invalid_request"},
		{name: "GET", method: http.MethodGet, body: valid().Encode(), wantStatus: http.StatusMethodNotAllowed, wantErr: "invalid_request"},
		{name: "JSON body", contentType: "application/json", body: `{"grant_type":"` + GrantTypeTokenExchange + `"}`, wantErr: "invalid_request"},
		{name: "oversize body", body: valid().Encode() + "&pad=" + strings.Repeat("x", maxFormBytes), wantStatus: http.StatusRequestEntityTooLarge, wantErr: "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			ct := tc.contentType
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			r := httptest.NewRequest(method, "/oauth/token", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", ct)
			w := httptest.NewRecorder()
			e.ex.TokenHandler().ServeHTTP(w, r)
			want := tc.wantStatus
			if want == 0 {
				want = http.StatusBadRequest
			}
			if w.Code != want {
				t.Errorf("status = %d, want %d (%s)", w.Code, want, w.Body)
			}
			if !strings.Contains(w.Body.String(), `"error":"`+tc.wantErr+`"`) {
				t.Errorf("body = %s, want error %s", w.Body, tc.wantErr)
			}
			if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("headers = %v", w.Header())
			}
			if strings.Contains(w.Body.String(), "access_token") {
				t.Error("a token was issued")
			}
		})
	}
}

func TestExchangeMayAct(t *testing.T) {
	e := newEnv(t)
	agent := e.agentToken(t, "agent-42")
	for _, tc := range []struct {
		name   string
		mayAct any
		actor  string // "" = no actor token: the subject token's azp
		azp    string
		ok     bool
	}{
		{name: "object names the actor", mayAct: map[string]any{"sub": "agent-42"}, actor: agent, ok: true},
		{name: "array names the actor", mayAct: []any{map[string]any{"sub": "x"}, map[string]any{"sub": "agent-42"}}, actor: agent, ok: true},
		{name: "issuer matches", mayAct: map[string]any{"sub": "agent-42", "iss": idpIssuer}, actor: agent, ok: true},
		{name: "agent claim satisfies", mayAct: map[string]any{"sub": "cursor"}, azp: "cursor", ok: true},
		{name: "other actor", mayAct: map[string]any{"sub": "agent-7"}, actor: agent},
		{name: "array without the actor", mayAct: []any{map[string]any{"sub": "agent-7"}}, actor: agent},
		{name: "empty array", mayAct: []any{}, actor: agent},
		{name: "issuer differs", mayAct: map[string]any{"sub": "agent-42", "iss": "https://elsewhere"}, actor: agent},
		{name: "malformed string", mayAct: "agent-42", actor: agent},
		{name: "malformed entry", mayAct: []any{"agent-42"}, actor: agent},
		{name: "agent claim violates", mayAct: map[string]any{"sub": "agent-42"}, azp: "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			over := map[string]any{"may_act": tc.mayAct}
			if tc.azp != "" {
				over["azp"] = tc.azp
			}
			code, rep := e.exchange(t, e.form(e.humanToken(t, over), tc.actor, "tool:crm_*"))
			if tc.ok && code != http.StatusOK {
				t.Errorf("refused: %d %s %s", code, rep.Error, rep.ErrorDescription)
			}
			if !tc.ok && (code != http.StatusBadRequest || rep.Error != "invalid_grant") {
				t.Errorf("got %d %q, want 400 invalid_grant", code, rep.Error)
			}
		})
	}
}

// TestMayActCarriesOver: a delegation made under the subject token's
// may_act {sub: agent-42} keeps that constraint. The attack re-exchanged it
// with evil-agent as the actor and used the new token.
func TestMayActCarriesOver(t *testing.T) {
	e := newEnv(t)
	human := e.humanToken(t, map[string]any{"may_act": map[string]any{"sub": "agent-42"}})
	first := e.mustExchange(t, e.form(human, e.agentToken(t, "agent-42"), "tool:crm_*"))
	_, claims := stdVerify(t, jwks(t, e.keys), first.AccessToken)
	if ma, _ := claims["may_act"].(map[string]any); ma["sub"] != "agent-42" {
		t.Fatalf("the delegation token lost may_act: %v", claims["may_act"])
	}
	code, rep := e.exchange(t, e.form(first.AccessToken, e.agentToken(t, "evil-agent"), "tool:crm_*"))
	if code != http.StatusBadRequest || rep.Error != "invalid_grant" {
		t.Fatalf("re-exchange to evil-agent: got %d %q, want 400 invalid_grant", code, rep.Error)
	}
	// The named agent may still narrow its own grant, and the constraint
	// travels on through every hop.
	second := e.mustExchange(t, e.form(first.AccessToken, "", "tool:crm_get_*"))
	if code, rep := e.exchange(t, e.form(second.AccessToken, e.agentToken(t, "evil-agent"), "tool:crm_get_*")); code != http.StatusBadRequest || rep.Error != "invalid_grant" {
		t.Errorf("second hop to evil-agent: got %d %q, want 400 invalid_grant", code, rep.Error)
	}
	// Without may_act, re-exchange to another agent stays possible.
	free := e.mustExchange(t, e.form(e.humanToken(t, nil), e.agentToken(t, "agent-42"), "tool:crm_*"))
	if _, claims := stdVerify(t, jwks(t, e.keys), free.AccessToken); claims["may_act"] != nil {
		t.Errorf("may_act invented: %v", claims["may_act"])
	}
	e.mustExchange(t, e.form(free.AccessToken, e.agentToken(t, "agent-b"), "tool:crm_*"))
}

func TestReExchangeNarrowsOnly(t *testing.T) {
	e := newEnv(t)
	first := e.mustExchange(t, e.form(e.humanToken(t, nil), e.agentToken(t, "agent-a"), "tool:crm_* tool:billing_get_invoice"))
	for _, tc := range []struct {
		scope string
		ok    bool
	}{
		{"tool:crm_*", true},
		{"tool:crm_get_*", true},
		{"tool:crm_*_customer", true},
		{"tool:crm_get_customer tool:billing_get_invoice", true},
		{"tool:*", false},
		{"tool:cr*", false},
		{"tool:*crm_*", false},
		{"tool:billing_*", false},
		{"tool:billing_get_invoice2", false},
		{"tool:crm_get_customer tool:hr_list", false},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			code, rep := e.exchange(t, e.form(first.AccessToken, e.agentToken(t, "agent-b"), tc.scope))
			if tc.ok && code != http.StatusOK {
				t.Errorf("narrowing refused: %d %s %s", code, rep.Error, rep.ErrorDescription)
			}
			if !tc.ok && (code != http.StatusBadRequest || rep.Error != "invalid_scope") {
				t.Errorf("widening: got %d %q, want 400 invalid_scope", code, rep.Error)
			}
		})
	}
}

func TestReExchangeChain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	first := e.mustExchange(t, e.form(e.humanToken(t, nil), e.agentToken(t, "agent-a"), "tool:crm_*"))
	e.clock.Advance(5 * time.Minute)
	second := e.mustExchange(t, e.form(first.AccessToken, e.agentToken(t, "agent-b"), "tool:crm_get_*"))
	if second.ExpiresIn != 600 {
		t.Errorf("re-exchanged expires_in = %d, want 600 (the original's remaining life)", second.ExpiresIn)
	}
	_, c := stdVerify(t, jwks(t, e.keys), second.AccessToken)
	wantAct := map[string]any{"sub": "agent-b", "act": map[string]any{"sub": "agent-a"}}
	if !reflect.DeepEqual(c["act"], wantAct) || c["sub"] != "alice" || c["sub_iss"] != idpIssuer {
		t.Errorf("act/sub/sub_iss = %v/%v/%v", c["act"], c["sub"], c["sub_iss"])
	}
	c1, err := e.ex.VerifyDelegation(ctx, first.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := e.ex.VerifyDelegation(ctx, second.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Agent != "agent-b" || !reflect.DeepEqual(c2.Actors, []string{"agent-a"}) ||
		!reflect.DeepEqual(c2.Chain, []string{c1.ID}) || c2.ExpiresAt.After(c1.ExpiresAt) {
		t.Errorf("second = %+v", c2)
	}
	if g := c2.Grant(); !reflect.DeepEqual(g.Actors, []string{"agent-b", "agent-a"}) {
		t.Errorf("grant actors = %v", g.Actors)
	}
	if e.issued[1].ParentID != c1.ID || !reflect.DeepEqual(e.issued[1].Actors, []string{"agent-a"}) {
		t.Errorf("OnIssue = %+v", e.issued[1])
	}

	// The same agent narrowing its own grant does not repeat itself in act.
	third := e.mustExchange(t, e.form(second.AccessToken, "", "tool:crm_get_customer"))
	c3, err := e.ex.VerifyDelegation(ctx, third.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Agent != "agent-b" || !reflect.DeepEqual(c3.Actors, []string{"agent-a"}) ||
		!reflect.DeepEqual(c3.Chain, []string{c1.ID, c2.ID}) {
		t.Errorf("third = %+v", c3)
	}

	// Revoking the root ends every token narrowed from it.
	if w := post(t, e.ex.RevokeHandler(), url.Values{"token": {first.AccessToken}}.Encode()); w.Code != http.StatusOK {
		t.Fatalf("revoke: %d", w.Code)
	}
	for _, tok := range []string{first.AccessToken, second.AccessToken, third.AccessToken} {
		if _, err := e.ex.VerifyDelegation(ctx, tok); !errors.Is(err, ErrRevoked) {
			t.Errorf("after revoking the root: err = %v, want ErrRevoked", err)
		}
	}
}

func TestExchangeLifetime(t *testing.T) {
	e := newEnv(t)
	agent := e.agentToken(t, "agent-42")
	for _, tc := range []struct {
		name       string
		subjectTTL time.Duration
		maxTTL     time.Duration
		expiresIn  string
		want       int64
	}{
		{name: "capped by MaxTTL", subjectTTL: time.Hour, maxTTL: 15 * time.Minute, want: 900},
		{name: "default MaxTTL is 15m", subjectTTL: time.Hour, want: 900},
		{name: "capped by the subject's expiry", subjectTTL: 5 * time.Minute, maxTTL: 15 * time.Minute, want: 300},
		{name: "shorter life requested", subjectTTL: time.Hour, maxTTL: 15 * time.Minute, expiresIn: "60", want: 60},
		{name: "longer life requested is capped", subjectTTL: time.Hour, maxTTL: 15 * time.Minute, expiresIn: "86400", want: 900},
		{name: "capped by the keys' MaxTokenTTL", subjectTTL: 24 * time.Hour, maxTTL: 2 * time.Hour, want: 3600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.ex.MaxTTL = tc.maxTTL
			f := e.form(e.humanToken(t, map[string]any{"exp": e.clock.Now().Add(tc.subjectTTL).Unix()}), agent, "tool:x")
			if tc.expiresIn != "" {
				f.Set("expires_in", tc.expiresIn)
			}
			rep := e.mustExchange(t, f)
			if rep.ExpiresIn != tc.want {
				t.Errorf("expires_in = %d, want %d", rep.ExpiresIn, tc.want)
			}
			_, c := stdVerify(t, jwks(t, e.keys), rep.AccessToken)
			if got := int64(c["exp"].(float64) - c["iat"].(float64)); got != tc.want {
				t.Errorf("exp - iat = %d, want %d", got, tc.want)
			}
		})
	}
	e.ex.MaxTTL = 15 * time.Minute
	// A subject token with under a second left yields nothing.
	code, rep := e.exchange(t, e.form(e.humanToken(t, map[string]any{"exp": e.clock.Now().Unix()}), agent, "tool:x"))
	if code != http.StatusBadRequest || rep.Error != "invalid_grant" {
		t.Errorf("dying subject: %d %q", code, rep.Error)
	}
}

func TestExchangeMisconfigured(t *testing.T) {
	e := newEnv(t)
	e.ex.Revocations = nil
	code, rep := e.exchange(t, e.form(e.humanToken(t, nil), e.agentToken(t, "a"), "tool:x"))
	if code != http.StatusInternalServerError || rep.Error != "server_error" {
		t.Errorf("got %d %q", code, rep.Error)
	}
	if _, err := e.ex.VerifyDelegation(context.Background(), "x"); err == nil {
		t.Error("VerifyDelegation without a revocation store succeeded")
	}
}

type failingRevocations struct{}

func (failingRevocations) Revoke(context.Context, string, time.Time) error { return errors.New("down") }
func (failingRevocations) IsRevoked(context.Context, string) (bool, error) {
	return false, errors.New("down")
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	issue := func() string {
		return e.mustExchange(t, e.form(e.humanToken(t, nil), e.agentToken(t, "agent-42"), "tool:crm_*")).AccessToken
	}
	tok := issue()
	other := issue()
	if _, err := e.ex.VerifyDelegation(ctx, tok); err != nil {
		t.Fatal(err)
	}
	w := post(t, e.ex.RevokeHandler(), url.Values{"token": {tok}, "token_type_hint": {"access_token"}}.Encode())
	if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("revoke: %d %v", w.Code, w.Header())
	}
	if _, err := e.ex.VerifyDelegation(ctx, tok); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked token: err = %v, want ErrRevoked", err)
	}
	if _, err := e.ex.VerifyDelegation(ctx, other); err != nil {
		t.Errorf("another token was revoked too: %v", err)
	}
	// The revocation is recorded until the token's exp, then forgotten.
	c, _ := e.ex.parse(ctx, tok, true)
	if until := e.rev.ids[c.ID]; !until.Equal(c.ExpiresAt) {
		t.Errorf("revoked until %v, want %v", until, c.ExpiresAt)
	}

	for _, tc := range []struct {
		name   string
		method string
		body   string
		want   int
	}{
		{name: "garbage", body: "token=garbage", want: http.StatusOK},
		{name: "idp token", body: url.Values{"token": {e.humanToken(t, nil)}}.Encode(), want: http.StatusOK},
		{name: "assertion", body: url.Values{"token": {mustAssert(t, e)}}.Encode(), want: http.StatusOK},
		{name: "already revoked", body: url.Values{"token": {tok}}.Encode(), want: http.StatusOK},
		{name: "missing token", body: "token_type_hint=access_token", want: http.StatusBadRequest},
		{name: "repeated token", body: "token=a&token=b", want: http.StatusBadRequest},
		{name: "GET", method: http.MethodGet, body: "token=x", want: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.rev.ids)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, "/oauth/revoke", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			e.ex.RevokeHandler().ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("status = %d, want %d", w.Code, tc.want)
			}
			if len(e.rev.ids) != before {
				t.Error("something was revoked")
			}
		})
	}

	// An expired token of ours is accepted (200) and needs no record.
	e.clock.Advance(16 * time.Minute)
	if w := post(t, e.ex.RevokeHandler(), url.Values{"token": {other}}.Encode()); w.Code != http.StatusOK {
		t.Errorf("expired: %d", w.Code)
	}
	if _, err := e.ex.VerifyDelegation(ctx, other); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired token: err = %v", err)
	}

	// A revocation store that fails: revoke answers 503, verification fails closed.
	fresh := issue()
	e.ex.Revocations = failingRevocations{}
	if w := post(t, e.ex.RevokeHandler(), url.Values{"token": {fresh}}.Encode()); w.Code != http.StatusServiceUnavailable {
		t.Errorf("store down: revoke status %d, want 503", w.Code)
	}
	if _, err := e.ex.VerifyDelegation(ctx, fresh); err == nil {
		t.Error("store down: token verified")
	}
}

func mustAssert(t *testing.T, e *env) string {
	t.Helper()
	tok, err := e.keys.Assert(context.Background(), Assertion{Issuer: testIssuer, Audience: testAudience, Subject: "alice", Actor: "a"})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifyDelegationRejects(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tok := e.mustExchange(t, e.form(e.humanToken(t, nil), e.agentToken(t, "agent-42"), "tool:crm_*")).AccessToken
	signed := func(over map[string]any) string {
		c := map[string]any{
			"iss": testIssuer, "aud": testAudience, "sub": "alice", "sub_iss": idpIssuer,
			"act": map[string]any{"sub": "a"}, "scope": "tool:x", "jti": "j1",
			"exp": e.clock.Now().Add(time.Minute).Unix(),
		}
		for k, v := range over {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		s, err := e.keys.sign(ctx, typAccessToken, c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other := *e.ex
	other.Issuer = "https://other-gateway.test"
	for _, tc := range []struct {
		name string
		tok  string
		ex   *Exchange
		want error
	}{
		{name: "control", tok: signed(nil)},
		{name: "tampered", tok: tamper(t, tok, "scope", "tool:*"), want: ErrInvalidToken},
		{name: "other gateway's issuer", tok: tok, ex: &other, want: ErrInvalidToken},
		{name: "assertion (typ JWT)", tok: mustAssert(t, e), want: ErrInvalidToken},
		{name: "idp token", tok: e.humanToken(t, nil), want: ErrInvalidToken},
		{name: "wrong audience", tok: signed(map[string]any{"aud": "crm"}), want: ErrInvalidToken},
		{name: "audience list", tok: signed(map[string]any{"aud": []string{"x", testAudience}})},
		{name: "no jti", tok: signed(map[string]any{"jti": nil}), want: ErrInvalidToken},
		{name: "no act", tok: signed(map[string]any{"act": nil}), want: ErrInvalidToken},
		{name: "act without sub", tok: signed(map[string]any{"act": map[string]any{"act": map[string]any{"sub": "a"}}}), want: ErrInvalidToken},
		{name: "bad scope", tok: signed(map[string]any{"scope": "admin"}), want: ErrInvalidToken},
		{name: "no sub_iss", tok: signed(map[string]any{"sub_iss": nil}), want: ErrInvalidToken},
		{name: "bad roles", tok: signed(map[string]any{"roles": "admin"}), want: ErrInvalidToken},
		{name: "not yet valid", tok: signed(map[string]any{"nbf": e.clock.Now().Add(2 * time.Minute).Unix()}), want: ErrInvalidToken},
		{name: "expired", tok: signed(map[string]any{"exp": e.clock.Now().Unix()}), want: ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := tc.ex
			if ex == nil {
				ex = e.ex
			}
			_, err := ex.VerifyDelegation(ctx, tc.tok)
			if tc.want == nil && err != nil {
				t.Errorf("rejected: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func BenchmarkVerifyDelegation(b *testing.B) {
	e := newEnv(b)
	tok := e.mustExchange(b, e.form(e.humanToken(b, nil), e.agentToken(b, "agent-42"), "tool:crm_*")).AccessToken
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.ex.VerifyDelegation(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSecurityEventsOfExchange: a widening refused and a revocation are
// reported for the audit trail.
func TestSecurityEventsOfExchange(t *testing.T) {
	e := newEnv(t)
	var events []SecurityEvent
	e.ex.OnSecurity = func(_ context.Context, ev SecurityEvent) { events = append(events, ev) }
	first := e.mustExchange(t, e.form(e.humanToken(t, nil), e.agentToken(t, "agent-a"), "tool:crm_*"))
	if code, _ := e.exchange(t, e.form(first.AccessToken, e.agentToken(t, "agent-b"), "tool:*")); code != http.StatusBadRequest {
		t.Fatalf("widening: %d", code)
	}
	if w := post(t, e.ex.RevokeHandler(), url.Values{"token": {first.AccessToken}}.Encode()); w.Code != http.StatusOK {
		t.Fatalf("revoke: %d", w.Code)
	}
	if len(events) != 2 || events[0].Event != EventExchangeRefused || events[0].Agent != "agent-b" || events[0].ID == "" ||
		events[1].Event != EventRevocation || events[1].Agent != "agent-a" || events[1].ID != events[0].ID {
		t.Fatalf("events %+v", events)
	}
}
