package redistest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestServerStopRestart(t *testing.T) {
	s := StartServer(t)
	if s.port == 6379 {
		t.Fatal("started on the shared port 6379")
	}
	opts, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set on a running server: %v", err)
	}
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded on a stopped server")
	}
	s.Stop() // idempotent
	s.Restart()
	var perr error
	for range 3 { // a pooled connection from before the restart may fail once
		if perr = c.Ping(ctx).Err(); perr == nil {
			break
		}
	}
	if perr != nil {
		t.Fatalf("ping after restart: %v", perr)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("restarted server should be empty: n=%d err=%v", n, err)
	}
}

func TestStartWithoutEnv(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	u := Start(t)
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Addr == "127.0.0.1:6379" {
		t.Fatal("Start used the shared Redis")
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestStartWithEnv(t *testing.T) {
	srv := StartServer(t)
	t.Setenv("REDIS_URL", srv.URL())
	u1 := Start(t)
	u2 := Start(t)
	if u1 == u2 {
		t.Fatalf("two Start calls share a database: %s", u1)
	}
	o1, err := redis.ParseURL(u1)
	if err != nil {
		t.Fatal(err)
	}
	if o1.DB == 0 || o1.Addr != srv.Addr() {
		t.Fatalf("Start(REDIS_URL) = %s, want a non-zero db on %s", u1, srv.Addr())
	}
}

func TestSharedLocal(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want bool
	}{
		{"loopback default port", "redis://127.0.0.1", true},
		{"localhost 6379", "redis://localhost:6379/2", true},
		{"ipv6 loopback", "redis://[::1]:6379", true},
		{"other port", "redis://127.0.0.1:6380", false},
		{"remote host", "redis://redis:6379", false},
		{"garbage", "%zz", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sharedLocal(tt.url); got != tt.want {
				t.Errorf("sharedLocal(%q) = %v, want %v", tt.url, got, tt.want)
			}
		})
	}
}
