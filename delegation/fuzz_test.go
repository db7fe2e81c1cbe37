package delegation

import (
	"net/http"
	"net/url"
	"testing"
)

// FuzzTokenRequest throws arbitrary form bodies at the token endpoint: it
// must never panic, always answer JSON with no-store, and never issue a token
// for a body that does not carry a valid subject token.
func FuzzTokenRequest(f *testing.F) {
	e := newEnv(f)
	human := e.humanToken(f, map[string]any{"azp": "agent-42"})
	valid := e.form(human, "", "tool:crm_*").Encode()
	f.Add(valid)
	f.Add("")
	f.Add("grant_type=" + url.QueryEscape(GrantTypeTokenExchange))
	f.Add("grant_type=" + url.QueryEscape(GrantTypeTokenExchange) + "&subject_token=x&subject_token_type=" +
		url.QueryEscape(TokenTypeJWT) + "&scope=tool:*")
	f.Add("grant_type=%zz&&&==")
	f.Add(valid + "&resource=http://evil")
	f.Add(valid + "&scope=tool:*")
	f.Add("subject_token=eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.&grant_type=" + url.QueryEscape(GrantTypeTokenExchange))
	h := e.ex.TokenHandler()
	f.Fuzz(func(t *testing.T, body string) {
		w := post(t, h, body)
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("headers %v", w.Header())
		}
		if w.Code != http.StatusOK {
			return
		}
		// Only a body carrying the one valid subject token may succeed.
		form, err := url.ParseQuery(body)
		if err != nil || form.Get("subject_token") != human {
			t.Fatalf("200 for a body without a valid subject token: %q", body)
		}
	})
}
