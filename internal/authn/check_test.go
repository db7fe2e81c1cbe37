package authn

import (
	"encoding/base64"
	"testing"
)

func FuzzTokenIssuer(f *testing.F) {
	f.Add("a.b.c")
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://idp"}`)) + ".")
	f.Fuzz(func(t *testing.T, tok string) {
		_ = TokenIssuer(tok) // never panics
	})
}

func TestTokenIssuer(t *testing.T) {
	tok := "e30." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://idp.example"}`)) + ".sig"
	if got := TokenIssuer(tok); got != "https://idp.example" {
		t.Errorf("TokenIssuer = %q", got)
	}
	for _, bad := range []string{"", "x", "a.!!.c", "a.e30"} {
		if got := TokenIssuer(bad); got != "" {
			t.Errorf("TokenIssuer(%q) = %q", bad, got)
		}
	}
}
