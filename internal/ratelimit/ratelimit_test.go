package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// t0 is the fake start time of the shared table.
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

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

// impl builds a fresh limiter on a fake clock.
type impl struct {
	name string
	new  func(t *testing.T, clk *fakeClock) Limiter
}

// testClient connects to url with generous timeouts (the machine is shared
// and tests run under -race).
func testClient(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	rdb, err := ParseRedisURL(url + "?dial_timeout=2s&read_timeout=2s&write_timeout=2s&pool_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func impls(t *testing.T) []impl {
	url := redistest.Start(t)
	rdb := testClient(t, url)
	var n atomic.Int64
	return []impl{
		{"memory", func(t *testing.T, clk *fakeClock) Limiter {
			return NewMemory(WithClock(clk.Now))
		}},
		{"redis", func(t *testing.T, clk *fakeClock) Limiter {
			r := NewRedis(rdb, RedisOptions{Prefix: fmt.Sprintf("test%d:", n.Add(1)), Timeout: 2 * time.Second})
			r.nowUS = func() int64 { return clk.Now().UnixMicro() }
			return r
		}},
	}
}

type step struct {
	advance time.Duration
	limits  []Limit
	want    Result
	wantErr error
}

func lim(key string, requests int, per time.Duration, burst int) Limit {
	return Limit{Key: key, Requests: requests, Per: per, Burst: burst}
}

func allowed(rem int) Result { return Result{Allowed: true, Remaining: rem} }

func refused(after time.Duration, l Limit) Result { return Result{RetryAfter: after, Limit: l} }

func TestAllow(t *testing.T) {
	a3 := lim(Key("alice", "a"), 3, 3*time.Second, 0)
	b2 := lim(Key("alice", "b"), 10, 10*time.Second, 2)
	steady := lim(Key("alice", "s"), 2, time.Second, 1)
	perMin := lim(Key("alice", "m"), 1, time.Minute, 0)
	multiA := lim(Key("bob", "all"), 10, 10*time.Second, 0)
	multiB := lim(Key("bob", "tool"), 1, 10*time.Second, 0)
	fast := lim(Key("carol", "fast"), 1, time.Second, 0)
	slow := lim(Key("carol", "slow"), 1, time.Minute, 0)
	x := lim(Key("x", "t"), 1, time.Minute, 0)
	y := lim(Key("y", "t"), 1, time.Minute, 0)
	tests := []struct {
		name  string
		steps []step
	}{
		{"burst defaults to requests", []step{
			{limits: []Limit{a3}, want: allowed(2)},
			{limits: []Limit{a3}, want: allowed(1)},
			{limits: []Limit{a3}, want: allowed(0)},
			{limits: []Limit{a3}, want: refused(time.Second, a3)},
			{limits: []Limit{a3}, want: refused(time.Second, a3)},
		}},
		{"explicit burst below requests", []step{
			{limits: []Limit{b2}, want: allowed(1)},
			{limits: []Limit{b2}, want: allowed(0)},
			{limits: []Limit{b2}, want: refused(time.Second, b2)},
		}},
		{"steady rate", []step{
			{limits: []Limit{steady}, want: allowed(0)},
			{advance: 500 * time.Millisecond, limits: []Limit{steady}, want: allowed(0)},
			{advance: 250 * time.Millisecond, limits: []Limit{steady}, want: refused(250*time.Millisecond, steady)},
			{advance: 250 * time.Millisecond, limits: []Limit{steady}, want: allowed(0)},
			{advance: 499 * time.Millisecond, limits: []Limit{steady}, want: refused(time.Millisecond, steady)},
		}},
		{"retry after shrinks while waiting", []step{
			{limits: []Limit{perMin}, want: allowed(0)},
			{advance: 20 * time.Second, limits: []Limit{perMin}, want: refused(40*time.Second, perMin)},
			{advance: 39 * time.Second, limits: []Limit{perMin}, want: refused(time.Second, perMin)},
			{advance: time.Second, limits: []Limit{perMin}, want: allowed(0)},
		}},
		{"refill never exceeds burst", []step{
			{limits: []Limit{a3}, want: allowed(2)},
			{limits: []Limit{a3}, want: allowed(1)},
			{advance: time.Hour, limits: []Limit{a3}, want: allowed(2)},
		}},
		{"refused call charges no bucket", []step{
			{limits: []Limit{multiA, multiB}, want: allowed(0)},
			{limits: []Limit{multiA, multiB}, want: refused(10*time.Second, multiB)},
			{limits: []Limit{multiA, multiB}, want: refused(10*time.Second, multiB)},
			{limits: []Limit{multiA}, want: allowed(8)},
		}},
		{"remaining is the minimum", []step{
			{limits: []Limit{multiA}, want: allowed(9)},
			{limits: []Limit{multiB, multiA}, want: allowed(0)},
		}},
		{"longest wait names the limit", []step{
			{limits: []Limit{fast, slow}, want: allowed(0)},
			{limits: []Limit{fast, slow}, want: refused(time.Minute, slow)},
			{advance: time.Second, limits: []Limit{fast, slow}, want: refused(59*time.Second, slow)},
		}},
		{"keys are independent", []step{
			{limits: []Limit{x}, want: allowed(0)},
			{limits: []Limit{x}, want: refused(time.Minute, x)},
			{limits: []Limit{y}, want: allowed(0)},
		}},
		{"invalid calls are errors", []step{
			{limits: nil, wantErr: ErrInvalidLimit},
			{limits: []Limit{{Key: "", Requests: 1, Per: time.Second}}, wantErr: ErrInvalidLimit},
			{limits: []Limit{{Key: "k", Requests: 0, Per: time.Second}}, wantErr: ErrInvalidLimit},
			{limits: []Limit{{Key: "k", Requests: 1, Per: 0}}, wantErr: ErrInvalidLimit},
			{limits: []Limit{{Key: "k", Requests: 1, Per: time.Second, Burst: -1}}, wantErr: ErrInvalidLimit},
			{limits: []Limit{x, y}, wantErr: ErrInvalidLimit},
			{limits: []Limit{x, x}, wantErr: ErrInvalidLimit},
			{limits: []Limit{x}, want: allowed(0)}, // nothing was charged by the errors
		}},
	}
	for _, im := range impls(t) {
		t.Run(im.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					clk := &fakeClock{now: t0}
					l := im.new(t, clk)
					for i, s := range tt.steps {
						clk.Advance(s.advance)
						got, err := l.Allow(context.Background(), s.limits)
						if s.wantErr != nil {
							if !errors.Is(err, s.wantErr) {
								t.Fatalf("step %d: err = %v, want %v", i, err, s.wantErr)
							}
							continue
						}
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						if got != s.want {
							t.Fatalf("step %d: got %+v, want %+v", i, got, s.want)
						}
					}
				})
			}
		})
	}
}

