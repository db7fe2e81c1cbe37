package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// backend is one implementation under test. Memory runs on a fake clock;
// Redis on real time, so expiry cases use TTLs of tens of milliseconds and
// advance sleeps past them (never asserting that something is still alive
// after a short TTL).
type backend struct {
	st      Store
	now     func() time.Time
	advance func(time.Duration)
}

// short is a TTL that has certainly passed after advancing by long.
const (
	short = 30 * time.Millisecond
	long  = 80 * time.Millisecond
)

func testClient(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.DialerRetries = 1
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func backends(t *testing.T) map[string]func(t *testing.T) backend {
	rdb := testClient(t, redistest.Start(t))
	var n atomic.Int64
	return map[string]func(t *testing.T) backend{
		"memory": func(t *testing.T) backend {
			clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			return backend{NewMemory(WithClock(clk.Now)), clk.Now, clk.Advance}
		},
		"redis": func(t *testing.T) backend {
			st := NewRedis(rdb, fmt.Sprintf("t%d:", n.Add(1)), 2*time.Second)
			return backend{st, time.Now, time.Sleep}
		},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	sess := Session{Issuer: "https://idp", Subject: "alice", Agent: "cursor", Protocol: "2025-11-25",
		Created: time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC)}
	wantSession := func(t *testing.T, st Store, id string, want bool) {
		t.Helper()
		got, ok, err := st.GetSession(ctx, id)
		must(t, err)
		if ok != want {
			t.Fatalf("session %q present = %v, want %v", id, ok, want)
		}
		if want && (got.Issuer != sess.Issuer || got.Subject != sess.Subject || got.Agent != sess.Agent ||
			got.Protocol != sess.Protocol || !got.Created.Equal(sess.Created)) {
			t.Fatalf("session = %+v, want %+v", got, sess)
		}
	}
	wantRevoked := func(t *testing.T, st Store, id string, want bool) {
		t.Helper()
		got, err := st.IsRevoked(ctx, id)
		must(t, err)
		if got != want {
			t.Fatalf("IsRevoked(%q) = %v, want %v", id, got, want)
		}
	}
	wantKeys := func(t *testing.T, st Store, want ...string) {
		t.Helper()
		got, err := st.PublishedKeys(ctx)
		must(t, err)
		gs := make([]string, len(got))
		for i, k := range got {
			gs[i] = string(k)
		}
		if fmt.Sprint(gs) != fmt.Sprint(want) {
			t.Fatalf("PublishedKeys = %q, want %q", gs, want)
		}
	}
	wantKV := func(t *testing.T, got []byte, ok bool, err error, want string, wantOK bool) {
		t.Helper()
		must(t, err)
		if ok != wantOK || string(got) != want {
			t.Fatalf("got %q %v, want %q %v", got, ok, want, wantOK)
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, b backend)
	}{
		{"session round trip", func(t *testing.T, b backend) {
			must(t, b.st.PutSession(ctx, "s1", sess, time.Hour))
			wantSession(t, b.st, "s1", true)
			wantSession(t, b.st, "other", false)
		}},
		{"session expires", func(t *testing.T, b backend) {
			must(t, b.st.PutSession(ctx, "s1", sess, short))
			b.advance(long)
			wantSession(t, b.st, "s1", false)
		}},
		{"touch sets a new ttl", func(t *testing.T, b backend) {
			must(t, b.st.PutSession(ctx, "s1", sess, time.Hour))
			ok, err := b.st.TouchSession(ctx, "s1", short)
			must(t, err)
			if !ok {
				t.Fatal("touch of a live session returned false")
			}
			b.advance(long)
			wantSession(t, b.st, "s1", false)
			ok, err = b.st.TouchSession(ctx, "s1", time.Hour)
			must(t, err)
			if ok {
				t.Fatal("touch revived an expired session")
			}
			wantSession(t, b.st, "s1", false)
		}},
		{"delete session", func(t *testing.T, b backend) {
			must(t, b.st.PutSession(ctx, "s1", sess, time.Hour))
			must(t, b.st.DeleteSession(ctx, "s1"))
			wantSession(t, b.st, "s1", false)
			must(t, b.st.DeleteSession(ctx, "s1"))
		}},
		{"invalid arguments", func(t *testing.T, b backend) {
			for i, err := range []error{
				b.st.PutSession(ctx, "", sess, time.Hour),
				b.st.PutSession(ctx, "s", sess, 0),
				b.st.Put(ctx, "k", nil, -time.Second),
				b.st.Put(ctx, "", nil, time.Second),
				b.st.Revoke(ctx, "", b.now().Add(time.Hour)),
				b.st.PublishKey(ctx, "", []byte("{}"), b.now().Add(time.Hour)),
			} {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("call %d: err %v, want ErrInvalid", i, err)
				}
			}
			if _, err := b.st.IsRevoked(ctx, ""); !errors.Is(err, ErrInvalid) {
				t.Errorf("IsRevoked(\"\"): %v, want ErrInvalid", err)
			}
			if _, err := b.st.TouchSession(ctx, "s", 0); !errors.Is(err, ErrInvalid) {
				t.Errorf("TouchSession ttl 0: %v, want ErrInvalid", err)
			}
		}},
		{"revocation", func(t *testing.T, b backend) {
			must(t, b.st.Revoke(ctx, "jti-1", b.now().Add(time.Hour)))
			wantRevoked(t, b.st, "jti-1", true)
			wantRevoked(t, b.st, "jti-2", false)
		}},
		{"revocation in the past is a no-op", func(t *testing.T, b backend) {
			must(t, b.st.Revoke(ctx, "jti-1", b.now().Add(-time.Second)))
			wantRevoked(t, b.st, "jti-1", false)
		}},
		{"revocation expires", func(t *testing.T, b backend) {
			must(t, b.st.Revoke(ctx, "jti-1", b.now().Add(short)))
			b.advance(long)
			wantRevoked(t, b.st, "jti-1", false)
		}},
		{"revocation is only extended", func(t *testing.T, b backend) {
			must(t, b.st.Revoke(ctx, "jti-1", b.now().Add(time.Hour)))
			must(t, b.st.Revoke(ctx, "jti-1", b.now().Add(short)))
			b.advance(long)
			wantRevoked(t, b.st, "jti-1", true)
		}},
		{"published keys", func(t *testing.T, b backend) {
			wantKeys(t, b.st)
			must(t, b.st.PublishKey(ctx, "k2", []byte(`{"kid":"k2"}`), b.now().Add(time.Hour)))
			must(t, b.st.PublishKey(ctx, "k1", []byte(`{"kid":"k1"}`), b.now().Add(time.Hour)))
			must(t, b.st.PublishKey(ctx, "k0", []byte(`{"kid":"k0"}`), b.now().Add(short)))
			must(t, b.st.PublishKey(ctx, "old", []byte(`{"kid":"old"}`), b.now().Add(-time.Second)))
			b.advance(long)
			wantKeys(t, b.st, `{"kid":"k1"}`, `{"kid":"k2"}`)
			must(t, b.st.PublishKey(ctx, "k1", []byte(`{"kid":"k1","v":2}`), b.now().Add(time.Hour)))
			wantKeys(t, b.st, `{"kid":"k1","v":2}`, `{"kid":"k2"}`)
		}},
		{"kv get take delete", func(t *testing.T, b backend) {
			must(t, b.st.Put(ctx, "state", []byte("v1"), time.Hour))
			v, ok, err := b.st.Get(ctx, "state")
			wantKV(t, v, ok, err, "v1", true)
			v, ok, err = b.st.Take(ctx, "state")
			wantKV(t, v, ok, err, "v1", true)
			v, ok, err = b.st.Take(ctx, "state")
			wantKV(t, v, ok, err, "", false)
			v, ok, err = b.st.Get(ctx, "state")
			wantKV(t, v, ok, err, "", false)
			must(t, b.st.Put(ctx, "state", []byte("v2"), time.Hour))
			must(t, b.st.Delete(ctx, "state"))
			v, ok, err = b.st.Get(ctx, "state")
			wantKV(t, v, ok, err, "", false)
			must(t, b.st.Delete(ctx, "state"))
		}},
		{"kv values are copies", func(t *testing.T, b backend) {
			val := []byte("abc")
			must(t, b.st.Put(ctx, "k", val, time.Hour))
			val[0] = 'x'
			got, _, err := b.st.Get(ctx, "k")
			must(t, err)
			got[1] = 'y'
			v, ok, err := b.st.Get(ctx, "k")
			wantKV(t, v, ok, err, "abc", true)
		}},
		{"kv expires", func(t *testing.T, b backend) {
			must(t, b.st.Put(ctx, "k", []byte("v"), short))
			b.advance(long)
			v, ok, err := b.st.Take(ctx, "k")
			wantKV(t, v, ok, err, "", false)
		}},
		{"tables are separate", func(t *testing.T, b backend) {
			must(t, b.st.Put(ctx, "x", []byte("v"), time.Hour))
			wantSession(t, b.st, "x", false)
			wantRevoked(t, b.st, "x", false)
		}},
		{"take is single use under concurrency", func(t *testing.T, b backend) {
			must(t, b.st.Put(ctx, "code", []byte("c"), time.Hour))
			var wins atomic.Int64
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					v, ok, err := b.st.Take(ctx, "code")
					if err != nil {
						t.Error(err)
					}
					if ok && bytes.Equal(v, []byte("c")) {
						wins.Add(1)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d takes succeeded, want 1", wins.Load())
			}
		}},
		{"ping", func(t *testing.T, b backend) {
			must(t, b.st.Ping(ctx))
		}},
	}
	bs := backends(t)
	for _, name := range []string{"memory", "redis"} {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.run(t, bs[name](t))
				})
			}
		})
	}
}

