package devissuer

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

func postExchange(t *testing.T, i *Issuer, id, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, i.URL()+TokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// TestTokenExchangeGrant: a token-exchange client trades one of the
// issuer's own tokens for a new one (sub kept, aud = audience, act = the
// client, roles copied), verifiable with go-oidc; forged, expired, foreign
// and wrongly authenticated requests are refused.
func TestTokenExchangeGrant(t *testing.T) {
	for _, alg := range []string{ES256, RS256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			i := start(t, Options{Algorithm: alg, Clients: []Client{
				{ID: "gw", Secret: "s3cret", TokenExchange: true},
				{ID: "rp", Secret: "rp-sec", RedirectURIs: []string{"http://127.0.0.1:1/cb"}},
			}})
			subject, err := i.Mint(map[string]any{"sub": "alice", "aud": "http://gw/mcp", "roles": []string{"support"}, "azp": "agent-1"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			form := func(tok string) url.Values {
				return url.Values{
					"grant_type": {GrantTokenExchange}, "subject_token": {tok},
					"subject_token_type": {TokenTypeAccessToken}, "requested_token_type": {TokenTypeAccessToken},
					"audience": {"hr-api"}, "scope": {"hr.read"},
				}
			}
			status, out := postExchange(t, i, "gw", "s3cret", form(subject))
			if status != http.StatusOK {
				t.Fatalf("exchange: %d %v", status, out)
			}
			tok, _ := out["access_token"].(string)
			if tok == "" || tok == subject || out["issued_token_type"] != TokenTypeAccessToken || out["token_type"] != "Bearer" {
				t.Fatalf("answer: %v", out)
			}
			if exp, _ := out["expires_in"].(float64); exp <= 0 || exp > ExchangeTTL.Seconds() {
				t.Errorf("expires_in = %v", out["expires_in"])
			}
			p, err := oidc.NewProvider(context.Background(), i.URL())
			if err != nil {
				t.Fatal(err)
			}
			idt, err := p.Verifier(&oidc.Config{ClientID: "hr-api", SupportedSigningAlgs: []string{alg}}).Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("issued token does not verify for aud hr-api: %v", err)
			}
			var c struct {
				Sub   string         `json:"sub"`
				Act   map[string]any `json:"act"`
				Roles []string       `json:"roles"`
				Scope string         `json:"scope"`
				Azp   string         `json:"azp"`
			}
			if err := idt.Claims(&c); err != nil {
				t.Fatal(err)
			}
			if c.Sub != "alice" || c.Act["sub"] != "gw" || len(c.Roles) != 1 || c.Roles[0] != "support" || c.Scope != "hr.read" || c.Azp != "gw" {
				t.Errorf("claims: %+v", c)
			}

			expired, _ := i.Mint(map[string]any{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()}, time.Hour)
			other, _ := New(Options{Issuer: i.URL(), Algorithm: alg}) // same iss, other keys
			forged, _ := other.Mint(map[string]any{"sub": "alice"}, time.Hour)
			none, _ := i.SignRaw(map[string]any{"alg": "none"}, map[string]any{"iss": i.URL(), "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
			cases := []struct {
				name, id, secret string
				form             url.Values
				status           int
				code             string
			}{
				{"wrong secret", "gw", "nope", form(subject), 401, "invalid_client"},
				{"unknown client", "zz", "s3cret", form(subject), 401, "invalid_client"},
				{"client without the grant", "rp", "rp-sec", form(subject), 400, "unauthorized_client"},
				{"expired subject", "gw", "s3cret", form(expired), 400, "invalid_grant"},
				{"foreign keys", "gw", "s3cret", form(forged), 400, "invalid_grant"},
				{"alg none", "gw", "s3cret", form(none), 400, "invalid_grant"},
				{"garbage", "gw", "s3cret", form("x.y.z"), 400, "invalid_grant"},
			}
			for _, tc := range cases {
				status, out := postExchange(t, i, tc.id, tc.secret, tc.form)
				if status != tc.status || out["error"] != tc.code || out["access_token"] != nil {
					t.Errorf("%s: %d %v, want %d %s", tc.name, status, out, tc.status, tc.code)
				}
			}
		})
	}
}

func TestTokenExchangeClientNeedsSecret(t *testing.T) {
	if _, err := New(Options{Clients: []Client{{ID: "gw", TokenExchange: true}}}); err == nil {
		t.Error("a token-exchange client without a secret was accepted")
	}
}
