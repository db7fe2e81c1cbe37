package server

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentharness/harness/internal/redistest"
	"github.com/agentharness/harness/internal/store"
)

// watch runs srv's session watch for the test and waits until it is live.
func watch(t testing.TB, srv *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.WatchSessions(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	for !srv.sessCache.isLive() {
		select {
		case <-done:
			t.Fatal("session watch ended")
		case <-time.After(time.Millisecond):
		}
	}
}

func TestSessionCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	sess := store.Session{Issuer: "i", Subject: "alice", Agent: "a", Created: now}
	newCache := func() *sessionCache {
		c := newSessionCache()
		c.now = func() time.Time { return now }
		c.SessionsReset(true)
		return c
	}
	t.Run("not live caches nothing", func(t *testing.T) {
		c := newSessionCache()
		_, _, gen := c.get("s")
		c.put("s", sess, gen)
		if _, ok, _ := c.get("s"); ok || c.len() != 0 {
			t.Error("a cache without a live watch served a session")
		}
	})
	t.Run("hit, then deleted", func(t *testing.T) {
		c := newCache()
		_, _, gen := c.get("s")
		c.put("s", sess, gen)
		if got, ok, _ := c.get("s"); !ok || got != sess {
			t.Fatalf("get = %v %v", got, ok)
		}
		c.SessionDeleted("s")
		if _, ok, _ := c.get("s"); ok {
			t.Error("a deleted session is still served")
		}
	})
	t.Run("a read older than a deletion is not cached", func(t *testing.T) {
		c := newCache()
		_, _, gen := c.get("s") // read from the store starts
		c.SessionDeleted("s")   // deleted meanwhile (any session)
		c.put("s", sess, gen)   // the stale read returns
		if _, ok, _ := c.get("s"); ok {
			t.Error("a read that raced a deletion was cached")
		}
	})
	t.Run("reset forgets everything and can stop serving", func(t *testing.T) {
		c := newCache()
		_, _, gen := c.get("s")
		c.put("s", sess, gen)
		c.SessionsReset(false)
		if _, ok, _ := c.get("s"); ok || c.len() != 0 {
			t.Error("entries survived a broken watch")
		}
		_, _, gen = c.get("s")
		c.put("s", sess, gen)
		if c.len() != 0 {
			t.Error("cached while the watch is down")
		}
	})
	t.Run("ttl and the session's own expiry bound an entry", func(t *testing.T) {
		c := newCache()
		_, _, gen := c.get("s")
		c.put("s", sess, gen)
		now = now.Add(sessionCacheTTL)
		if _, ok, _ := c.get("s"); ok {
			t.Error("an entry outlived the cache ttl")
		}
		old := sess
		old.Created = now.Add(-sessionTTL + time.Second) // one second left
		_, _, gen = c.get("o")
		c.put("o", old, gen)
		now = now.Add(time.Second)
		if _, ok, _ := c.get("o"); ok {
			t.Error("an entry outlived its session")
		}
		expired := sess
		expired.Created = now.Add(-sessionTTL)
		_, _, gen = c.get("e")
		c.put("e", expired, gen)
		if c.len() != 0 {
			t.Error("an expired session was cached")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		c := newCache()
		c.max = 3
		for i := range 10 {
			_, _, gen := c.get("s")
			c.put(fmt.Sprint("s", i), sess, gen)
			if c.len() > 3 {
				t.Fatalf("%d entries, cap 3", c.len())
			}
		}
	})
}

// TestSessionDeletedElsewhereRefused: a session deleted in the store by
// another replica (memory: the store tells the cache directly) is refused
// on the very next request, although this replica had it cached.
func TestSessionDeletedElsewhereRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	sid := openLegacy(t, f, "alice", "2025-06-18")
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	for range 2 {
		if resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "alice", list, hdr); resp.StatusCode != http.StatusOK {
			t.Fatalf("tools/list: %d %s", resp.StatusCode, body)
		}
	}
	if f.srv.sessCache.len() != 1 {
		t.Fatalf("session cache holds %d, want the open session", f.srv.sessCache.len())
	}
	// Another principal is still refused from the cache.
	if resp, _ := rawDo(t, http.MethodPost, f.url+"/mcp", "bob", list, hdr); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another principal on a cached session: %d, want 404", resp.StatusCode)
	}
	if err := f.store.DeleteSession(context.Background(), sid); err != nil {
		t.Fatal(err)
	}
	if resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "alice", list, hdr); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleted session: %d %s, want 404", resp.StatusCode, body)
	}
}

// TestSessionCacheKeepsRevocation: a cached session does not bypass the
// revocation check of a delegation: the next request after the revocation
// is refused.
func TestSessionCacheKeepsRevocation(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: allowAll{}})
	sid := openLegacy(t, f, "deleg", "2025-06-18")
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	if resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "deleg", list, hdr); resp.StatusCode != http.StatusOK {
		t.Fatalf("tools/list: %d %s", resp.StatusCode, body)
	}
	if f.srv.sessCache.len() != 1 {
		t.Fatalf("session cache holds %d, want the open session", f.srv.sessCache.len())
	}
	if err := f.store.Revoke(context.Background(), "d-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if resp, body := rawDo(t, http.MethodPost, f.url+"/mcp", "deleg", list, hdr); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked delegation on a cached session: %d %s, want 401", resp.StatusCode, body)
	}
}

// BenchmarkBindSession measures the session check of one legacy request
// against a store that answers at once (memory): the cache saves the
// store's work and the session decoding; with Redis it also saves a round
// trip.
//
// cached=false is the path before the cache (every request reads the
// store).
func BenchmarkBindSession(b *testing.B) {
	stores := map[string]func(b *testing.B) SessionStore{
		"memory": func(*testing.B) SessionStore { return store.NewMemory() },
		"redis": func(b *testing.B) SessionStore {
			opt, err := redis.ParseURL(redistest.Start(b))
			if err != nil {
				b.Fatal(err)
			}
			rdb := redis.NewClient(opt)
			b.Cleanup(func() { _ = rdb.Close() })
			return store.NewRedis(rdb, "bench:", 2*time.Second)
		},
	}
	for _, name := range []string{"memory", "redis"} {
		for _, cached := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/cached=%v", name, cached), func(b *testing.B) {
				benchBindSession(b, stores[name](b), cached)
			})
		}
	}
}

func benchBindSession(b *testing.B, st SessionStore, cached bool) {
	s := &Server{sessions: st, sessCache: newSessionCache()}
	if cached {
		s.sessCache.SessionsReset(true)
	}
	ctx := context.Background()
	sess := store.Session{Issuer: "i", Subject: "alice", Agent: "a", Created: time.Now()}
	if err := st.PutSession(ctx, "mcp-session-x", sess, sessionTTL); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := s.lookupSession(ctx, "mcp-session-x"); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