// TestRedisReplicas: what one replica writes, another sees at once.
func TestRedisReplicas(t *testing.T) {
	url := redistest.Start(t)
	a := NewRedis(testClient(t, url), "rep:", 2*time.Second)
	b := NewRedis(testClient(t, url), "rep:", 2*time.Second)
	ctx := context.Background()
	if rev, err := b.IsRevoked(ctx, "jti"); err != nil || rev {
		t.Fatalf("before revoke: %v %v", rev, err)
	}
	must(t, a.Revoke(ctx, "jti", time.Now().Add(time.Hour)))
	if rev, err := b.IsRevoked(ctx, "jti"); err != nil || !rev {
		t.Fatalf("revocation not seen by the other replica: %v %v", rev, err)
	}
	must(t, a.PutSession(ctx, "s", Session{Subject: "alice"}, time.Hour))
	if s, ok, err := b.GetSession(ctx, "s"); err != nil || !ok || s.Subject != "alice" {
		t.Fatalf("session on the other replica: %+v %v %v", s, ok, err)
	}
	must(t, a.PublishKey(ctx, "ka", []byte("A"), time.Now().Add(time.Hour)))
	must(t, b.PublishKey(ctx, "kb", []byte("B"), time.Now().Add(time.Hour)))
	for _, st := range []*Redis{a, b} {
		keys, err := st.PublishedKeys(ctx)
		if err != nil || fmt.Sprint(keys) != fmt.Sprint([][]byte{[]byte("A"), []byte("B")}) {
			t.Fatalf("published keys %q %v", keys, err)
		}
	}
	must(t, a.Put(ctx, "code", []byte("c"), time.Hour))
	if v, ok, err := b.Take(ctx, "code"); err != nil || !ok || string(v) != "c" {
		t.Fatalf("take on the other replica: %q %v %v", v, ok, err)
	}
	if _, ok, err := a.Take(ctx, "code"); err != nil || ok {
		t.Fatalf("second take: %v %v", ok, err)
	}
}