// TestConcurrentExact hammers one key from many goroutines: exactly the burst
// is allowed, with the real clocks (Redis TIME, time.Now).
func TestConcurrentExact(t *testing.T) {
	url := redistest.Start(t)
	rdb := testClient(t, url)
	const burst, workers, each = 50, 8, 25
	limiters := map[string]Limiter{
		"memory": NewMemory(),
		"redis":  NewRedis(rdb, RedisOptions{Prefix: "conc:", Timeout: 5 * time.Second}),
	}
	for name, l := range limiters {
		t.Run(name, func(t *testing.T) {
			limits := []Limit{lim(Key("hammer", "t"), burst, time.Hour, 0), lim(Key("hammer", "u"), 1000, time.Hour, 0)}
			var ok, no atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for range workers {
				wg.Go(func() {
					for range each {
						res, err := l.Allow(context.Background(), limits)
						switch {
						case err != nil:
							errs <- err
						case res.Allowed:
							ok.Add(1)
						default:
							no.Add(1)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("allow: %v", err)
			}
			if ok.Load() != burst || no.Load() != workers*each-burst {
				t.Fatalf("allowed %d refused %d, want %d and %d", ok.Load(), no.Load(), burst, workers*each-burst)
			}
			// The second bucket was charged exactly once per allowed call.
			res, err := l.Allow(context.Background(), limits[1:])
			if err != nil {
				t.Fatal(err)
			}
			if res.Remaining != 1000-burst-1 {
				t.Fatalf("second bucket remaining %d, want %d", res.Remaining, 1000-burst-1)
			}
		})
	}
}

func TestRedisRealClock(t *testing.T) {
	rdb := testClient(t, redistest.Start(t))
	r := NewRedis(rdb, RedisOptions{Timeout: 2 * time.Second})
	l := lim(Key("real", "t"), 2, time.Hour, 0)
	for i, want := range []int{1, 0} {
		res, err := r.Allow(context.Background(), []Limit{l})
		if err != nil || !res.Allowed || res.Remaining != want {
			t.Fatalf("call %d: %+v %v", i, res, err)
		}
	}
	res, err := r.Allow(context.Background(), []Limit{l})
	if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 30*time.Minute || res.Limit != l {
		t.Fatalf("third call: %+v %v", res, err)
	}
	// The bucket expires with the arrival time: at most 2 intervals (1h).
	ttl, err := rdb.PTTL(context.Background(), "harness:rl:"+l.Key).Result()
	if err != nil || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("bucket ttl %v %v, want in (0, 1h]", ttl, err)
	}
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// TestRedisDown: a stopped Redis gives errors, never an allow; a restarted
// one (script cache empty) works again.
func TestRedisDown(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := testClient(t, srv.URL())
	r := NewRedis(rdb, RedisOptions{Timeout: 2 * time.Second})
	limits := []Limit{lim(Key("down", "t"), 100, time.Minute, 0)}
	ctx := context.Background()
	if res, err := r.Allow(ctx, limits); err != nil || !res.Allowed {
		t.Fatalf("before stop: %+v %v", res, err)
	}
	srv.Stop()
	for i := range 3 {
		res, err := r.Allow(ctx, limits)
		if err == nil || res.Allowed {
			t.Fatalf("call %d with redis down: %+v %v, want an error and no allow", i, res, err)
		}
	}
	if err := r.Ping(ctx); err == nil {
		t.Fatal("ping succeeded with redis down")
	}
	srv.Restart()
	var (
		res Result
		err error
	)
	// After repeated dial failures go-redis's pool redials in the background
	// about once a second: poll until it is back.
	deadline := time.Now().Add(10 * time.Second)
	for res, err = r.Allow(ctx, limits); err != nil && time.Now().Before(deadline); res, err = r.Allow(ctx, limits) {
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || !res.Allowed || res.Remaining != 99 {
		t.Fatalf("after restart: %+v %v", res, err)
	}
}

// TestRedisSlow: a server that accepts but never answers times out into an
// error.
func TestRedisSlow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
	rdb, err := ParseRedisURL("redis://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	r := NewRedis(rdb, RedisOptions{Timeout: 30 * time.Millisecond})
	res, err := r.Allow(context.Background(), []Limit{lim(Key("slow", "t"), 1, time.Second, 0)})
	if err == nil || res.Allowed {
		t.Fatalf("slow redis: %+v %v, want an error", res, err)
	}
}

func TestMemorySweep(t *testing.T) {
	clk := &fakeClock{now: t0}
	m := NewMemory(WithClock(clk.Now), WithMaxKeys(2), WithSweepInterval(time.Hour))
	ctx := context.Background()
	call := func(key string) (Result, error) {
		return m.Allow(ctx, []Limit{lim(key, 1, time.Second, 0)})
	}
	for _, k := range []string{"a", "b"} {
		if res, err := call(k); err != nil || !res.Allowed {
			t.Fatalf("%s: %+v %v", k, res, err)
		}
	}
	if _, err := call("c"); !errors.Is(err, ErrFull) {
		t.Fatalf("third live key: err %v, want ErrFull", err)
	}
	// A refused call on a known key needs no room.
	if res, err := call("a"); err != nil || res.Allowed {
		t.Fatalf("a again: %+v %v", res, err)
	}
	clk.Advance(time.Second) // a and b are full again: sweepable
	if res, err := call("c"); err != nil || !res.Allowed {
		t.Fatalf("after expiry: %+v %v", res, err)
	}
	if m.Len() != 1 {
		t.Fatalf("len %d after sweep, want 1", m.Len())
	}
	// The periodic sweep also runs without pressure.
	m2 := NewMemory(WithClock(clk.Now), WithSweepInterval(time.Minute))
	for i := range 10 {
		if _, err := m2.Allow(ctx, []Limit{lim(fmt.Sprint(i), 1, time.Second, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute)
	if _, err := m2.Allow(ctx, []Limit{lim("z", 1, time.Second, 0)}); err != nil {
		t.Fatal(err)
	}
	if m2.Len() != 1 {
		t.Fatalf("len %d after periodic sweep, want 1", m2.Len())
	}
}

func TestMemoryCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewMemory().Allow(ctx, []Limit{lim("k", 1, time.Second, 0)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		name  string
		tag   string
		parts []string
		want  string
	}{
		{"plain", "iss|alice|cursor", []string{"tool", "crm_get"}, "{iss|alice|cursor}:tool:crm_get"},
		{"tag only", "alice", nil, "{alice}"},
		{"braces and colons escaped", "a}b{c:d%", []string{"x:y"}, "{a%7Db%7Bc%3Ad%25}:x%3Ay"},
		{"empty tag", "", []string{"t"}, "{%}:t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Key(tt.tag, tt.parts...); got != tt.want {
				t.Errorf("Key = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTagSeparatorEscaped: the parts of an identity cannot be shifted across
// the separator. The attack: sub "victim|x" with azp "copilot" used up the
// bucket of sub "victim" with azp "x|copilot".
func TestTagSeparatorEscaped(t *testing.T) {
	a := Key(Tag("https://idp", "victim|x", "copilot"), "tool", "crm")
	b := Key(Tag("https://idp", "victim", "x|copilot"), "tool", "crm")
	if a == b {
		t.Fatalf("distinct identities share the bucket %q", a)
	}
	if got := Tag("a|b", "c%7Cd", ""); got != "a%7Cb|c%257Cd|" {
		t.Errorf("Tag = %q", got)
	}
}

// FuzzTag: distinct identity part lists never give one tag.
func FuzzTag(f *testing.F) {
	f.Add("victim|x", "copilot", "victim", "x|copilot")
	f.Add("a%7C", "b", "a|", "b")
	f.Add("", "|", "|", "")
	f.Fuzz(func(t *testing.T, a1, a2, b1, b2 string) {
		if (a1 != b1 || a2 != b2) && Tag(a1, a2) == Tag(b1, b2) {
			t.Fatalf("(%q, %q) and (%q, %q) share the tag %q", a1, a2, b1, b2, Tag(a1, a2))
		}
	})
}

func FuzzKey(f *testing.F) {
	f.Add("alice", "tool", "x")
	f.Add("a}b", "{", ":")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, tag, p1, p2 string) {
		k1, k2 := Key(tag, p1), Key(tag, p2, p1)
		if hashTag(k1) != hashTag(k2) {
			t.Fatalf("keys %q and %q with one tag hash differently", k1, k2)
		}
		if tag != "" && hashTag(k1) != keyEscaper.Replace(tag) || tag == "" && hashTag(k1) != "%" {
			t.Fatalf("hash tag of %q = %q", k1, hashTag(k1))
		}
		if p1 != p2 && Key(tag, p1) == Key(tag, p2) {
			t.Fatalf("distinct parts collide: %q", Key(tag, p1))
		}
		if Key(tag, p1, p2) == Key(tag, p1+":"+p2) {
			t.Fatalf("part boundary is ambiguous: %q", Key(tag, p1, p2))
		}
	})
}

func TestParseRedisURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		check   func(t *testing.T, c redisConfig)
		wantErr string
	}{
		{"simple with defaults", "redis://127.0.0.1:6390/2", func(t *testing.T, c redisConfig) {
			o := c.simple
			if o == nil || o.Addr != "127.0.0.1:6390" || o.DB != 2 || o.TLSConfig != nil {
				t.Fatalf("options %+v", o)
			}
			if o.DialTimeout != defaultDialTimeout || o.ReadTimeout != defaultReadTimeout || o.WriteTimeout != defaultWriteTimeout ||
				o.PoolTimeout != defaultPoolTimeout || o.PoolSize != defaultPoolSize() || o.MaxRetries != defaultMaxRetries || !o.ContextTimeoutEnabled {
				t.Fatalf("defaults not applied: %+v", o)
			}
		}, ""},
		{"query overrides defaults", "redis://u:p@127.0.0.1?read_timeout=2s&pool_size=3", func(t *testing.T, c redisConfig) {
			o := c.simple
			if o.ReadTimeout != 2*time.Second || o.PoolSize != 3 || o.WriteTimeout != defaultWriteTimeout || o.Username != "u" || o.Password != "p" {
				t.Fatalf("options %+v", o)
			}
		}, ""},
		{"tls", "rediss://127.0.0.1:6390", func(t *testing.T, c redisConfig) {
			if c.simple == nil || c.simple.TLSConfig == nil || c.simple.DialerRetries != defaultDialRetries {
				t.Fatal("no tls config")
			}
		}, ""},
		{"unix socket", "unix:///run/redis.sock?db=3", func(t *testing.T, c redisConfig) {
			if c.simple == nil || c.simple.Network != "unix" || c.simple.DB != 3 {
				t.Fatalf("options %+v", c.simple)
			}
		}, ""},
		{"cluster by addr", "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", func(t *testing.T, c redisConfig) {
			if c.cluster == nil || len(c.cluster.Addrs) != 3 || c.cluster.ReadTimeout != defaultReadTimeout {
				t.Fatalf("cluster %+v", c.cluster)
			}
		}, ""},
		{"cluster scheme", "rediss+cluster://127.0.0.1:7000", func(t *testing.T, c redisConfig) {
			if c.cluster == nil || len(c.cluster.Addrs) != 1 || c.cluster.TLSConfig == nil {
				t.Fatalf("cluster %+v", c.cluster)
			}
		}, ""},
		{"sentinel by master_name", "redis://127.0.0.1:26379/1?master_name=mymaster&addr=127.0.0.1:26380&password=pw", func(t *testing.T, c redisConfig) {
			o := c.failover
			if o == nil || o.MasterName != "mymaster" || len(o.SentinelAddrs) != 2 || o.DB != 1 || o.Password != "pw" || o.DialTimeout != defaultDialTimeout {
				t.Fatalf("failover %+v", o)
			}
		}, ""},
		{"sentinel scheme", "redis+sentinel://127.0.0.1:26379?master_name=m", func(t *testing.T, c redisConfig) {
			if c.failover == nil || c.failover.MasterName != "m" {
				t.Fatalf("failover %+v", c.failover)
			}
		}, ""},
		{"sentinel without master", "redis+sentinel://127.0.0.1:26379", nil, "master_name"},
		{"cluster with db", "redis+cluster://127.0.0.1:7000/3", nil, "database"},
		{"bad scheme", "http://127.0.0.1", nil, "unsupported scheme"},
		{"unknown parameter", "redis://127.0.0.1?bogus=1", nil, "bogus"},
		{"missing host", "redis://", nil, "missing host"},
		{"bad db", "redis://127.0.0.1/x", nil, "database"},
		{"password not echoed", "redis://u:s3cret@127.0.0.1:bad port", nil, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseRedisURL(tt.url, 0)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
	// The public constructor returns the matching client types without dialling.
	for url, want := range map[string]string{
		"redis://127.0.0.1:6390":                         "*redis.Client",
		"redis+cluster://127.0.0.1:7000":                 "*redis.ClusterClient",
		"redis+sentinel://127.0.0.1:26379?master_name=m": "*redis.Client",
	} {
		c, err := ParseRedisURL(url)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%T", c); got != want {
			t.Errorf("ParseRedisURL(%q) is %s, want %s", url, got, want)
		}
		_ = c.Close()
	}
}

func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/0", "rediss://u:p@h:1?addr=h:2", "redis+sentinel://h?master_name=m&addr=h:3",
		"unix:///tmp/s?db=1", "redis+cluster://h", "redis://h?read_timeout=5", "redis://:pw@[::1]:6379", "%zz", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := parseRedisURL(raw, 0)
		if err != nil {
			return
		}
		n := 0
		for _, set := range []bool{c.simple != nil, c.cluster != nil, c.failover != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%q: %d configurations set", raw, n)
		}
	})
}

// TestDefaultPoolSize: without pool_size in the URL the pool grows with the
// CPUs that run calls (go-redis's own default, 10 per CPU), never below 20,
// so that calls in flight do not queue for a connection on a larger machine.
func TestDefaultPoolSize(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct{ procs, want int }{{1, 20}, {2, 20}, {8, 80}} {
		runtime.GOMAXPROCS(tc.procs)
		for _, raw := range []string{"redis://127.0.0.1:6390", "redis+cluster://127.0.0.1:7000", "redis+sentinel://127.0.0.1:26379?master_name=m"} {
			c, err := parseRedisURL(raw, 0)
			if err != nil {
				t.Fatal(err)
			}
			var got int
			switch {
			case c.simple != nil:
				got = c.simple.PoolSize
			case c.cluster != nil:
				got = c.cluster.PoolSize
			default:
				got = c.failover.PoolSize
			}
			if got != tc.want {
				t.Errorf("GOMAXPROCS %d, %s: pool size %d, want %d", tc.procs, raw, got, tc.want)
			}
		}
	}
	c, err := parseRedisURL("redis://127.0.0.1:6390?pool_size=3", 0)
	if err != nil || c.simple.PoolSize != 3 {
		t.Fatalf("pool_size=3: %v %+v", err, c.simple)
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	m := NewMemory()
	ctx := context.Background()
	limits := []Limit{lim(Key("bench", "all"), 1<<30, time.Second, 0), lim(Key("bench", "tool"), 1<<30, time.Second, 0)}
	for b.Loop() {
		if _, err := m.Allow(ctx, limits); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	rdb := testClient(b, redistest.Start(b))
	r := NewRedis(rdb, RedisOptions{Timeout: 2 * time.Second})
	ctx := context.Background()
	limits := []Limit{lim(Key("bench", "all"), 1<<20, time.Second, 0), lim(Key("bench", "tool"), 1<<20, time.Second, 0)}
	for b.Loop() {
		if _, err := r.Allow(ctx, limits); err != nil {
			b.Fatal(err)
		}
	}
}
