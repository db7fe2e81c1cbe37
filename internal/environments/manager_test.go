package environments

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/redistest"
	"github.com/agentharness/harness/internal/store"
)

// replica is one gateway replica's manager, host and audit trail.
type replica struct {
	m    *Manager
	host *fakeHost
	rec  *records
	url  string
}

func redisStore(t *testing.T, url string) *store.Redis {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return store.NewRedis(rdb, "envtest:", 2*time.Second)
}

func newReplica(t *testing.T, w *world, redisURL string, clk *clock) *replica {
	t.Helper()
	r := &replica{host: newHost(), rec: &records{}}
	var srvURL string
	r.m, srvURL = func() (*Manager, string) {
		m, srv := start(t, w.options(redisStore(t, redisURL), r.host, r.rec, clk))
		return m, srv.URL
	}()
	r.url = srvURL
	return r
}

// TestManagersOverRedis: two replicas (two managers, two Redis clients, one
// real redis-server). A preview created on one is served by both; retired
// through one, both stop; expired, both stop and exactly one audits it; a
// replica started later serves what exists and drops what expired.
func TestManagersOverRedis(t *testing.T) {
	w := newWorld(t)
	url := redistest.Start(t)
	clk := &clock{t: time.Now()}
	a, b := newReplica(t, w, url, clk), newReplica(t, w, url, clk)
	ci := w.ciToken(t, testRepo, 42, nil)

	if status, ans := call(t, http.MethodPut, a.url+"/environments/pr-42", ci, body(t, 42, branchURL, nil), nil); status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, ans)
	}
	if a.host.served("pr-42") == nil {
		t.Fatal("not served by the replica that created it when it answered")
	}
	b.host.waitFor(t, "open", "pr-42")

	// An update on b reopens on a.
	a.host.drain()
	if status, _ := call(t, http.MethodPut, b.url+"/environments/pr-42", ci, body(t, 42, branchURL, map[string]any{"branch": "feat-y"}), nil); status != http.StatusOK {
		t.Fatal(status)
	}
	a.host.waitFor(t, "open", "pr-42")
	if e := a.host.served("pr-42"); e == nil || e.Branch != "feat-y" {
		t.Fatalf("a serves %+v after the update", e)
	}

	// Retired through b: a stops too; one record.
	if status, _ := call(t, http.MethodDelete, b.url+"/environments/pr-42", ci, nil, nil); status != http.StatusOK {
		t.Fatal(status)
	}
	a.host.waitFor(t, "retire", "pr-42")
	if n := len(a.rec.find(audit.EnvironmentRetire, "pr-42")) + len(b.rec.find(audit.EnvironmentRetire, "pr-42")); n != 1 {
		t.Fatalf("%d retire records, want 1", n)
	}

	// Expiry: both replicas retire it; only one deletes and audits it.
	if status, _ := call(t, http.MethodPut, a.url+"/environments/pr-43", ci, body(t, 43, branchURL, map[string]any{"ttl": "1h"}), nil); status != http.StatusCreated {
		t.Fatal(status)
	}
	b.host.waitFor(t, "open", "pr-43")
	// pr-44 lives longer; it must survive the sweep.
	if status, _ := call(t, http.MethodPut, a.url+"/environments/pr-44", ci, body(t, 44, branchURL, map[string]any{"ttl": "3h"}), nil); status != http.StatusCreated {
		t.Fatal(status)
	}
	b.host.waitFor(t, "open", "pr-44")
	clk.Advance(time.Hour)
	a.host.waitFor(t, "retire", "pr-43")
	b.host.waitFor(t, "retire", "pr-43")
	a.m.Stop()
	b.m.Stop()
	if n := len(a.rec.find(audit.EnvironmentExpire, "pr-43")) + len(b.rec.find(audit.EnvironmentExpire, "pr-43")); n != 1 {
		t.Fatalf("%d expire records, want exactly 1", n)
	}
	for _, r := range [][]*audit.Record{a.rec.find(audit.EnvironmentExpire, "pr-43"), b.rec.find(audit.EnvironmentExpire, "pr-43")} {
		if len(r) == 1 && (r[0].Reason == "" || r[0].Subject != "harness") {
			t.Fatalf("expire record: %+v", r[0])
		}
	}
	if a.host.served("pr-44") == nil || b.host.served("pr-44") == nil {
		t.Fatal("a live preview was retired by the sweep")
	}

	// A replica started later serves what lives and expires what is due.
	clk.Advance(2 * time.Hour)
	c := &replica{host: newHost(), rec: &records{}}
	m, err := New(w.options(redisStore(t, url), c.host, c.rec, clk))
	if err != nil {
		t.Fatal(err)
	}
	st := redisStore(t, url)
	if _, err := st.PutEnvironment(context.Background(), "pr-45", mustRecord(t, "pr-45", clk.Now().Add(time.Hour)), nil, 0); err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	defer m.Stop()
	if c.host.served("pr-45") == nil {
		t.Fatal("a live preview was not opened at start")
	}
	if c.host.served("pr-44") != nil || len(c.rec.find(audit.EnvironmentExpire, "pr-44")) != 1 {
		t.Fatal("an expired preview was not expired (and audited) at start")
	}
	if _, ok, _ := st.GetEnvironment(context.Background(), "pr-44"); ok {
		t.Fatal("the expired preview is still in the store")
	}
}

func mustRecord(t *testing.T, name string, expires time.Time) []byte {
	t.Helper()
	e := Env{Name: name, Repository: testRepo, Upstreams: map[string]Upstream{"crm": {BaseURL: branchURL, OpenAPI: branchURL + "/openapi.json"}},
		CreatedAt: expires.Add(-2 * time.Hour), ExpiresAt: expires, Version: "v1", CreatedBy: "alice"}
	b, err := jsonMarshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