// TestRedisLayout checks that every key carries a TTL and that expired keys
// are pruned from the key hash.
func TestRedisLayout(t *testing.T) {
	rdb := testClient(t, redistest.Start(t))
	st := NewRedis(rdb, "lay:", 2*time.Second)
	ctx := context.Background()
	must(t, st.PutSession(ctx, "s", Session{}, time.Hour))
	must(t, st.Revoke(ctx, "r", time.Now().Add(time.Hour)))
	must(t, st.Put(ctx, "k", []byte("v"), time.Hour))
	must(t, st.PublishKey(ctx, "old", []byte("o"), time.Now().Add(short)))
	must(t, st.PublishKey(ctx, "new", []byte("n"), time.Now().Add(time.Hour)))
	keys, err := rdb.Keys(ctx, "lay:*").Result()
	must(t, err)
	if len(keys) != 4 {
		t.Fatalf("keys %q, want 4", keys)
	}
	for _, k := range keys {
		ttl, err := rdb.PTTL(ctx, k).Result()
		must(t, err)
		if ttl <= 0 || ttl > time.Hour {
			t.Errorf("key %q ttl %v, want in (0, 1h]", k, ttl)
		}
	}
	time.Sleep(long)
	must(t, st.PublishKey(ctx, "newer", []byte("m"), time.Now().Add(time.Hour)))
	fields, err := rdb.HKeys(ctx, "lay:jwks").Result()
	must(t, err)
	if fmt.Sprint(fields) != "[new newer]" && fmt.Sprint(fields) != "[newer new]" {
		t.Fatalf("jwks fields %q, want the expired one pruned", fields)
	}
	// A corrupt entry is skipped by readers and pruned by writers.
	must(t, rdb.HSet(ctx, "lay:jwks", "bad", "garbage").Err())
	got, err := st.PublishedKeys(ctx)
	must(t, err)
	if len(got) != 2 {
		t.Fatalf("published %q, want 2 keys", got)
	}
	// A corrupt session is an error, not an empty session.
	must(t, rdb.Set(ctx, "lay:sess:bad", "{", time.Hour).Err())
	if _, ok, err := st.GetSession(ctx, "bad"); err == nil || ok {
		t.Fatalf("corrupt session: %v %v, want an error", ok, err)
	}
}

