package authn

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/devissuer"
	"github.com/coreos/go-oidc/v3/oidc"
)

const testAud = "http://127.0.0.1:8080/mcp"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// startIssuer runs a development issuer on 127.0.0.1 using clk.
func startIssuer(t *testing.T, clk *clock, opts devissuer.Options) *devissuer.Issuer {
	t.Helper()
	opts.Now = clk.Now
	iss, err := devissuer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Issuer == "" {
		if err := iss.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = iss.Close() })
	}
	return iss
}

func newAuth(t testing.TB, clk *clock, issuers ...IssuerConfig) *Authenticator {
	t.Helper()
	a, err := New(context.Background(), Config{Issuers: issuers, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// mint signs claims; a token naming no agent gets azp "test-agent" (a
// token must name its agent).
func mint(t testing.TB, iss *devissuer.Issuer, claims map[string]any) string {
	t.Helper()
	named := false
	for _, k := range []string{"azp", "client_id", "act", "agent"} {
		if _, ok := claims[k]; ok {
			named = true
		}
	}
	if !named {
		claims = maps.Clone(claims)
		claims["azp"] = "test-agent"
	}
	tok, err := iss.Mint(claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuthenticateGood(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, devissuer.Options{})
	rsa := startIssuer(t, clk, devissuer.Options{Algorithm: devissuer.RS256})
	ed := startIssuer(t, clk, devissuer.Options{Algorithm: devissuer.EdDSA})
	base := IssuerConfig{Issuer: iss.URL(), Audiences: []string{"other", testAud}}

	tests := []struct {
		name   string
		issuer *devissuer.Issuer
		cfg    IssuerConfig
		claims map[string]any
		want   Principal
	}{
		{
			name:   "roles array and azp agent",
			issuer: iss, cfg: base,
			claims: map[string]any{"sub": "alice", "aud": testAud, "email": "alice@example.com", "name": "Alice", "roles": []any{"support", "admin", 7}, "azp": "cursor", "client_id": "ignored", "jti": "j1"},
			want:   Principal{Subject: "alice", Email: "alice@example.com", Name: "Alice", Roles: []string{"support", "admin"}, Agent: "cursor", TokenID: "j1"},
		},
		{
			name:   "space separated roles and client_id agent, aud array",
			issuer: iss, cfg: base,
			claims: map[string]any{"sub": "bob", "aud": []any{"x", testAud}, "roles": "a  b c", "client_id": "claude", "jti": "j2"},
			want:   Principal{Subject: "bob", Roles: []string{"a", "b", "c"}, Agent: "claude", TokenID: "j2"},
		},
		{
			name:   "dotted roles path and act beats azp",
			issuer: iss, cfg: IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}, RolesClaim: "realm_access.roles"},
			claims: map[string]any{"sub": "carol", "aud": testAud, "realm_access": map[string]any{"roles": []any{"r1"}}, "azp": "x", "act": map[string]any{"sub": "agent-42", "act": map[string]any{"sub": "planner"}}, "jti": "j3"},
			want:   Principal{Subject: "carol", Roles: []string{"r1"}, Agent: "agent-42", TokenID: "j3"},
		},
		{
			name:   "literal dotted claim name and custom agent claim",
			issuer: iss, cfg: IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}, RolesClaim: "https://ex.com/roles", AgentClaim: "agent"},
			claims: map[string]any{"sub": "dave", "aud": testAud, "https://ex.com/roles": []any{"ops"}, "agent": "bot", "azp": "ignored", "jti": "j4"},
			want:   Principal{Subject: "dave", Roles: []string{"ops"}, Agent: "bot", TokenID: "j4"},
		},
		{
			name:   "groups claim",
			issuer: iss, cfg: IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}, RolesClaim: "groups"},
			claims: map[string]any{"sub": "erin", "aud": testAud, "groups": []any{"g"}, "roles": []any{"not-used"}, "jti": "j5"},
			want:   Principal{Subject: "erin", Roles: []string{"g"}, Agent: "test-agent", TokenID: "j5"},
		},
		{
			name:   "RS256 issuer",
			issuer: rsa, cfg: IssuerConfig{Issuer: rsa.URL(), Audiences: []string{testAud}},
			claims: map[string]any{"sub": "frank", "aud": testAud, "jti": "j6"},
			want:   Principal{Subject: "frank", Agent: "test-agent", TokenID: "j6"},
		},
		{
			name:   "EdDSA issuer",
			issuer: ed, cfg: IssuerConfig{Issuer: ed.URL(), Audiences: []string{testAud}},
			claims: map[string]any{"sub": "gina", "aud": testAud, "jti": "j7"},
			want:   Principal{Subject: "gina", Agent: "test-agent", TokenID: "j7"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuth(t, clk, tc.cfg)
			tok := mint(t, tc.issuer, tc.claims)
			p, err := a.Authenticate(context.Background(), tok)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			want := tc.want
			want.Issuer = tc.issuer.URL()
			want.ExpiresAt = clk.Now().Add(time.Hour)
			if want.Roles == nil {
				want.Roles = p.Roles // nil and empty are both "no roles"
				if len(p.Roles) != 0 {
					t.Errorf("Roles = %v, want none", p.Roles)
				}
			}
			if p.Claims["sub"] != tc.claims["sub"] || p.Claims["iss"] != tc.issuer.URL() {
				t.Errorf("Claims = %v, missing sub/iss", p.Claims)
			}
			got := *p
			got.Claims = nil
			if got.LiveAudienceOnly || !got.IssuedAt.Equal(clk.Now()) || len(got.Audiences) == 0 {
				t.Errorf("LiveAudienceOnly %v, IssuedAt %v, Audiences %v: want false, now, the aud", got.LiveAudienceOnly, got.IssuedAt, got.Audiences)
			}
			got.IssuedAt, got.Audiences = time.Time{}, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("principal\n got %+v\nwant %+v", got, want)
			}
			if p.Delegation != nil {
				t.Errorf("Delegation = %+v, want nil for an IdP token", p.Delegation)
			}
		})
	}
}

