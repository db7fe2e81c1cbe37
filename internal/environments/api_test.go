package environments

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/store"
)

const branchURL = "https://feat-x.preview.acme.internal"

// TestAPI: who may create, update, list and retire; every refusal with its
// status and a clear error; the audit records name who and why and never
// hold a token.
func TestAPI(t *testing.T) {
	w := newWorld(t)
	host, rec := newHost(), &records{}
	clk := &clock{t: time.Now()}
	m, srv := start(t, w.options(store.NewMemory(), host, rec, clk))
	url := srv.URL + "/environments/"
	ci := w.ciToken(t, testRepo, 42, nil)
	admin := w.humanToken(t, "platform-pat", "platform-admin")

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name, token, path string
			body              []byte
			status            int
			want              string
		}{
			{"no token", "", "pr-42", body(t, 42, branchURL, nil), 401, "bearer token is required"},
			{"garbage token", "not.a.jwt", "pr-42", body(t, 42, branchURL, nil), 401, ""},
			{"wrong repository", w.ciToken(t, "acme/other", 42, nil), "pr-42", body(t, 42, branchURL, nil), 403, `"repository"`},
			{"wrong event", w.ciToken(t, testRepo, 42, map[string]any{"event_name": "push"}), "pr-42", body(t, 42, branchURL, nil), 403, `"event_name"`},
			{"wrong audience", w.ciToken(t, testRepo, 42, map[string]any{"aud": "https://other.example.com"}), "pr-42", body(t, 42, branchURL, nil), 401, "aud"},
			{"human without admin role", w.humanToken(t, "bob", "viewer"), "pr-42", body(t, 42, branchURL, nil), 403, "admin_roles"},
			{"bad name", ci, "PR_42", body(t, 42, branchURL, nil), 400, "a-z 0-9"},
			{"reserved name", ci, "default", body(t, 42, branchURL, nil), 400, "reserved"},
			{"production upstream", ci, "pr-42", body(t, 42, "https://crm.acme.internal", nil), 403, "allowed_upstreams"},
			{"other repository in body", ci, "pr-42", body(t, 42, branchURL, map[string]any{"repository": "acme/other"}), 403, "not the CI token's repository"},
			{"ttl above max", ci, "pr-42", body(t, 42, branchURL, map[string]any{"ttl": "169h"}), 400, "max_ttl"},
			{"broken bundle", ci, "pr-42", body(t, 42, branchURL, map[string]any{"policy_bundle": bundleB64(t, map[string]string{"policy/harness.rego": "package harness\n\ndecision := {\"allow\": true} if {\n\tinput.x ==\n}\n"})}), 400, "policy/harness.rego:"},
			{"bundle without decision", ci, "pr-42", body(t, 42, branchURL, map[string]any{"policy_bundle": bundleB64(t, map[string]string{"p.rego": "package other\n\nx := 1\n"})}), 400, "data.harness.decision"},
			{"too large", ci, "pr-42", append(body(t, 42, branchURL, nil), bytes.Repeat([]byte(" "), MaxBody)...), 413, "larger than 4 MiB"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, ans := call(t, http.MethodPut, url+tc.path, tc.token, tc.body, nil)
				if status != tc.status || ans["error"] == nil || !contains(ans, "error_description", tc.want) {
					t.Fatalf("%d %v, want %d naming %q", status, ans, tc.status, tc.want)
				}
			})
		}
		if host.served("pr-42") != nil || len(rec.find(audit.EnvironmentCreate, "pr-42")) != 0 {
			t.Fatal("a refused request changed something")
		}
	})

	t.Run("create, update, list, retire", func(t *testing.T) {
		bundle := bundleB64(t, map[string]string{"policy/harness.rego": "package harness\n\ndecision := {\"allow\": true, \"reason\": \"branch\"}\n"})
		status, ans := call(t, http.MethodPut, url+"pr-42", ci, body(t, 42, branchURL, map[string]any{"policy_bundle": bundle}), nil)
		if status != http.StatusCreated || ans["mcp_url"] != publicURL+"/env/pr-42/mcp" || ans["resource"] != publicURL+"/env/pr-42/mcp" || ans["name"] != "pr-42" {
			t.Fatalf("create: %d %v", status, ans)
		}
		e := host.served("pr-42") // served here before the answer
		if e == nil || len(e.Bundle) == 0 || e.Upstreams["crm"].BaseURL != branchURL || e.CreatedBy != "alice" || e.Repository != testRepo {
			t.Fatalf("served: %+v", e)
		}
		// Another repository's CI (allowed by another rule set) may not update it.
		m.auth.ci[w.ci.URL()].cfg.Claims = map[string]string{"repository": "acme/*"}
		other := w.ciToken(t, "acme/billing", 7, nil)
		status, ans = call(t, http.MethodPut, url+"pr-42", other, body(t, 7, branchURL, map[string]any{"repository": nil}), nil)
		if status != http.StatusForbidden || !contains(ans, "error_description", "another repository") {
			t.Fatalf("update by another repository: %d %v", status, ans)
		}
		status, _ = call(t, http.MethodDelete, url+"pr-42", other, nil, nil)
		if status != http.StatusForbidden {
			t.Fatalf("retire by another repository: %d", status)
		}
		// Nor see it.
		if status, ans = call(t, http.MethodGet, srv.URL+"/environments", other, nil, nil); status != http.StatusOK || len(ans["environments"].([]any)) != 0 {
			t.Fatalf("another repository's list: %d %v", status, ans)
		}
		if status, _ = call(t, http.MethodGet, url+"pr-42", other, nil, nil); status != http.StatusNotFound {
			t.Fatalf("another repository's get: %d", status)
		}
		// The same repository's CI updates it (200), then an admin does.
		status, ans = call(t, http.MethodPut, url+"pr-42", ci, body(t, 42, branchURL, map[string]any{"ttl": "3h"}), nil)
		if status != http.StatusOK {
			t.Fatalf("update: %d %v", status, ans)
		}
		if e := host.served("pr-42"); e == nil || e.Bundle != nil {
			t.Fatalf("after an update without a bundle: %+v", e)
		}
		status, _ = call(t, http.MethodPut, url+"pr-42", admin, body(t, 42, branchURL, nil), nil)
		if status != http.StatusOK {
			t.Fatalf("update by an admin: %d", status)
		}
		status, ans = call(t, http.MethodGet, srv.URL+"/environments", ci, nil, nil)
		list, _ := ans["environments"].([]any)
		if status != http.StatusOK || len(list) != 1 {
			t.Fatalf("list: %d %v", status, ans)
		}
		one := list[0].(map[string]any)
		for k, v := range map[string]any{"name": "pr-42", "branch": "feat-x", "pull_request": 42.0, "repository": testRepo, "owner": "alice", "created_by": "alice", "mcp_url": publicURL + "/env/pr-42/mcp"} {
			if one[k] != v {
				t.Errorf("list %s = %v, want %v", k, one[k], v)
			}
		}
		if status, ans = call(t, http.MethodGet, url+"pr-42", admin, nil, nil); status != http.StatusOK || ans["name"] != "pr-42" {
			t.Fatalf("get: %d %v", status, ans)
		}
		if status, _ = call(t, http.MethodGet, url+"pr-9", admin, nil, nil); status != http.StatusNotFound {
			t.Fatalf("get unknown: %d", status)
		}
		status, ans = call(t, http.MethodDelete, url+"pr-42", admin, nil, map[string]string{"User-Agent": "harness-gateway/dev"})
		if status != http.StatusOK || ans["retired"] != true {
			t.Fatalf("retire: %d %v", status, ans)
		}
		if host.served("pr-42") != nil {
			t.Fatal("still served here after the answer")
		}
		if status, _ = call(t, http.MethodDelete, url+"pr-42", admin, nil, nil); status != http.StatusNotFound {
			t.Fatalf("retire again: %d", status)
		}
		cr := rec.find(audit.EnvironmentCreate, "pr-42")
		up := rec.find(audit.EnvironmentUpdate, "pr-42")
		rt := rec.find(audit.EnvironmentRetire, "pr-42")
		if len(cr) != 1 || len(up) != 2 || len(rt) != 1 {
			t.Fatalf("records: %d create, %d update, %d retire", len(cr), len(up), len(rt))
		}
		if cr[0].Preview.Actor != "alice" || cr[0].Issuer != w.ci.URL() || cr[0].Reason != "api" || cr[0].Preview.PullRequest != 42 {
			t.Errorf("create record: %+v %+v", cr[0], cr[0].Preview)
		}
		if rt[0].Subject != "platform-pat" || rt[0].Reason != "cli" {
			t.Errorf("retire record: %+v", rt[0])
		}
		all := rec.json(t)
		for _, tok := range []string{ci, admin, other} {
			if strings.Contains(all, tok[:40]) {
				t.Fatal("an audit record holds a token")
			}
		}
	})

	t.Run("max", func(t *testing.T) {
		for i, name := range []string{"a", "b", "c"} {
			if status, ans := call(t, http.MethodPut, url+name, admin, body(t, i, branchURL, nil), nil); status != http.StatusCreated {
				t.Fatalf("%s: %d %v", name, status, ans)
			}
		}
		status, ans := call(t, http.MethodPut, url+"d", admin, body(t, 4, branchURL, nil), nil)
		if status != http.StatusConflict || !contains(ans, "error_description", "environments.max (3)") {
			t.Fatalf("beyond max: %d %v", status, ans)
		}
		if status, _ := call(t, http.MethodPut, url+"c", admin, body(t, 3, branchURL, nil), nil); status != http.StatusOK {
			t.Fatalf("update at max: %d", status)
		}
	})

}

func mustRequest(t *testing.T, token string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, "http://x/environments", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// fakeHumans answers a fixed principal (for the delegation case, which
// needs the gateway's own token issuer).
type fakeHumans struct{ p *authn.Principal }

func (f fakeHumans) Authenticate(context.Context, string) (*authn.Principal, error) { return f.p, nil }

// TestAdminNeedsHuman: an agent's delegation token never manages
// environments, whatever roles its human has.
func TestAdminNeedsHuman(t *testing.T) {
	p := &authn.Principal{Issuer: publicURL, Subject: "alice", Roles: []string{"platform-admin"}}
	a := newAuthenticator(nil, fakeHumans{p}, []string{"platform-admin"}, nil)
	if c, err := a.caller(mustRequest(t, "x.y.z")); err != nil || !c.Admin {
		t.Fatalf("the human: %+v %v", c, err)
	}
	p.Delegation = &authn.Delegation{ID: "d1"}
	_, err := a.caller(mustRequest(t, "x.y.z"))
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusForbidden || !strings.Contains(ae.desc, "delegation token") {
		t.Fatalf("a delegation token: %v", err)
	}
}
