package delegation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testIssuer   = "https://gw.example.test"
	testAudience = "https://gw.example.test/mcp"
	idpIssuer    = "https://idp.example.test"
)

var t0 = time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

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

// fakeVerifier plays the lead's TokenVerifier: tokens of the test IdP
// (signed by idp), our own delegation tokens (via Exchange.VerifyDelegation),
// and a few hand-made subjects for cases real tokens cannot express.
type fakeVerifier struct {
	clock *clock
	idp   *Keys
	ex    *Exchange
	fixed map[string]*Subject
}

func (v *fakeVerifier) VerifyToken(ctx context.Context, raw string) (*Subject, error) {
	if s, ok := v.fixed[raw]; ok {
		return s, nil
	}
	// Route by the unverified iss; everything is verified below.
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a jwt")
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("bad payload encoding")
	}
	var peek struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(body, &peek); err != nil {
		return nil, errors.New("bad payload")
	}
	if peek.Iss == testIssuer {
		c, err := v.ex.VerifyDelegation(ctx, raw)
		if err != nil {
			return nil, err
		}
		return c.AsSubject(), nil
	}
	payload, err := v.idp.VerifySignature(ctx, raw)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, err
	}
	if m["iss"] != idpIssuer {
		return nil, errors.New("untrusted issuer")
	}
	exp, ok := numericDate(m["exp"])
	if !ok || !v.clock.Now().Before(exp) {
		return nil, errors.New("expired")
	}
	s := &Subject{Issuer: idpIssuer, Claims: m}
	s.Subject, _ = m["sub"].(string)
	s.Email, _ = m["email"].(string)
	s.Name, _ = m["name"].(string)
	s.Agent, _ = m["azp"].(string)
	s.Roles, _ = stringList(m["groups"])
	return s, nil
}

type env struct {
	clock    *clock
	store    *MemoryKeyStore
	keys     *Keys
	idp      *Keys
	rogue    *Keys // a key nobody trusts
	rev      *MemoryRevocations
	ex       *Exchange
	verifier *fakeVerifier
	issued   []Issued
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	c := newClock()
	e := &env{clock: c, store: NewMemoryKeyStore(), rev: NewMemoryRevocations()}
	e.store.now = c.Now
	e.rev.now = c.Now
	var err error
	if e.keys, err = NewKeys(ctx, e.store, KeyOptions{MaxTokenTTL: time.Hour, Now: c.Now}); err != nil {
		t.Fatal(err)
	}
	idpStore := NewMemoryKeyStore()
	idpStore.now = c.Now
	if e.idp, err = NewKeys(ctx, idpStore, KeyOptions{MaxTokenTTL: 24 * time.Hour, Now: c.Now}); err != nil {
		t.Fatal(err)
	}
	if e.rogue, err = NewKeys(ctx, NewMemoryKeyStore(), KeyOptions{MaxTokenTTL: 24 * time.Hour, Now: c.Now}); err != nil {
		t.Fatal(err)
	}
	e.verifier = &fakeVerifier{clock: c, idp: e.idp, fixed: map[string]*Subject{}}
	e.ex = &Exchange{
		Keys:        e.keys,
		Verifier:    e.verifier,
		Revocations: e.rev,
		Issuer:      testIssuer,
		Audience:    testAudience,
		MaxTTL:      15 * time.Minute,
		Now:         c.Now,
		OnIssue:     func(_ context.Context, iss Issued) error { e.issued = append(e.issued, iss); return nil },
	}
	e.verifier.ex = e.ex
	return e
}

// humanToken mints an IdP token for alice, valid for an hour, with overrides
// (a nil value deletes a claim).
func (e *env) humanToken(t testing.TB, over map[string]any) string {
	t.Helper()
	now := e.clock.Now()
	claims := map[string]any{
		"iss":    idpIssuer,
		"aud":    testAudience,
		"sub":    "alice",
		"email":  "alice@example.test",
		"name":   "Alice",
		"groups": []string{"support"},
		"iat":    now.Unix(),
		"exp":    now.Add(time.Hour).Unix(),
	}
	for k, v := range over {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	tok, err := e.idp.Sign(context.Background(), claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) agentToken(t testing.TB, agent string) string {
	t.Helper()
	return e.humanToken(t, map[string]any{"sub": agent, "email": nil, "name": nil, "groups": nil})
}

func (e *env) form(subject, actor, scope string) url.Values {
	f := url.Values{
		"grant_type":         {GrantTypeTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {TokenTypeAccessToken},
		"scope":              {scope},
	}
	if actor != "" {
		f.Set("actor_token", actor)
		f.Set("actor_token_type", TokenTypeJWT)
	}
	return f
}

func post(t testing.TB, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

type tokenReply struct {
	AccessToken      string `json:"access_token"`
	IssuedTokenType  string `json:"issued_token_type"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (e *env) exchange(t testing.TB, f url.Values) (int, tokenReply) {
	t.Helper()
	w := post(t, e.ex.TokenHandler(), f.Encode())
	var rep tokenReply
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("response is not JSON: %v: %q", err, w.Body.String())
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	return w.Code, rep
}

func (e *env) mustExchange(t testing.TB, f url.Values) tokenReply {
	t.Helper()
	code, rep := e.exchange(t, f)
	if code != http.StatusOK {
		t.Fatalf("exchange: status %d, %s: %s", code, rep.Error, rep.ErrorDescription)
	}
	return rep
}

// stdVerify checks a compact ES256 JWS with the standard library alone,
// against the JWK Set jwks, and returns its header and claims.
func stdVerify(t testing.TB, jwks []byte, tok string) (map[string]any, map[string]any) {
	t.Helper()
	var set struct {
		Keys []struct {
			Kty, Crv, Kid, X, Y, Alg string
		} `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("jwks: %v", err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var hdr, claims map[string]any
	decode := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("base64: %v", err)
		}
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("json: %v", err)
			}
		}
	}
	decode(parts[0], &hdr)
	decode(parts[1], &claims)
	if hdr["alg"] != "ES256" {
		t.Fatalf("alg = %v", hdr["alg"])
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %v (len %d)", err, len(sig))
	}
	for _, k := range set.Keys {
		if k.Kid != hdr["kid"] {
			continue
		}
		if k.Kty != "EC" || k.Crv != "P-256" {
			t.Fatalf("key %s is %s/%s", k.Kid, k.Kty, k.Crv)
		}
		x, err1 := base64.RawURLEncoding.DecodeString(k.X)
		y, err2 := base64.RawURLEncoding.DecodeString(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			t.Fatalf("bad coordinates in jwk %s", k.Kid)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			t.Fatal(err)
		}
		// RFC 7638 thumbprint of the key must be its kid.
		tp := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + k.X + `","y":"` + k.Y + `"}`))
		if base64.RawURLEncoding.EncodeToString(tp[:]) != k.Kid {
			t.Errorf("kid %s is not the RFC 7638 thumbprint", k.Kid)
		}
		h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(pub, h[:], r, s) {
			t.Fatal("signature does not verify")
		}
		return hdr, claims
	}
	t.Fatalf("kid %v not in JWKS", hdr["kid"])
	return nil, nil
}

func jwks(t testing.TB, k *Keys) []byte {
	t.Helper()
	b, err := k.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamper flips the payload of a compact JWS so the signature no longer matches.
func tamper(t testing.TB, tok string, key string, val any) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = val
	b, _ = json.Marshal(m)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}