// hmacToken signs header.claims with HS256 and the given secret.
func hmacToken(t *testing.T, header, claims map[string]any, secret []byte) string {
	t.Helper()
	input, err := devissuer.Encode(header, claims)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestAuthenticateHostile(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, devissuer.Options{Audience: testAud})
	now := clk.Now().Unix()
	good := func() map[string]any {
		return map[string]any{"iss": iss.URL(), "sub": "alice", "aud": testAud, "iat": now, "exp": now + 3600, "azp": "copilot"}
	}
	with := func(k string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	pubDER, err := x509.MarshalPKIXPublicKey(iss.Signer().Public())
	if err != nil {
		t.Fatal(err)
	}
	other := startIssuer(t, clk, devissuer.Options{Issuer: iss.URL()})
	sign := func(i *devissuer.Issuer, h, c map[string]any) string {
		tok, err := i.SignRaw(h, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := sign(iss, nil, good())
	parts := strings.Split(valid, ".")

	tests := []struct {
		name   string
		reason string
		token  string
	}{
		{"alg none", "unsupported signature algorithm", sign(iss, map[string]any{"alg": "none"}, good())},
		{"alg none with signature", "unsupported signature algorithm", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "." + parts[2]},
		{"HS256 with public key DER", "unsupported signature algorithm", hmacToken(t, map[string]any{"alg": "HS256", "kid": iss.KeyID()}, good(), pubDER)},
		{"HS256 with public key PEM-ish", "unsupported signature algorithm", hmacToken(t, map[string]any{"alg": "HS256", "kid": iss.KeyID()}, good(), []byte(base64.StdEncoding.EncodeToString(pubDER)))},
		{"expired", "token expired", sign(iss, nil, with("exp", now-1))},
		{"expired long ago", "token expired", sign(iss, nil, with("exp", now-3600))},
		{"missing exp", "malformed exp", sign(iss, nil, with("exp", nil))},
		{"exp as string", "malformed exp", sign(iss, nil, with("exp", fmt.Sprint(now+3600)))},
		{"nbf in the future", "not yet valid", sign(iss, nil, with("nbf", now+600))},
		{"iat in the future", "not yet valid", sign(iss, nil, with("iat", now+600))},
		{"wrong issuer", "untrusted issuer", sign(iss, nil, with("iss", "https://evil.example.com"))},
		{"issuer with trailing slash", "untrusted issuer", sign(iss, nil, with("iss", iss.URL()+"/"))},
		{"wrong audience", "audience", sign(iss, nil, with("aud", "http://127.0.0.1:9999/mcp"))},
		{"missing audience", "audience", sign(iss, nil, with("aud", nil))},
		{"audience array without us", "audience", sign(iss, nil, with("aud", []any{"a", "b"}))},
		{"other key same kid", "signature", sign(other, map[string]any{"kid": iss.KeyID()}, good())},
		{"other key no kid", "signature", sign(other, map[string]any{"kid": nil}, good())},
		{"unknown kid", "signature", sign(other, nil, good())},
		{"tampered payload", "signature", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+iss.URL()+`","sub":"root","aud":"`+testAud+`","exp":9999999999}`)) + "." + parts[2]},
		{"signature stripped", "missing signature", parts[0] + "." + parts[1] + "."},
		{"crit header", "critical", sign(iss, map[string]any{"crit": []string{"exp"}, "exp": now}, good())},
		{"missing sub", "missing subject", sign(iss, nil, with("sub", nil))},
		{"empty sub", "missing subject", sign(iss, nil, with("sub", ""))},
		{"sub not a string", "malformed claims", sign(iss, nil, with("sub", 42))},
		{"act not an object", "malformed act", sign(iss, nil, with("act", "agent"))},
		{"act without sub", "act claim without sub", sign(iss, nil, with("act", map[string]any{"iss": "x"}))},
		{"garbage", "malformed token", "not a token"},
		{"empty", "empty token", ""},
		{"two parts", "malformed token", parts[0] + "." + parts[1]},
		{"four parts", "malformed token", valid + ".x"},
		{"padded base64", "malformed token header", parts[0] + "=." + parts[1] + "." + parts[2]},
		{"whitespace", "malformed token header", " " + valid},
		{"json serialization", "malformed token", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`},
		{"oversized", "too large", sign(iss, nil, with("pad", strings.Repeat("a", MaxTokenSize)))},
		{"header not json", "malformed token header", base64.RawURLEncoding.EncodeToString([]byte("xx")) + "." + parts[1] + "." + parts[2]},
	}
	a := newAuth(t, clk, IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}})
	if _, err := a.Authenticate(context.Background(), valid); err != nil {
		t.Fatalf("control token refused: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(context.Background(), tc.token)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Authenticate = %+v, %v; want ErrInvalidToken", p, err)
			}
			if p != nil {
				t.Errorf("principal returned with error: %+v", p)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("err = %q, want reason %q", err, tc.reason)
			}
			if len(tc.token) > 8 && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error message contains the token")
			}
		})
	}
}

func TestUnknownIssuerNoFetch(t *testing.T) {
	clk := newClock()
	trusted := startIssuer(t, clk, devissuer.Options{})
	stranger := startIssuer(t, clk, devissuer.Options{})
	a := newAuth(t, clk, IssuerConfig{Issuer: trusted.URL(), Audiences: []string{testAud}})
	_, err := a.Authenticate(context.Background(), mint(t, stranger, map[string]any{"sub": "x", "aud": testAud}))
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
	for _, i := range []*devissuer.Issuer{trusted, stranger} {
		if n := i.DiscoveryRequests() + i.JWKSRequests(); n != 0 {
			t.Errorf("issuer %s saw %d fetches, want 0", i.URL(), n)
		}
	}
}

func TestUnknownKidBurstRefetchesAtMostOnce(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, devissuer.Options{})
	a := newAuth(t, clk, IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}})
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, mint(t, iss, map[string]any{"sub": "a", "aud": testAud})); err != nil {
		t.Fatal(err)
	}
	if got := iss.JWKSRequests(); got != 1 {
		t.Fatalf("JWKS fetches after first token = %d, want 1", got)
	}
	bogus := func(n int) string {
		tok, err := iss.SignRaw(map[string]any{"kid": fmt.Sprintf("bogus-%d", n)}, map[string]any{"iss": iss.URL(), "sub": "a", "aud": testAud, "exp": clk.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	burst := func() {
		var wg sync.WaitGroup
		var accepted atomic.Int32
		for n := range 100 {
			wg.Go(func() {
				if _, err := a.Authenticate(ctx, bogus(n)); !errors.Is(err, ErrInvalidToken) {
					accepted.Add(1)
				}
			})
		}
		wg.Wait()
		if accepted.Load() != 0 {
			t.Errorf("%d bogus-kid tokens not refused with ErrInvalidToken", accepted.Load())
		}
	}
	burst() // within MinRefreshInterval of the first fetch: no refetch at all
	if got := iss.JWKSRequests(); got != 1 {
		t.Errorf("JWKS fetches after burst within interval = %d, want 1", got)
	}
	clk.Advance(DefaultMinRefreshInterval)
	burst() // interval elapsed: one refetch, coalesced
	if got := iss.JWKSRequests(); got != 2 {
		t.Errorf("JWKS fetches after burst past interval = %d, want 2", got)
	}
	if got := iss.DiscoveryRequests(); got != 1 {
		t.Errorf("discovery fetches = %d, want 1", got)
	}
}

func TestKeyRotation(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, devissuer.Options{})
	a := newAuth(t, clk, IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}})
	ctx := context.Background()
	oldTok := mint(t, iss, map[string]any{"sub": "a", "aud": testAud})
	if _, err := a.Authenticate(ctx, oldTok); err != nil {
		t.Fatal(err)
	}
	if err := iss.Rotate(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultMinRefreshInterval)
	newTok := mint(t, iss, map[string]any{"sub": "b", "aud": testAud})
	p, err := a.Authenticate(ctx, newTok)
	if err != nil {
		t.Fatalf("new-kid token: %v", err)
	}
	if p.Subject != "b" {
		t.Errorf("Subject = %q", p.Subject)
	}
	if got := iss.JWKSRequests(); got != 2 {
		t.Errorf("JWKS fetches = %d, want 2 (initial + one refetch)", got)
	}
	// The old key is still published and the old token still verifies
	// (from the cache here, and from the key set with the cache bypassed).
	b := newAuthNoCache(t, clk, IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}})
	for _, tok := range []string{oldTok, newTok} {
		if _, err := b.Authenticate(ctx, tok); err != nil {
			t.Errorf("after rotation: %v", err)
		}
	}
}

func newAuthNoCache(t testing.TB, clk *clock, ic IssuerConfig) *Authenticator {
	t.Helper()
	a, err := New(context.Background(), Config{Issuers: []IssuerConfig{ic}, Now: clk.Now, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// switchable serves h while up is set, and 503 otherwise, counting requests.
type switchable struct {
	up       atomic.Bool
	h        atomic.Pointer[http.Handler]
	requests atomic.Int64
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	h := s.h.Load()
	if !s.up.Load() || h == nil {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	(*h).ServeHTTP(w, r)
}

func TestIdPDownAtStart(t *testing.T) {
	clk := newClock()
	sw := &switchable{}
	srv := httptest.NewServer(sw)
	t.Cleanup(srv.Close)
	iss := startIssuer(t, clk, devissuer.Options{Issuer: srv.URL})
	h := iss.Handler()
	sw.h.Store(&h)

	ctx := context.Background()
	a := newAuth(t, clk, IssuerConfig{Issuer: srv.URL, Audiences: []string{testAud}})
	if n := sw.requests.Load(); n != 0 {
		t.Fatalf("New made %d requests, want none", n)
	}
	tok := mint(t, iss, map[string]any{"sub": "a", "aud": testAud})
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("IdP down: err = %v, want ErrUnavailable", err)
	}
	if err := a.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready = %v, want ErrUnavailable", err)
	}
	before := sw.requests.Load()
	for range 20 {
		if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	if n := sw.requests.Load() - before; n != 0 {
		t.Errorf("%d requests during backoff, want 0", n)
	}
	clk.Advance(time.Second) // first backoff step elapsed: exactly one new attempt
	before = sw.requests.Load()
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := sw.requests.Load() - before; n != 1 {
		t.Errorf("%d requests after the first backoff, want 1 (discovery)", n)
	}
	clk.Advance(time.Second) // second step is 2s: still waiting
	before = sw.requests.Load()
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if n := sw.requests.Load() - before; n != 0 {
		t.Errorf("%d requests inside the second backoff, want 0", n)
	}

	sw.up.Store(true)
	clk.Advance(maxBackoff)
	p, err := a.Authenticate(ctx, tok)
	if err != nil {
		t.Fatalf("IdP back: %v", err)
	}
	if p.Subject != "a" {
		t.Errorf("Subject = %q", p.Subject)
	}
	if err := a.Ready(ctx); err != nil {
		t.Errorf("Ready = %v", err)
	}

	// Once keys are cached, the IdP going down does not break known keys.
	sw.up.Store(false)
	b := newAuthNoCache(t, clk, IssuerConfig{Issuer: srv.URL, Audiences: []string{testAud}})
	sw.up.Store(true)
	if err := b.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	sw.up.Store(false)
	if _, err := b.Authenticate(ctx, tok); err != nil {
		t.Errorf("cached keys with IdP down: %v", err)
	}
}

// countingKeySet counts signature verifications.
type countingKeySet struct {
	inner oidc.KeySet
	n     atomic.Int64
}

func (c *countingKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	c.n.Add(1)
	return c.inner.VerifySignature(ctx, jwt)
}

func TestCache(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, devissuer.Options{Issuer: "https://issuer.test"})
	ks := &countingKeySet{inner: &oidc.StaticKeySet{PublicKeys: iss.PublicKeys()}}
	a := newAuth(t, clk, IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}, KeySet: ks})
	ctx := context.Background()
	tok, err := iss.Mint(map[string]any{"sub": "a", "aud": testAud, "roles": []any{"r"}, "azp": "test-agent"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := a.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	p1.Roles[0] = "tampered"
	p1.Claims["sub"] = "tampered"
	p2, err := a.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got := ks.n.Load(); got != 1 {
		t.Errorf("signature checks = %d, want 1 (second verify from cache)", got)
	}
	if p2.Roles[0] != "r" || p2.Claims["sub"] != "a" {
		t.Errorf("cached principal altered through a returned copy: %+v", p2)
	}
	clk.Advance(time.Minute) // now == exp: expired
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("expired cached token: err = %v, want ErrInvalidToken", err)
	}
	if a.cache.len() != 0 {
		t.Errorf("expired entry kept in cache")
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(4)
	now := time.Now()
	for n := range 20 {
		c.put(cacheKey(fmt.Sprint(n)), &Principal{Subject: "s", ExpiresAt: now.Add(time.Hour)}, now)
	}
	if c.len() != 4 {
		t.Errorf("len = %d, want 4", c.len())
	}
	c.put(cacheKey("expired"), &Principal{ExpiresAt: now}, now)
	if _, ok := c.get(cacheKey("expired"), now); ok {
		t.Error("expired principal cached")
	}
	off := newCache(-1)
	off.put(cacheKey("x"), &Principal{ExpiresAt: now.Add(time.Hour)}, now)
	if _, ok := off.get(cacheKey("x"), now); ok {
		t.Error("disabled cache returned an entry")
	}
}

func TestDelegationIssuer(t *testing.T) {
	clk := newClock()
	gw := startIssuer(t, clk, devissuer.Options{Issuer: "http://127.0.0.1:8080"})
	a := newAuth(t, clk, IssuerConfig{
		Issuer: gw.URL(), Audiences: []string{testAud}, Delegation: true,
		KeySet: &oidc.StaticKeySet{PublicKeys: gw.PublicKeys()},
	})
	ctx := context.Background()
	tok := mint(t, gw, map[string]any{
		"sub": "alice", "aud": testAud, "jti": "grant-1", "scope": "tool:crm_get_customer tool:crm_*",
		"act": map[string]any{"sub": "agent-42", "act": map[string]any{"sub": "planner", "act": map[string]any{"sub": "root"}}},
	})
	p, err := a.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := &Delegation{ID: "grant-1", Scopes: []string{"tool:crm_get_customer", "tool:crm_*"}, ExpiresAt: clk.Now().Add(time.Hour), Actors: []string{"planner", "root"}}
	if !reflect.DeepEqual(p.Delegation, want) {
		t.Errorf("Delegation = %+v, want %+v", p.Delegation, want)
	}
	if p.Agent != "agent-42" || p.Subject != "alice" || p.TokenID != "grant-1" {
		t.Errorf("principal = %+v", p)
	}

	bad := []struct {
		name   string
		claims map[string]any
	}{
		{"no jti", map[string]any{"sub": "a", "aud": testAud, "jti": nil, "act": map[string]any{"sub": "x"}}},
		{"no act", map[string]any{"sub": "a", "aud": testAud}},
		{"scope not a string", map[string]any{"sub": "a", "aud": testAud, "act": map[string]any{"sub": "x"}, "scope": []any{"tool:x"}}},
		{"act too deep", map[string]any{"sub": "a", "aud": testAud, "act": deepAct(maxActDepth + 1)}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.claims
			if v, ok := c["jti"]; ok && v == nil {
				c = map[string]any{"iss": gw.URL(), "sub": "a", "aud": testAud, "exp": clk.Now().Add(time.Hour).Unix(), "act": c["act"]}
				tok, err := gw.SignRaw(nil, c)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("err = %v, want ErrInvalidToken", err)
				}
				return
			}
			if _, err := a.Authenticate(ctx, mint(t, gw, c)); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func deepAct(n int) map[string]any {
	m := map[string]any{"sub": "leaf"}
	for range n - 1 {
		m = map[string]any{"sub": "a", "act": m}
	}
	return m
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no issuers", Config{}, []string{"no issuers"}},
		{"no audiences", Config{Issuers: []IssuerConfig{{Issuer: "https://idp"}}}, []string{"no audiences"}},
		{"bad url and empty audience", Config{Issuers: []IssuerConfig{{Issuer: "idp", Audiences: []string{""}}}}, []string{"not an http(s) url", "empty audience"}},
		{"duplicate", Config{Issuers: []IssuerConfig{{Issuer: "https://idp", Audiences: []string{"a"}}, {Issuer: "https://idp", Audiences: []string{"a"}}}}, []string{"duplicate"}},
		{"negative interval", Config{Issuers: []IssuerConfig{{Issuer: "https://idp", Audiences: []string{"a"}}}, MinRefreshInterval: -1}, []string{"negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), tc.cfg)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		keys int
	}{
		{"symmetric key only", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`, 0},
		{"not json", `nope`, 0},
		{"no keys", `{"keys":[]}`, 0},
		{"encryption key", `{"keys":[{"kty":"EC","crv":"P-256","use":"enc","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`, 0},
		{"one good EC key", `{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","crv":"P-256","use":"sig","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS([]byte(tc.doc))
			if len(keys) != tc.keys {
				t.Errorf("keys = %d, want %d", len(keys), tc.keys)
			}
			if (tc.keys == 0) != (err != nil) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestConcurrentFirstUseFetchesOnce(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, devissuer.Options{})
	a := newAuth(t, clk, IssuerConfig{Issuer: iss.URL(), Audiences: []string{testAud}})
	toks := make([]string, 50)
	for n := range toks {
		toks[n] = mint(t, iss, map[string]any{"sub": fmt.Sprint("user-", n), "aud": testAud})
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, tok := range toks {
		wg.Go(func() {
			if _, err := a.Authenticate(context.Background(), tok); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d concurrent first tokens refused", failed.Load())
	}
	if d, j := iss.DiscoveryRequests(), iss.JWKSRequests(); d != 1 || j != 1 {
		t.Errorf("discovery/JWKS fetches = %d/%d, want 1/1", d, j)
	}
}

// TestClaimRoles: the roles of a sign-in (internal/oauth) are read exactly
// as a token's: a claim whose name contains dots wins over the path.
func TestClaimRoles(t *testing.T) {
	claims := map[string]any{
		"https://acme.example/roles": []any{"admin"},
		"realm_access":               map[string]any{"roles": []any{"support", 7}},
		"groups":                     "a b",
	}
	for path, want := range map[string]string{
		"https://acme.example/roles": "admin",
		"realm_access.roles":         "support",
		"groups":                     "a,b",
		"missing":                    "",
	} {
		if got := strings.Join(ClaimRoles(claims, path), ","); got != want {
			t.Errorf("ClaimRoles(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestLiveAudience: a token for a live environment's resource is accepted
// only through Config.LiveAudience, marked as not for a configured audience;
// once the environment is gone, it is refused.
func TestLiveAudience(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, devissuer.Options{})
	const preview = "http://127.0.0.1:9/env/pr-1/mcp"
	live := true
	a, err := New(context.Background(), Config{Issuers: []IssuerConfig{{Issuer: iss.URL(), Audiences: []string{testAud}}}, Now: clk.Now,
		CacheSize: -1, LiveAudience: func(aud string) bool { return live && aud == preview }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := a.Authenticate(ctx, mint(t, iss, map[string]any{"sub": "a", "aud": preview}))
	if err != nil || !p.LiveAudienceOnly || !slices.Equal(p.Audiences, []string{preview}) {
		t.Fatalf("preview token: %+v %v, want accepted with LiveAudienceOnly", p, err)
	}
	p, err = a.Authenticate(ctx, mint(t, iss, map[string]any{"sub": "a", "aud": []any{preview, testAud}}))
	if err != nil || p.LiveAudienceOnly {
		t.Fatalf("token for both: %+v %v, want not LiveAudienceOnly", p, err)
	}
	if _, err := a.Authenticate(ctx, mint(t, iss, map[string]any{"sub": "a", "aud": "http://127.0.0.1:9/env/pr-2/mcp"})); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token for an unknown environment: %v, want invalid", err)
	}
	live = false
	if _, err := a.Authenticate(ctx, mint(t, iss, map[string]any{"sub": "a", "aud": preview})); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token for a retired environment: %v, want invalid", err)
	}
}
