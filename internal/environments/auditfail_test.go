package environments

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/store"
)

// logBuffer is a slog destination safe for the manager's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuditFailureFailsClosed: with audit.on_error deny (the default) a
// creation or update whose kind=environment record cannot be written is
// refused with 503 and leaves no preview behind (an update retires it); a
// retirement by the API, the webhook or expiry happens all the same, the
// failure logged. With on_error allow the change stands.
func TestAuditFailureFailsClosed(t *testing.T) {
	w := newWorld(t)
	host, rec, logs := newHost(), &records{}, &logBuffer{}
	clk := &clock{t: time.Now()}
	o := w.options(store.NewMemory(), host, rec, clk)
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	_, srv := start(t, o)
	url := srv.URL + "/environments/"
	ci := w.ciToken(t, testRepo, 42, nil)

	gone := func(t *testing.T, name string) {
		t.Helper()
		if host.served(name) != nil {
			t.Errorf("%s is still served", name)
		}
		if status, ans := call(t, http.MethodGet, url+name, ci, nil, nil); status != http.StatusNotFound {
			t.Errorf("GET %s: %d %v, want 404", name, status, ans)
		}
	}
	refused := func(t *testing.T, status int, ans map[string]any, what string) {
		t.Helper()
		if status != http.StatusServiceUnavailable || ans["error"] != "audit_unavailable" || !contains(ans, "error_description", "audit trail") || !contains(ans, "error_description", what) {
			t.Errorf("%d %v, want 503 audit_unavailable saying %q", status, ans, what)
		}
	}

	t.Run("create", func(t *testing.T) {
		rec.failing.Store(true)
		defer rec.failing.Store(false)
		status, ans := call(t, http.MethodPut, url+"pr-1", ci, body(t, 42, branchURL, nil), nil)
		refused(t, status, ans, "nothing was created")
		gone(t, "pr-1")
	})

	t.Run("update", func(t *testing.T) {
		if status, ans := call(t, http.MethodPut, url+"pr-2", ci, body(t, 42, branchURL, nil), nil); status != http.StatusCreated {
			t.Fatalf("create: %d %v", status, ans)
		}
		rec.failing.Store(true)
		status, ans := call(t, http.MethodPut, url+"pr-2", ci, body(t, 42, branchURL, map[string]any{"branch": "feat-y"}), nil)
		rec.failing.Store(false)
		refused(t, status, ans, "retired")
		gone(t, "pr-2")
	})

	t.Run("retire", func(t *testing.T) {
		for _, name := range []string{"pr-3", "pr-4", "pr-5"} {
			pr := map[string]int{"pr-3": 3, "pr-4": 4, "pr-5": 5}[name]
			ttl := "2h"
			if name == "pr-5" {
				ttl = "1m"
			}
			if status, ans := call(t, http.MethodPut, url+name, w.ciToken(t, testRepo, pr, nil), body(t, pr, branchURL, map[string]any{"ttl": ttl}), nil); status != http.StatusCreated {
				t.Fatalf("create %s: %d %v", name, status, ans)
			}
		}
		rec.failing.Store(true)
		defer rec.failing.Store(false)
		// By the API.
		if status, ans := call(t, http.MethodDelete, url+"pr-3", ci, nil, nil); status != http.StatusOK || ans["retired"] != true {
			t.Errorf("DELETE with a failing audit trail: %d %v, want 200 retired", status, ans)
		}
		gone(t, "pr-3")
		// By the webhook.
		ev := []byte(`{"action":"closed","number":4,"pull_request":{"number":4,"merged":true},"repository":{"full_name":"acme/crm"},"sender":{"login":"alice"}}`)
		status, ans := call(t, http.MethodPost, srv.URL+"/hooks/github", "", ev, map[string]string{"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": sign(testSecret, ev)})
		if status != http.StatusOK || !strings.Contains(jsonString(t, ans["retired"]), "pr-4") {
			t.Errorf("webhook with a failing audit trail: %d %v, want pr-4 retired", status, ans)
		}
		gone(t, "pr-4")
		// By expiry.
		host.drain()
		clk.Advance(2 * time.Minute)
		host.waitFor(t, "retire", "pr-5")
		gone(t, "pr-5")
		// The expire record is attempted after the store's delete, which
		// follows the retirement the host saw: wait for its failure.
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "action="+audit.EnvironmentExpire) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	})
	for _, action := range []string{audit.EnvironmentCreate, audit.EnvironmentUpdate, audit.EnvironmentRetire, audit.EnvironmentExpire} {
		if !strings.Contains(logs.String(), "action="+action) {
			t.Errorf("the failed %s record is not logged:\n%s", action, logs.String())
		}
	}
	if !strings.Contains(logs.String(), errAuditDown.Error()) {
		t.Errorf("the audit trail's error is not logged:\n%s", logs.String())
	}

	t.Run("on_error allow", func(t *testing.T) {
		host, rec := newHost(), &records{}
		o := w.options(store.NewMemory(), host, rec, clk)
		o.AuditOnError = "allow"
		_, srv := start(t, o)
		rec.failing.Store(true)
		if status, ans := call(t, http.MethodPut, srv.URL+"/environments/pr-6", ci, body(t, 42, branchURL, nil), nil); status != http.StatusCreated {
			t.Errorf("create with on_error allow: %d %v, want 201", status, ans)
		}
		if host.served("pr-6") == nil {
			t.Error("pr-6 is not served with on_error allow")
		}
	})
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := jsonMarshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
