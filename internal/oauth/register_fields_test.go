package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRegistrationOmitsEmptyFields: RFC 7591 §3.2.1 — a registration
// answer carries no empty optional field. The TypeScript SDKs refuse
// `"client_uri": ""` (ZodError: Invalid URL), so OAuth never started for
// clients that send no client_uri.
func TestRegistrationOmitsEmptyFields(t *testing.T) {
	s, _, _ := newTestServer(t)
	for _, tc := range []struct {
		name, body string
		want       map[string]string // field → value; "" means absent
	}{
		{"bare", `{"redirect_uris":["http://127.0.0.1:9/cb"]}`, map[string]string{"client_name": "", "client_uri": ""}},
		{"name only", `{"redirect_uris":["http://127.0.0.1:9/cb"],"client_name":"agent"}`, map[string]string{"client_name": "agent", "client_uri": ""}},
		{"both", `{"redirect_uris":["http://127.0.0.1:9/cb"],"client_name":"agent","client_uri":"https://agent.example"}`,
			map[string]string{"client_name": "agent", "client_uri": "https://agent.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/oauth/register", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			s.register(rec, req)
			if rec.Code != http.StatusCreated {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range got {
				if s, ok := v.(string); ok && s == "" {
					t.Errorf("field %q is present and empty", k)
				}
			}
			for k, want := range tc.want {
				v, present := got[k]
				switch {
				case want == "" && present:
					t.Errorf("%s = %v, want it omitted", k, v)
				case want != "" && v != want:
					t.Errorf("%s = %v, want %q", k, v, want)
				}
			}
			if got["client_id"] == nil || got["redirect_uris"] == nil {
				t.Errorf("required fields missing: %v", got)
			}
		})
	}
}
