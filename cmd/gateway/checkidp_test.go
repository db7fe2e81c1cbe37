package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/devissuer"
)

// TestValidateCheckIdP runs `gateway validate --check-idp` against the
// development issuer: discovery and keys, then what a sample token maps to.
func TestValidateCheckIdP(t *testing.T) {
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	dir := t.TempDir()
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := write("harness.yaml", fmt.Sprintf(`auth:
  issuers:
    - issuer: %s
      roles_claim: groups
oauth:
  login_issuer: %s
  client_id: harness
audit: {path: %s}
`, iss.URL(), iss.URL(), filepath.Join(dir, "audit.log")))
	mint := func(claims map[string]any) string {
		tok, err := iss.Mint(claims, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return write("token-"+fmt.Sprint(len(claims))+".jwt", tok)
	}
	other, _ := devissuer.New(devissuer.Options{Issuer: "http://127.0.0.1:1"})
	foreign, _ := other.Mint(map[string]any{"sub": "x"}, time.Hour)

	tests := []struct {
		name    string
		args    []string
		wantErr bool
		want    []string
	}{
		{"no token", nil, false, []string{"issuer matches", "JWKS: 1 key(s)", "offline_access", `"groups" claim`, "identity providers: ok"}},
		{"token with roles", []string{"--token-file", mint(map[string]any{"sub": "CiQw", "aud": "harness", "azp": "agent-cli", "groups": []string{"support", "viewer"}, "email": "a@x"})},
			false, []string{"signature verified", "roles support, viewer", `agent "agent-cli"`, "no name claim"}},
		{"token without the claim", []string{"--token-file", mint(map[string]any{"sub": "u", "aud": "harness", "roles": []string{"admin"}})},
			true, []string{`no "groups" claim, so no roles`, "groups scope", "no agent"}},
		{"token of another issuer", []string{"--token-file", write("foreign.jwt", foreign)}, true, []string{"none of auth.issuers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"validate", "--config", cfg, "--check-idp"}, tt.args...), &out, &out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v\n%s", err, tt.wantErr, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}

	// An issuer that cannot be reached is a problem, named.
	down := write("down.yaml", "auth: {issuers: [{issuer: \"http://127.0.0.1:1\"}]}\naudit: {path: "+filepath.Join(dir, "a2.log")+"}\n")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"validate", "--config", down, "--check-idp"}, &out, &out); err == nil || !strings.Contains(out.String(), "discovery at http://127.0.0.1:1/.well-known/openid-configuration failed") {
		t.Errorf("unreachable issuer: err %v\n%s", err, out.String())
	}
}