// TestRedisDown: every operation fails with an error while Redis is down,
// and works again once it is back.
func TestRedisDown(t *testing.T) {
	srv := redistest.StartServer(t)
	st := NewRedis(testClient(t, srv.URL()), "", 2*time.Second)
	ctx := context.Background()
	must(t, st.Revoke(ctx, "jti", time.Now().Add(time.Hour)))
	srv.Stop()
	until := time.Now().Add(time.Hour)
	calls := map[string]func() error{
		"ping":          func() error { return st.Ping(ctx) },
		"put session":   func() error { return st.PutSession(ctx, "s", Session{}, time.Hour) },
		"get session":   func() error { _, _, err := st.GetSession(ctx, "s"); return err },
		"touch session": func() error { _, err := st.TouchSession(ctx, "s", time.Hour); return err },
		"del session":   func() error { return st.DeleteSession(ctx, "s") },
		"revoke":        func() error { return st.Revoke(ctx, "j", until) },
		"is revoked":    func() error { _, err := st.IsRevoked(ctx, "jti"); return err },
		"publish key":   func() error { return st.PublishKey(ctx, "k", []byte("{}"), until) },
		"keys":          func() error { _, err := st.PublishedKeys(ctx); return err },
		"put":           func() error { return st.Put(ctx, "k", []byte("v"), time.Hour) },
		"get":           func() error { _, _, err := st.Get(ctx, "k"); return err },
		"take":          func() error { _, _, err := st.Take(ctx, "k"); return err },
		"delete":        func() error { return st.Delete(ctx, "k") },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); err == nil {
				t.Fatal("no error with redis down")
			}
		})
	}
	srv.Restart()
	// After repeated dial failures go-redis's pool redials in the background
	// about once a second: poll until it is back.
	deadline := time.Now().Add(10 * time.Second)
	for err := st.Put(ctx, "k", []byte("v"), time.Hour); err != nil; err = st.Put(ctx, "k", []byte("v"), time.Hour) {
		if time.Now().After(deadline) {
			t.Fatalf("redis back but calls still fail: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, st.Revoke(ctx, "jti2", time.Now().Add(time.Hour))) // script cache was lost: EVAL fallback
	if rev, err := st.IsRevoked(ctx, "jti2"); err != nil || !rev {
		t.Fatalf("after restart: %v %v", rev, err)
	}
}

// TestRedisSlow: a server that never answers gives an error within the
// store's timeout.
func TestRedisSlow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var conns sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); conns.Wait() })
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { _, _ = c.Read(make([]byte, 1<<16)); _ = c.Close() })
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	st := NewRedis(rdb, "", 30*time.Millisecond)
	if rev, err := st.IsRevoked(context.Background(), "jti"); err == nil || rev {
		t.Fatalf("slow redis: %v %v, want an error", rev, err)
	}
}

