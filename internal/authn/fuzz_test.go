package authn

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/devissuer"
	"github.com/coreos/go-oidc/v3/oidc"
)

// FuzzAuthenticate feeds arbitrary strings to Authenticate: it must never
// panic, must refuse with ErrInvalidToken, and must accept nothing but the
// one valid token of the seed corpus.
func FuzzAuthenticate(f *testing.F) {
	clk := newClock()
	iss, err := devissuer.New(devissuer.Options{Issuer: "https://issuer.test", Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	a, err := New(context.Background(), Config{
		Issuers: []IssuerConfig{{Issuer: iss.URL(), Audiences: []string{testAud}, RolesClaim: "realm.roles",
			KeySet: &oidc.StaticKeySet{PublicKeys: iss.PublicKeys()}}},
		Now: clk.Now, CacheSize: -1,
	})
	if err != nil {
		f.Fatal(err)
	}
	valid := mint(f, iss, map[string]any{"sub": "alice", "aud": testAud, "realm": map[string]any{"roles": []any{"a"}}, "act": map[string]any{"sub": "x", "act": map[string]any{"sub": "y"}}})
	parts := strings.Split(valid, ".")
	none, err := iss.SignRaw(map[string]any{"alg": "none"}, map[string]any{"iss": iss.URL(), "sub": "a", "aud": testAud})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		valid, none, "", ".", "..", "a.b.c", parts[0] + "." + parts[1] + ".", parts[0] + ".." + parts[2],
		"eyJhbGciOiJSUzI1NiJ9.e30.AAAA", "eyJhbGciOiJFUzI1NiIsImNyaXQiOlsiYiJdfQ.e30.AA",
		parts[1] + "." + parts[0] + "." + parts[2], valid + valid,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := a.Authenticate(context.Background(), raw)
		if raw == valid {
			if err != nil {
				t.Fatalf("valid token refused: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("accepted a mutated token: %+v", p)
		}
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("err = %v, want ErrInvalidToken", err)
		}
		if len(raw) > 16 && strings.Contains(err.Error(), raw) {
			t.Fatal("error message contains the token")
		}
	})
}

func benchSetup(b *testing.B, cacheSize int) (*Authenticator, string) {
	clk := newClock()
	iss, err := devissuer.New(devissuer.Options{Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	if err := iss.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = iss.Close() })
	a, err := New(context.Background(), Config{
		Issuers:   []IssuerConfig{{Issuer: iss.URL(), Audiences: []string{testAud}}},
		Now:       clk.Now,
		CacheSize: cacheSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := iss.Mint(map[string]any{"sub": "alice", "aud": testAud, "roles": []any{"a", "b"}, "azp": "agent"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Ready(context.Background()); err != nil {
		b.Fatal(err)
	}
	return a, tok
}

// BenchmarkAuthenticateCold verifies an ES256 token with the cache disabled
// (keys already fetched): parse, signature check and claims every time.
func BenchmarkAuthenticateCold(b *testing.B) {
	a, tok := benchSetup(b, -1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateCached verifies the same token from the cache.
func BenchmarkAuthenticateCached(b *testing.B) {
	a, tok := benchSetup(b, 0)
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Authenticate(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
