package delegation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// *Keys plugs into go-oidc as a KeySet.
var _ oidc.KeySet = (*Keys)(nil)

type countingStore struct {
	KeyStore
	reads atomic.Int32
	fail  atomic.Bool
}

func (s *countingStore) PublishedKeys(ctx context.Context) ([][]byte, error) {
	s.reads.Add(1)
	if s.fail.Load() {
		return nil, errors.New("store down")
	}
	return s.KeyStore.PublishedKeys(ctx)
}

func (s *countingStore) PublishKey(ctx context.Context, kid string, jwk []byte, until time.Time) error {
	if s.fail.Load() {
		return errors.New("store down")
	}
	return s.KeyStore.PublishKey(ctx, kid, jwk, until)
}

func kids(t *testing.T, set []byte) []string {
	t.Helper()
	var s struct {
		Keys []struct {
			Kid string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(set, &s); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range s.Keys {
		if k.D != "" {
			t.Fatalf("JWKS leaks a private key (%s)", k.Kid)
		}
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}

func signExp(t *testing.T, k *Keys, c *clock, ttl time.Duration) string {
	t.Helper()
	tok, err := k.Sign(context.Background(), map[string]any{"sub": "x", "exp": c.Now().Add(ttl).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestKeyRotationAcrossRestart(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	store := NewMemoryKeyStore()
	store.now = c.Now
	opts := KeyOptions{MaxTokenTTL: 15 * time.Minute, PublishWindow: time.Hour, Now: c.Now}

	k1, err := NewKeys(ctx, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok1 := signExp(t, k1, c, 15*time.Minute)

	c.Advance(time.Minute) // "restart"
	k2, err := NewKeys(ctx, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	if k1.KeyID() == k2.KeyID() {
		t.Fatal("a restart must make a new key")
	}
	if _, err := k2.VerifySignature(ctx, tok1); err != nil {
		t.Fatalf("new replica rejects the old key's token: %v", err)
	}
	tok2 := signExp(t, k2, c, time.Minute)
	hdr, _ := stdVerify(t, jwks(t, k2), tok2)
	if hdr["kid"] != k2.KeyID() {
		t.Errorf("new token signed by %v, want %s", hdr["kid"], k2.KeyID())
	}
	stdVerify(t, jwks(t, k2), tok1)
	want := []string{k1.KeyID(), k2.KeyID()}
	slices.Sort(want)
	if got := kids(t, jwks(t, k2)); !slices.Equal(got, want) {
		t.Errorf("JWKS kids = %v, want %v", got, want)
	}
	// The old replica, still running, verifies the new one's tokens too.
	if _, err := k1.VerifySignature(ctx, tok2); err != nil {
		t.Errorf("old replica rejects the new key's token: %v", err)
	}

	// Past PublishWindow + MaxTokenTTL the first key is gone everywhere.
	c.Advance(time.Hour + 15*time.Minute)
	if got := kids(t, jwks(t, k2)); !slices.Equal(got, []string{k2.KeyID()}) {
		t.Errorf("after expiry JWKS kids = %v, want only %s", got, k2.KeyID())
	}
	k3, err := NewKeys(ctx, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k3.VerifySignature(ctx, tok1); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("expired key still verifies: err = %v", err)
	}
}

func TestSignExtendsPublication(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	store := NewMemoryKeyStore()
	store.now = c.Now
	k, err := NewKeys(ctx, store, KeyOptions{MaxTokenTTL: 10 * time.Minute, PublishWindow: 30 * time.Minute, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	// Keep signing for two hours: the key must stay published the whole time,
	// and at least MaxTokenTTL past the last signature.
	for range 24 {
		c.Advance(5 * time.Minute)
		tok := signExp(t, k, c, 10*time.Minute)
		c.Advance(9 * time.Minute)
		other, err := NewKeys(ctx, store, KeyOptions{MaxTokenTTL: 10 * time.Minute, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.VerifySignature(ctx, tok); err != nil {
			t.Fatalf("at %s a live token's key is no longer published: %v", c.Now(), err)
		}
		c.Advance(-9 * time.Minute)
	}
}

func TestSignRefuses(t *testing.T) {
	c := newClock()
	k, err := NewKeys(context.Background(), NewMemoryKeyStore(), KeyOptions{MaxTokenTTL: time.Minute, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
	}{
		{"no exp", map[string]any{"sub": "x"}},
		{"string exp", map[string]any{"exp": "tomorrow"}},
		{"exp beyond MaxTokenTTL", map[string]any{"exp": c.Now().Add(2 * time.Minute).Unix()}},
		{"unmarshalable", map[string]any{"exp": c.Now().Unix(), "f": func() {}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := k.Sign(context.Background(), tc.claims); err == nil {
				t.Errorf("Sign succeeded: %q", tok)
			}
		})
	}
}

func TestNewKeysFailsClosed(t *testing.T) {
	if _, err := NewKeys(context.Background(), nil, KeyOptions{}); err == nil {
		t.Error("nil store accepted")
	}
	s := &countingStore{KeyStore: NewMemoryKeyStore()}
	s.fail.Store(true)
	if _, err := NewKeys(context.Background(), s, KeyOptions{}); err == nil {
		t.Error("unpublishable key accepted")
	}
}

func TestVerifySignatureRejects(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	good := signExp(t, e.keys, e.clock, time.Minute)
	parts := strings.Split(good, ".")
	for _, tc := range []struct {
		name, tok string
	}{
		{"empty", ""},
		{"garbage", "a.b.c"},
		{"other key", signExp(t, e.rogue, e.clock, time.Minute)},
		{"tampered", tamper(t, good, "sub", "mallory")},
		{"alg none", "eyJhbGciOiJub25lIiwia2lkIjoieCJ9." + parts[1] + "."},
		{"hs256", "eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ." + parts[1] + "." + parts[2]},
		{"no signature", parts[0] + "." + parts[1] + "."},
		{"too large", parts[0] + "." + strings.Repeat("A", maxJWTLen) + "." + parts[2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.keys.VerifySignature(ctx, tc.tok); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := e.keys.VerifySignature(ctx, good); err != nil {
		t.Errorf("good token rejected: %v", err)
	}
}

func TestUnknownKidRefreshIsThrottled(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := &countingStore{KeyStore: NewMemoryKeyStore()}
	k, err := NewKeys(ctx, s, KeyOptions{RefreshInterval: 2 * time.Second, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewKeys(ctx, NewMemoryKeyStore(), KeyOptions{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	foreign := signExp(t, other, c, time.Minute)
	for range 10 {
		if _, err := k.VerifySignature(ctx, foreign); err == nil {
			t.Fatal("foreign token accepted")
		}
	}
	if n := s.reads.Load(); n != 1 {
		t.Errorf("store read %d times for 10 unknown kids in one interval, want 1", n)
	}
	c.Advance(2 * time.Second)
	_, _ = k.VerifySignature(ctx, foreign)
	if n := s.reads.Load(); n != 2 {
		t.Errorf("store read %d times after the interval, want 2", n)
	}
	// A store failure fails verification of unknown kids closed.
	s.fail.Store(true)
	c.Advance(2 * time.Second)
	if _, err := k.VerifySignature(ctx, foreign); err == nil || errors.Is(err, ErrUnknownKey) {
		t.Errorf("store failure: err = %v, want a store error", err)
	}
}

func TestBadPublishedKeysIgnored(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryKeyStore()
	k, err := NewKeys(ctx, store, KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	other, err := NewKeys(ctx, NewMemoryKeyStore(), KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wrongKid map[string]any
	if err := json.Unmarshal(other.jwk, &wrongKid); err != nil {
		t.Fatal(err)
	}
	wrongKid["kid"] = "chosen-by-attacker"
	wk, _ := json.Marshal(wrongKid)
	for kid, jwk := range map[string][]byte{
		"garbage":   []byte("{not json"),
		"symmetric": []byte(`{"kty":"oct","k":"c2VjcmV0","kid":"sym"}`),
		"wrong kid": wk,
	} {
		if err := store.PublishKey(ctx, kid, jwk, until); err != nil {
			t.Fatal(err)
		}
	}
	if got := kids(t, jwks(t, k)); !slices.Equal(got, []string{k.KeyID()}) {
		t.Errorf("JWKS kids = %v, want only the valid key", got)
	}
}

func TestJWKSHandler(t *testing.T) {
	s := &countingStore{KeyStore: NewMemoryKeyStore()}
	c := newClock()
	k, err := NewKeys(context.Background(), s, KeyOptions{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(k.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Keys []map[string]any `json:"keys"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(body.Keys) != 1 {
		t.Fatalf("GET: status %d, %d keys, err %v", resp.StatusCode, len(body.Keys), err)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("Cache-Control = %q", cc)
	}
	if got := body.Keys[0]; got["kid"] != k.KeyID() || got["alg"] != "ES256" || got["use"] != "sig" || got["d"] != nil {
		t.Errorf("key = %v", got)
	}

	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", resp.StatusCode)
	}

	s.fail.Store(true)
	c.Advance(time.Minute)
	resp, err = http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("store down: status %d, want 503", resp.StatusCode)
	}
}

// The gateway's own delegation tokens verify through go-oidc with *Keys as
// its KeySet, as the lead wires it.
func TestGoOIDCVerifierWithKeys(t *testing.T) {
	e := newEnv(t)
	rep := e.mustExchange(t, e.form(e.humanToken(t, map[string]any{"azp": "agent-42"}), "", "tool:crm_*"))
	v := oidc.NewVerifier(testIssuer, e.keys, &oidc.Config{
		ClientID: testAudience, SupportedSigningAlgs: []string{oidc.ES256}, Now: e.clock.Now,
	})
	tok, err := v.Verify(context.Background(), rep.AccessToken)
	if err != nil {
		t.Fatalf("go-oidc: %v", err)
	}
	if tok.Subject != "alice" {
		t.Errorf("sub = %q", tok.Subject)
	}
	if _, err := v.Verify(context.Background(), tamper(t, rep.AccessToken, "sub", "mallory")); err == nil {
		t.Error("go-oidc accepted a tampered token")
	}
}

func TestSignSurvivesBriefStoreOutage(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := &countingStore{KeyStore: NewMemoryKeyStore()}
	k, err := NewKeys(ctx, s, KeyOptions{MaxTokenTTL: 10 * time.Minute, PublishWindow: 30 * time.Minute, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.fail.Store(true)
	// Published until t0+40m: a token expiring by then can still be signed
	// even though the extension fails...
	c.Advance(25 * time.Minute)
	signExp(t, k, c, 10*time.Minute)
	// ...one expiring after it cannot.
	c.Advance(10 * time.Minute)
	if _, err := k.Sign(ctx, map[string]any{"exp": c.Now().Add(10 * time.Minute).Unix()}); err == nil {
		t.Error("signed a token that outlives the key's publication")
	}
	s.fail.Store(false)
	signExp(t, k, c, 10*time.Minute)
}

// wipeableStore is a key store that can lose its data, like a restarted Redis.
type wipeableStore struct{ *MemoryKeyStore }

func (w *wipeableStore) wipe() {
	fresh := NewMemoryKeyStore()
	fresh.now = w.now
	w.MemoryKeyStore = fresh
}

func TestKeyRepublishedAfterStoreLoss(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	mem := NewMemoryKeyStore()
	mem.now = c.Now
	store := &wipeableStore{mem}
	a, err := NewKeys(ctx, store, KeyOptions{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	store.wipe()
	// A replica started after the loss cannot verify what a signs…
	b, err := NewKeys(ctx, store, KeyOptions{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok := signExp(t, a, c, time.Minute)
	if _, err := b.VerifySignature(ctx, tok); err == nil {
		t.Fatal("verified a token whose key was never republished")
	}
	// …until a's maintenance loop republishes it.
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	maintained := make(chan struct{})
	go func() { a.Maintain(mctx, 5*time.Millisecond); close(maintained) }()
	var verr error
	for i := 0; i < 400; i++ {
		c.Advance(3 * time.Second) // past b's refresh throttle
		if _, verr = b.VerifySignature(ctx, tok); verr == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if verr != nil {
		t.Fatalf("the key was not republished after the store lost it: %v", verr)
	}
	stop()
	<-maintained

	// A refresh that finds the own key missing republishes it at once.
	store.wipe()
	c.Advance(3 * time.Second)
	if _, err := a.VerifySignature(ctx, "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vcGUifQ.e30.AAAA"); err == nil {
		t.Fatal("unknown kid verified")
	}
	raws, err := store.PublishedKeys(ctx)
	if err != nil || len(raws) != 1 {
		t.Fatalf("after a refresh found its key missing, the store holds %d keys (%v)", len(raws), err)
	}
}

// TestAccessTokenKeySetRefusesOtherTypes: an upstream assertion, signed with
// the same key, never passes for a delegation token.
func TestAccessTokenKeySetRefusesOtherTypes(t *testing.T) {
	ctx := context.Background()
	k, err := NewKeys(ctx, NewMemoryKeyStore(), KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := k.Assert(ctx, Assertion{Issuer: "https://gw", Audience: "https://gw/mcp", Subject: "alice", Actor: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.VerifySignature(ctx, assertion); err != nil {
		t.Fatalf("the plain key set refused a valid signature: %v", err)
	}
	if _, err := k.AccessTokenKeySet().VerifySignature(ctx, assertion); err == nil {
		t.Error("an upstream assertion passed the delegation-token key set")
	}
}