func TestMemoryBounded(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewMemory(WithClock(clk.Now), WithMaxEntries(2))
	ctx := context.Background()
	must(t, m.Put(ctx, "a", nil, time.Second))
	must(t, m.Put(ctx, "b", nil, time.Minute))
	if err := m.Put(ctx, "c", nil, time.Second); !errors.Is(err, ErrFull) {
		t.Fatalf("third entry: %v, want ErrFull", err)
	}
	must(t, m.Put(ctx, "b", []byte("again"), time.Minute))  // replacing needs no room
	must(t, m.PutSession(ctx, "s", Session{}, time.Second)) // tables are bounded separately
	clk.Advance(time.Second)
	must(t, m.Put(ctx, "c", nil, time.Second)) // "a" expired and was swept
	clk.Advance(time.Hour)
	if _, _, err := m.Get(ctx, "x"); err != nil { // the periodic sweep runs on access
		t.Fatal(err)
	}
	m.mu.Lock()
	n := 0
	for _, tab := range m.tables {
		n += len(tab)
	}
	m.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d entries left after everything expired", n)
	}
}

func TestMemoryCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := NewMemory()
	if _, err := m.IsRevoked(ctx, "j"); !errors.Is(err, context.Canceled) {
		t.Fatalf("IsRevoked on a canceled context: %v", err)
	}
	if err := m.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping on a canceled context: %v", err)
	}
}

func FuzzDecodeKeyEntry(f *testing.F) {
	f.Add([]byte(`1767225600000:{"kid":"a"}`))
	f.Add([]byte(`:x`))
	f.Add([]byte(`-1:x`))
	f.Add([]byte(`99999999999999999999:x`))
	f.Add([]byte(`12`))
	f.Fuzz(func(t *testing.T, b []byte) {
		jwk, until, err := decodeKeyEntry(b)
		if err != nil {
			return
		}
		if got := encodeKeyEntry(jwk, until); !bytes.Equal(got, b) && until.UnixMilli() >= 0 {
			// Leading zeros are accepted on read; compare values instead.
			j2, u2, err := decodeKeyEntry(got)
			if err != nil || !bytes.Equal(j2, jwk) || !u2.Equal(until) {
				t.Fatalf("round trip of %q: %q", b, got)
			}
		}
	})
}

func TestDecodeKeyEntry(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantJWK string
		wantMS  int64
		wantErr bool
	}{
		{"valid", `1000:{"a":1}`, `{"a":1}`, 1000, false},
		{"colon in jwk", `5:a:b`, `a:b`, 5, false},
		{"empty jwk", `5:`, ``, 5, false},
		{"no colon", `12`, ``, 0, true},
		{"no number", `:x`, ``, 0, true},
		{"negative", `-1:x`, ``, 0, true},
		{"overflow", `99999999999999999999:x`, ``, 0, true},
		{"letters", `1a:x`, ``, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwk, until, err := decodeKeyEntry([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && (string(jwk) != tt.wantJWK || until.UnixMilli() != tt.wantMS) {
				t.Fatalf("got %q %v", jwk, until.UnixMilli())
			}
		})
	}
}

