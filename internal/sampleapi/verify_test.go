package sampleapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testVerification points at nothing: enough for tests that never send an
// assertion.
var testVerification = Verification{JWKSURL: "http://127.0.0.1:1/.well-known/jwks.json", Issuer: "http://127.0.0.1:1", Audience: "crm"}

// testGateway is a signing key whose public half is served as a JWKS, like
// the gateway's /.well-known/jwks.json.
type testGateway struct {
	key  *ecdsa.PrivateKey
	kid  string
	jwks string // URL
}

func newTestGateway(t *testing.T) *testGateway {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g := &testGateway{key: key, kid: "k1"}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: g.kid, Algorithm: string(jose.ES256), Use: "sig"}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	g.jwks = srv.URL + "/.well-known/jwks.json"
	return g
}

func (g *testGateway) sign(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: g.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestStartRequiresVerification(t *testing.T) {
	for _, v := range []Verification{{}, {JWKSURL: "http://x/jwks", Issuer: "http://x"}, {Issuer: "http://x", Audience: "crm"}} {
		if _, stop, err := Start(t.Context(), "127.0.0.1:0", v); err == nil {
			_ = stop(context.Background())
			t.Errorf("Start with %+v served without verifying assertions", v)
		}
	}
}

// TestSampleAPIVerifiesAssertion: the demo's sample API answers only calls
// carrying a valid gateway assertion (the attack: curl on it returned card
// numbers without any token).
func TestSampleAPIVerifiesAssertion(t *testing.T) {
	g := newTestGateway(t)
	const issuer = "http://127.0.0.1:8080"
	url, stop, err := Start(t.Context(), "127.0.0.1:0", Verification{JWKSURL: g.jwks, Issuer: issuer, Audience: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	now := time.Now()
	claims := func(over map[string]any) map[string]any {
		c := map[string]any{"iss": issuer, "aud": "crm", "sub": "alice", "act": map[string]any{"sub": "copilot"},
			"roles": []string{"support"}, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "a-1"}
		for k, v := range over {
			c[k] = v
		}
		return c
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	get := func(path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	valid := g.sign(t, g.key, claims(nil))
	for name, auth := range map[string]string{
		"no token":           "",
		"not bearer":         "Basic YWxpY2U6eA==",
		"garbage":            "Bearer not-a-jwt",
		"expired":            "Bearer " + g.sign(t, g.key, claims(map[string]any{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(-time.Minute).Unix()})),
		"another audience":   "Bearer " + g.sign(t, g.key, claims(map[string]any{"aud": "billing"})),
		"another issuer":     "Bearer " + g.sign(t, g.key, claims(map[string]any{"iss": "http://evil.example"})),
		"another key":        "Bearer " + g.sign(t, other, claims(nil)),
		"alg none":           "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(valid, ".")[1] + ".",
		"tampered signature": "Bearer " + valid[:len(valid)-4] + "AAAA",
	} {
		for _, path := range []string{"/customers", "/customers/c-1", "/whoami"} {
			code, body := get(path, auth)
			if code != http.StatusUnauthorized || strings.Contains(body, "4111") || !strings.Contains(body, `"detail"`) {
				t.Errorf("%s on %s: %d %s, want 401", name, path, code, body)
			}
		}
	}
	if code, body := get("/customers/c-1", "Bearer "+valid); code != http.StatusOK || !strings.Contains(body, `"customer_id":"c-1"`) {
		t.Errorf("valid assertion: %d %s", code, body)
	}
	code, body := get("/whoami", "Bearer "+valid)
	var who map[string]any
	_ = json.Unmarshal([]byte(body), &who)
	if claims, _ := who["assertion_claims"].(map[string]any); code != http.StatusOK || who["verified"] != true || claims["sub"] != "alice" {
		t.Errorf("whoami with a valid assertion: %d %s", code, body)
	}
	for _, path := range []string{"/openapi.json", "/health"} {
		if code, _ := get(path, ""); code != http.StatusOK {
			t.Errorf("%s without an assertion: %d, want 200 (no data, fetched before any call)", path, code)
		}
	}
}
