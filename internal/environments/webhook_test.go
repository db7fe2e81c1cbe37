package environments

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/store"
)

func prEvent(action, repo string, pr int) []byte {
	return fmt.Appendf(nil, `{"action":%q,"number":%d,"pull_request":{"number":%d,"merged":true},"repository":{"full_name":%q},"sender":{"login":"carol"}}`, action, pr, pr, repo)
}

// TestWebhook: a bad or missing signature is 401 and changes nothing;
// ping and other events or actions are no-ops; "closed" retires exactly
// the previews of that repository and pull request, audited with why.
func TestWebhook(t *testing.T) {
	w := newWorld(t)
	host, rec := newHost(), &records{}
	o := w.options(store.NewMemory(), host, rec, &clock{t: time.Now()})
	o.Max = 10
	_, srv := start(t, o)
	hook := srv.URL + "/hooks/github"
	admin := w.humanToken(t, "platform-pat", "platform-admin")
	for name, pr := range map[string]int{"pr-42": 42, "pr-42-b": 42, "pr-43": 43} {
		if status, ans := call(t, http.MethodPut, srv.URL+"/environments/"+name, admin, body(t, pr, branchURL, nil), nil); status != http.StatusCreated {
			t.Fatalf("%s: %d %v", name, status, ans)
		}
	}
	// Another repository's pull request 42 is not ours.
	if status, _ := call(t, http.MethodPut, srv.URL+"/environments/other-42", admin, body(t, 42, branchURL, map[string]any{"repository": "acme/other"}), nil); status != http.StatusCreated {
		t.Fatal(status)
	}
	closed := prEvent("closed", testRepo, 42)
	for _, tc := range []struct {
		name   string
		event  string
		sig    string
		body   []byte
		status int
	}{
		{"missing signature", "pull_request", "", closed, 401},
		{"wrong signature", "pull_request", sign("another-secret-of-16", closed), closed, 401},
		{"signature of another body", "pull_request", sign(testSecret, prEvent("closed", testRepo, 43)), closed, 401},
		{"ping", "ping", sign(testSecret, []byte(`{"zen":"x"}`)), []byte(`{"zen":"x"}`), 200},
		{"push", "push", sign(testSecret, []byte(`{}`)), []byte(`{}`), 202},
		{"reopened", "pull_request", sign(testSecret, prEvent("reopened", testRepo, 42)), prEvent("reopened", testRepo, 42), 202},
		{"opened", "pull_request", sign(testSecret, prEvent("opened", testRepo, 42)), prEvent("opened", testRepo, 42), 202},
	} {
		status, ans := call(t, http.MethodPost, hook, "", tc.body, map[string]string{"X-GitHub-Event": tc.event, "X-Hub-Signature-256": tc.sig})
		if status != tc.status {
			t.Fatalf("%s: %d %v, want %d", tc.name, status, ans, tc.status)
		}
	}
	for _, name := range []string{"pr-42", "pr-42-b", "pr-43", "other-42"} {
		if host.served(name) == nil {
			t.Fatalf("%s retired by a refused or ignored delivery", name)
		}
	}
	status, ans := call(t, http.MethodPost, hook, "", closed, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(testSecret, closed)})
	got, _ := ans["retired"].([]any)
	if status != http.StatusOK || len(got) != 2 || got[0] != "pr-42" || got[1] != "pr-42-b" {
		t.Fatalf("closed: %d %v", status, ans)
	}
	for name, want := range map[string]bool{"pr-42": false, "pr-42-b": false, "pr-43": true, "other-42": true} {
		if (host.served(name) != nil) != want {
			t.Errorf("%s served = %v, want %v", name, !want, want)
		}
	}
	r := rec.find(audit.EnvironmentRetire, "pr-42")
	if len(r) != 1 || r[0].Reason != "webhook: pull_request #42 closed (merged)" || r[0].Preview.Actor != "carol" {
		t.Fatalf("retire record: %+v", r)
	}
	// A redelivery retires nothing more.
	status, ans = call(t, http.MethodPost, hook, "", closed, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(testSecret, closed)})
	if got, _ := ans["retired"].([]any); status != http.StatusOK || len(got) != 0 {
		t.Fatalf("redelivery: %d %v", status, ans)
	}
}

// TestWebhookOff: without environments.github_webhook_secret the hook is
// 404, signed or not.
func TestWebhookOff(t *testing.T) {
	w := newWorld(t)
	o := w.options(store.NewMemory(), newHost(), &records{}, &clock{t: time.Now()})
	o.WebhookSecret = ""
	_, srv := start(t, o)
	body := prEvent("closed", testRepo, 42)
	status, _ := call(t, http.MethodPost, srv.URL+"/hooks/github", "", body, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign("", body)})
	if status != http.StatusNotFound {
		t.Fatalf("%d, want 404", status)
	}
}
