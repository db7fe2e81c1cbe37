package oauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/agentharness/harness/internal/store"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newBoundedServer is a server whose unauthenticated state lives in
// bounded namespaces of a memory store on a fake clock, as the gateway
// wires it.
func newBoundedServer(t *testing.T, maxClients int) (*Server, *testClock) {
	t.Helper()
	clk := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := store.NewMemory(store.WithClock(clk.Now))
	s, err := New(Options{
		Issuer: "https://gw.example", Resource: "https://gw.example/mcp", KV: st, Revocations: st, Minter: &fakeMinter{},
		Clients: st.Bounded("clients", maxClients), Pending: st.Bounded("pending", 100),
		Login: Login{Issuer: "https://idp.example", ClientID: "harness"}, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func register(t *testing.T, s *Server, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/oauth/register", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.register(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("register answered %d %q: %v", rec.Code, rec.Body, err)
	}
	return rec.Code, out
}

// TestRegistrationLimits: the registration flood of issue 13 sent 32 KB
// bodies with 16 redirect URIs and long names; each is refused with an
// RFC 7591 error.
func TestRegistrationLimits(t *testing.T) {
	s, _ := newBoundedServer(t, 10)
	uris := func(n int) string {
		var u []string
		for i := range n {
			u = append(u, fmt.Sprintf(`"http://127.0.0.1/cb%d"`, i))
		}
		return strings.Join(u, ",")
	}
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"ok", `{"redirect_uris":[` + uris(10) + `],"client_name":"` + strings.Repeat("é", 200) + `"}`, 201, ""},
		{"body over 8 KiB", `{"redirect_uris":["http://127.0.0.1/cb"],"client_uri":"https://x.example/` + strings.Repeat("a", 8<<10) + `"}`, 400, "invalid_client_metadata"},
		{"11 redirect URIs", `{"redirect_uris":[` + uris(11) + `]}`, 400, "invalid_redirect_uri"},
		{"name of 201 characters", `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"` + strings.Repeat("n", 201) + `"}`, 400, "invalid_client_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := register(t, s, tc.body)
			if status != tc.status || (tc.code != "" && out["error"] != tc.code) {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
			if tc.code != "" && out["error_description"] == "" {
				t.Fatal("no error_description")
			}
		})
	}
}

// TestRegistrationQuota: registered clients that never signed in live in
// their own bounded namespace: past the quota registration is refused
// (503 temporarily_unavailable), they expire within 24 hours, and a client
// a human completed a sign-in with leaves the namespace and lives on.
func TestRegistrationQuota(t *testing.T) {
	s, clk := newBoundedServer(t, 3)
	ctx := context.Background()
	body := `{"redirect_uris":["http://127.0.0.1:5/cb"],"client_name":"x"}`
	var ids []string
	for range 3 {
		status, out := register(t, s, body)
		if status != 201 {
			t.Fatalf("register: %d %v", status, out)
		}
		ids = append(ids, out["client_id"].(string))
	}
	if status, out := register(t, s, body); status != http.StatusServiceUnavailable || out["error"] != "temporarily_unavailable" {
		t.Fatalf("register past the quota: %d %v", status, out)
	}
	// A human completes a sign-in with the first client: it leaves the
	// namespace (room for one more) and lives 30 days.
	verifier := oauth2.GenerateVerifier()
	code := "code-1"
	cr := codeRecord{Human: Human{Issuer: "https://idp.example", Subject: "alice"}, ClientID: ids[0], RedirectURI: "http://127.0.0.1:5/cb",
		Challenge: oauth2.S256ChallengeFromVerifier(verifier), Resource: "https://gw.example/mcp", Scopes: []string{"tool:*"}, ConsentAt: clk.Now()}
	if err := s.putJSON(ctx, "oauth:code:"+hashKey(code), cr, codeTTL); err != nil {
		t.Fatal(err)
	}
	if _, err := s.redeemCode(ctx, map[string][]string{"code": {code}, "client_id": {ids[0]}, "redirect_uri": {"http://127.0.0.1:5/cb"}, "code_verifier": {verifier}}); err != nil {
		t.Fatal(err)
	}
	if status, out := register(t, s, body); status != 201 {
		t.Fatalf("register after a promotion: %d %v", status, out)
	}
	clk.Advance(newClientTTL + time.Second)
	if _, err := s.client(ctx, ids[0]); err != nil {
		t.Fatalf("the signed-in client is gone after a day: %v", err)
	}
	for _, id := range ids[1:] {
		if _, err := s.client(ctx, id); err == nil {
			t.Fatalf("client %s that never signed in still lives after a day", id)
		}
	}
	clk.Advance(clientTTL)
	if _, err := s.client(ctx, ids[0]); err == nil {
		t.Fatal("the signed-in client outlived clientTTL")
	}
}

// TestClientLifeWithoutQuota: without bounded namespaces (one KV for
// everything) a registered client still lives a day until its first
// completed sign-in, then 30 days.
func TestClientLifeWithoutQuota(t *testing.T) {
	clk := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := store.NewMemory(store.WithClock(clk.Now))
	s, err := New(Options{
		Issuer: "https://gw.example", Resource: "https://gw.example/mcp", KV: st, Revocations: st, Minter: &fakeMinter{},
		Login: Login{Issuer: "https://idp.example", ClientID: "harness"}, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for range 2 {
		_, out := register(t, s, `{"redirect_uris":["http://127.0.0.1:5/cb"]}`)
		ids = append(ids, out["client_id"].(string))
	}
	s.promoteClient(ctx, ids[0])
	clk.Advance(newClientTTL + time.Second)
	if _, err := s.client(ctx, ids[0]); err != nil {
		t.Fatalf("the signed-in client is gone after a day: %v", err)
	}
	if _, err := s.client(ctx, ids[1]); err == nil {
		t.Fatal("the unused client outlived a day")
	}
}
