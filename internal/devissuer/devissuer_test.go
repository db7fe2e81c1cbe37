package devissuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

func start(t *testing.T, opts Options) *Issuer {
	t.Helper()
	i, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := i.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = i.Close() })
	return i
}

func TestMintVerifiesWithGoOIDC(t *testing.T) {
	for _, alg := range []string{ES256, RS256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			i := start(t, Options{Algorithm: alg, Audience: "gw"})
			ctx := context.Background()
			p, err := oidc.NewProvider(ctx, i.URL())
			if err != nil {
				t.Fatalf("discovery: %v", err)
			}
			tok, err := i.Mint(map[string]any{"sub": "alice"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			idt, err := p.Verifier(&oidc.Config{ClientID: "gw"}).Verify(ctx, tok)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			var c map[string]any
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"iss", "iat", "nbf", "exp", "jti", "aud"} {
				if _, ok := c[k]; !ok {
					t.Errorf("claim %s not filled in", k)
				}
			}
			if idt.Subject != "alice" || c["iss"] != i.URL() {
				t.Errorf("claims = %v", c)
			}
		})
	}
}

func TestMintKeepsGivenClaims(t *testing.T) {
	i, err := New(Options{Issuer: "https://dev.test", Audience: "default"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := i.Mint(map[string]any{"iss": "https://other", "aud": "mine", "jti": "j", "exp": 5}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := payload(t, tok)
	want := map[string]any{"iss": "https://other", "aud": "mine", "jti": "j", "exp": float64(5)}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
}

func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRotateKeepsOldKeyPublished(t *testing.T) {
	i := start(t, Options{})
	old := i.KeyID()
	if err := i.Rotate(); err != nil {
		t.Fatal(err)
	}
	if i.KeyID() == old {
		t.Fatal("kid unchanged after Rotate")
	}
	resp, err := http.Get(i.URL() + JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kid, Alg, Use, Kty string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || set.Keys[0].Kid != old || set.Keys[1].Kid != i.KeyID() || set.Keys[1].Alg != ES256 || set.Keys[1].Use != "sig" {
		t.Errorf("jwks = %+v", set)
	}
	if i.JWKSRequests() != 1 {
		t.Errorf("JWKSRequests = %d", i.JWKSRequests())
	}
	if len(i.PublicKeys()) != 2 {
		t.Errorf("PublicKeys = %d", len(i.PublicKeys()))
	}
	tok, err := i.Mint(nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if h := header(t, tok); h["kid"] != i.KeyID() || h["alg"] != ES256 || h["typ"] != "JWT" {
		t.Errorf("header = %v", h)
	}
}

func TestSignRaw(t *testing.T) {
	i, err := New(Options{Issuer: "https://dev.test"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		header  map[string]any
		wantErr bool
		wantSig bool
		check   func(h map[string]any) bool
	}{
		{"defaults", nil, false, true, func(h map[string]any) bool { return h["alg"] == ES256 && h["kid"] == i.KeyID() }},
		{"alg none", map[string]any{"alg": "none"}, false, false, func(h map[string]any) bool { return h["alg"] == "none" }},
		{"chosen kid", map[string]any{"kid": "k"}, false, true, func(h map[string]any) bool { return h["kid"] == "k" }},
		{"kid omitted", map[string]any{"kid": nil}, false, true, func(h map[string]any) bool { _, ok := h["kid"]; return !ok }},
		{"hmac refused", map[string]any{"alg": "HS256"}, true, false, nil},
		{"alg for another key type", map[string]any{"alg": RS256}, true, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := i.SignRaw(tc.header, map[string]any{"sub": "x"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if sig := strings.Split(tok, ".")[2]; (sig != "") != tc.wantSig {
				t.Errorf("signature %q, want present=%v", sig, tc.wantSig)
			}
			if !tc.check(header(t, tok)) {
				t.Errorf("header = %v", header(t, tok))
			}
			if c := payload(t, tok); len(c) != 1 {
				t.Errorf("SignRaw added claims: %v", c)
			}
		})
	}
}

func TestHandlerWithPathIssuer(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	i, err := New(Options{Issuer: srv.URL + "/realms/dev"})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/realms/dev/", i.Handler())
	p, err := oidc.NewProvider(context.Background(), i.URL())
	if err != nil {
		t.Fatalf("discovery under a path: %v", err)
	}
	if p.Endpoint().TokenURL != i.URL()+TokenPath {
		t.Errorf("token endpoint = %q", p.Endpoint().TokenURL)
	}
	for path, want := range map[string]int{"/realms/dev/token": 400, "/realms/dev/nope": 404, "/realms/dev/authorize": 501, "/realms/dev/jwks": 200} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestNewAndLifecycleErrors(t *testing.T) {
	for name, opts := range map[string]Options{
		"bad alg":        {Algorithm: "HS256"},
		"relative url":   {Issuer: "dev.test"},
		"url with query": {Issuer: "https://dev.test?x=1"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(opts); err == nil {
				t.Error("New succeeded")
			}
		})
	}
	i, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.Mint(nil, time.Minute); err == nil {
		t.Error("Mint without issuer url succeeded")
	}
	rec := httptest.NewRecorder()
	i.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DiscoveryPath, nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("discovery before Start: %d", rec.Code)
	}
	if err := i.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := i.Start("127.0.0.1:0"); err == nil {
		t.Error("second Start succeeded")
	}
	if err := i.Close(); err != nil {
		t.Error(err)
	}
	if err := i.Close(); err != nil {
		t.Error(err)
	}
	if _, err := http.Get(i.URL() + DiscoveryPath); err == nil {
		t.Error("server still answering after Close")
	}
}