func FuzzDecodeSession(f *testing.F) {
	f.Add([]byte(`{"iss":"i","sub":"s","agent":"a","protocol":"p","created":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"created":"not a time"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession(b)
		if err != nil {
			return
		}
		enc, err := encodeSession(s)
		if err != nil {
			return // e.g. a year outside [0,9999] cannot be re-encoded
		}
		s2, err := decodeSession(enc)
		if err != nil || s2.Subject != s.Subject || s2.Issuer != s.Issuer || s2.Agent != s.Agent || !s2.Created.Equal(s.Created) {
			t.Fatalf("round trip of %q: %+v %v", b, s2, err)
		}
	})
}

func BenchmarkIsRevoked(b *testing.B) {
	ctx := context.Background()
	m := NewMemory()
	r := NewRedis(testClient(b, redistest.Start(b)), "", 2*time.Second)
	for name, st := range map[string]Revocations{"memory": m, "redis": r} {
		b.Run(name, func(b *testing.B) {
			if err := st.Revoke(ctx, "revoked", time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := st.IsRevoked(ctx, "jti-123"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBounded: a namespace for unauthenticated state refuses new keys when
// full, and filling it never crowds out sessions, revocations or the plain
// KV (the registration flood of issue 13).
func TestBounded(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := mk(t)
			bd := b.st.(Bounder)
			clients := bd.Bounded("clients", 3)
			for i := range 3 {
				must(t, clients.Put(ctx, fmt.Sprint("c", i), []byte("v"), time.Hour))
			}
			if err := clients.Put(ctx, "c3", []byte("v"), time.Hour); !errors.Is(err, ErrFull) {
				t.Fatalf("fourth entry: %v, want ErrFull", err)
			}
			must(t, clients.Put(ctx, "c1", []byte("again"), time.Hour)) // replacing needs no room
			if v, ok, err := clients.Get(ctx, "c1"); err != nil || !ok || string(v) != "again" {
				t.Fatalf("Get c1 = %q %v %v", v, ok, err)
			}
			// Other tables and namespaces are untouched by the full one.
			must(t, bd.Bounded("flows", 1).Put(ctx, "f", []byte("v"), time.Hour))
			must(t, b.st.Put(ctx, "c3", []byte("v"), time.Hour))
			must(t, b.st.PutSession(ctx, "s", Session{}, time.Hour))
			must(t, b.st.Revoke(ctx, "jti", b.now().Add(time.Hour)))
			if _, ok, _ := clients.Get(ctx, "c3"); ok {
				t.Fatal("the plain KV leaks into the namespace")
			}
			// Take and Delete free room.
			if v, ok, err := clients.Take(ctx, "c0"); err != nil || !ok || string(v) != "v" {
				t.Fatalf("Take c0 = %q %v %v", v, ok, err)
			}
			if _, ok, err := clients.Take(ctx, "c0"); err != nil || ok {
				t.Fatalf("second Take c0 = %v %v", ok, err)
			}
			must(t, clients.Put(ctx, "c3", []byte("v"), time.Hour))
			must(t, clients.Delete(ctx, "c3"))
			// Expired entries free room.
			must(t, clients.Put(ctx, "short", []byte("v"), short))
			b.advance(long)
			must(t, clients.Put(ctx, "c4", []byte("v"), time.Hour))
			if err := clients.Put(ctx, "big", make([]byte, MaxBoundedValue+1), time.Hour); !errors.Is(err, ErrInvalid) {
				t.Fatalf("oversized value: %v, want ErrInvalid", err)
			}
		})
	}
}
