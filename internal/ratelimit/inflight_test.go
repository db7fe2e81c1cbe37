package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/redistest"
)

func TestAcquire(t *testing.T) {
	ctx := context.Background()
	rdb := testClient(t, redistest.Start(t))
	var n atomic.Int64
	impls := map[string]func() InFlight{
		"memory": func() InFlight { return NewMemory() },
		"redis": func() InFlight {
			return NewRedis(rdb, RedisOptions{Prefix: fmt.Sprintf("if%d:", n.Add(1)), Timeout: 2 * time.Second})
		},
	}
	acquire := func(t *testing.T, f InFlight, key string, max int, want bool) func() {
		t.Helper()
		rel, ok, err := f.Acquire(ctx, key, max)
		if err != nil {
			t.Fatal(err)
		}
		if ok != want || (rel != nil) != want {
			t.Fatalf("Acquire(%q, %d) = %v (release %v), want %v", key, max, ok, rel != nil, want)
		}
		return rel
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f InFlight)
	}{
		{"cap and release", func(t *testing.T, f InFlight) {
			r1 := acquire(t, f, "alice|cursor", 2, true)
			acquire(t, f, "alice|cursor", 2, true)
			acquire(t, f, "alice|cursor", 2, false)
			r1()
			r1() // a second release frees nothing more
			acquire(t, f, "alice|cursor", 2, true)
			acquire(t, f, "alice|cursor", 2, false)
		}},
		{"keys are independent", func(t *testing.T, f InFlight) {
			acquire(t, f, "a", 1, true)
			acquire(t, f, "a", 1, false)
			acquire(t, f, "b", 1, true)
		}},
		{"invalid", func(t *testing.T, f InFlight) {
			for _, c := range []struct {
				key string
				max int
			}{{"", 1}, {"k", 0}} {
				if _, _, err := f.Acquire(ctx, c.key, c.max); !errors.Is(err, ErrInvalidLimit) {
					t.Errorf("Acquire(%q, %d): %v, want ErrInvalidLimit", c.key, c.max, err)
				}
			}
		}},
	}
	for name, mk := range impls {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, mk()) })
			}
		})
	}
}

func TestMemoryAcquireFreesKeys(t *testing.T) {
	m := NewMemory()
	var rels []func()
	for i := range 10 {
		rel, ok, err := m.Acquire(context.Background(), fmt.Sprint(i), 1)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		rels = append(rels, rel)
	}
	for _, rel := range rels {
		rel()
	}
	m.inflight.mu.Lock()
	defer m.inflight.mu.Unlock()
	if len(m.inflight.n) != 0 {
		t.Fatalf("%d keys left after every release", len(m.inflight.n))
	}
}

func TestRedisAcquireLeaseAndOutage(t *testing.T) {
	srv := redistest.StartServer(t)
	rdb := testClient(t, srv.URL())
	r := NewRedis(rdb, RedisOptions{Timeout: 2 * time.Second, Lease: 30 * time.Millisecond})
	ctx := context.Background()
	if _, ok, err := r.Acquire(ctx, "k", 1); err != nil || !ok {
		t.Fatal(ok, err)
	}
	// Never released (a crashed replica): the lease frees the slot.
	time.Sleep(80 * time.Millisecond)
	rel, ok, err := r.Acquire(ctx, "k", 1)
	if err != nil || !ok {
		t.Fatalf("after the lease: %v %v", ok, err)
	}
	rel()
	srv.Stop()
	if rel, ok, err := r.Acquire(ctx, "k", 1); err == nil || ok || rel != nil {
		t.Fatalf("redis down: %v %v, want an error", ok, err)
	}
}
