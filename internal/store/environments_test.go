package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/redistest"
)

// TestEnvironments: put, get, bundle, list, the live limit, and a delete
// that only one of many concurrent callers reports.
func TestEnvironments(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := mk(t).st
			created, err := st.PutEnvironment(ctx, "feat-x", []byte(`{"a":1}`), []byte("bundle"), 2)
			must(t, err)
			if !created {
				t.Fatal("a new environment was not reported created")
			}
			created, err = st.PutEnvironment(ctx, "feat-x", []byte(`{"a":2}`), nil, 2)
			must(t, err)
			if created {
				t.Fatal("a replaced environment was reported created")
			}
			if b, ok, err := st.EnvironmentBundle(ctx, "feat-x"); ok || err != nil || b != nil {
				t.Fatalf("bundle after a put without one: %q %v %v", b, ok, err)
			}
			rec, ok, err := st.GetEnvironment(ctx, "feat-x")
			must(t, err)
			if !ok || string(rec) != `{"a":2}` {
				t.Fatalf("get = %q %v", rec, ok)
			}
			_, err = st.PutEnvironment(ctx, "feat-y", []byte(`{}`), []byte("b2"), 2)
			must(t, err)
			if _, err := st.PutEnvironment(ctx, "feat-z", []byte(`{}`), nil, 2); !errors.Is(err, ErrEnvironmentsFull) {
				t.Fatalf("third environment with max 2: %v", err)
			}
			if _, err := st.PutEnvironment(ctx, "feat-y", []byte(`{"u":1}`), []byte("b3"), 2); err != nil {
				t.Fatalf("updating at the limit: %v", err)
			}
			if b, ok, _ := st.EnvironmentBundle(ctx, "feat-y"); !ok || string(b) != "b3" {
				t.Fatalf("bundle = %q %v", b, ok)
			}
			all, err := st.ListEnvironments(ctx)
			must(t, err)
			if len(all) != 2 || string(all["feat-y"]) != `{"u":1}` {
				t.Fatalf("list = %q", all)
			}
			var deleted atomic.Int32
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					ok, err := st.DeleteEnvironment(ctx, "feat-y")
					if err != nil {
						t.Error(err)
					}
					if ok {
						deleted.Add(1)
					}
				})
			}
			wg.Wait()
			if deleted.Load() != 1 {
				t.Fatalf("%d concurrent deletions reported deleting, want exactly 1", deleted.Load())
			}
			if _, ok, _ := st.EnvironmentBundle(ctx, "feat-y"); ok {
				t.Fatal("the bundle survived the deletion")
			}
			if _, err := st.PutEnvironment(ctx, "feat-z", []byte(`{}`), nil, 2); err != nil {
				t.Fatalf("a slot freed by the deletion: %v", err)
			}
		})
	}
}

// startEnvWatch runs st's environment watch for the test; it returns the
// watcher once the watch is live.
func startEnvWatch(t *testing.T, st EnvironmentWatch) chanWatcher {
	t.Helper()
	return watching(t, func(ctx context.Context, w chanWatcher) error { return st.WatchEnvironments(ctx, w) })
}

// TestWatchEnvironments: a put or delete through one replica's store
// reaches the watchers of both replicas (two Redis clients); another
// prefix is another deployment and is not heard.
func TestWatchEnvironments(t *testing.T) {
	ctx := context.Background()
	t.Run("memory", func(t *testing.T) {
		m := NewMemory()
		w := startEnvWatch(t, m)
		_, err := m.PutEnvironment(ctx, "e", []byte("{}"), nil, 0)
		must(t, err)
		next(t, w, watchEvent{changed: "e"})
		if ok, err := m.DeleteEnvironment(ctx, "e"); !ok || err != nil {
			t.Fatal(ok, err)
		}
		next(t, w, watchEvent{changed: "e"})
		if ok, _ := m.DeleteEnvironment(ctx, "e"); ok {
			t.Fatal("a second delete reported deleting")
		}
		select {
		case got := <-w:
			t.Fatalf("a delete of nothing was announced: %+v", got)
		default:
		}
	})
	t.Run("redis", func(t *testing.T) {
		url := redistest.Start(t)
		a := NewRedis(testClient(t, url), "w:", 2*time.Second)
		b := NewRedis(testClient(t, url), "w:", 2*time.Second)
		other := NewRedis(testClient(t, url), "other:", 2*time.Second)
		wa, wb := startEnvWatch(t, a), startEnvWatch(t, b)
		_, err := other.PutEnvironment(ctx, "x", []byte("{}"), nil, 0)
		must(t, err)
		_, err = a.PutEnvironment(ctx, "e", []byte("{}"), nil, 0)
		must(t, err)
		next(t, wa, watchEvent{changed: "e"})
		next(t, wb, watchEvent{changed: "e"})
		if ok, err := b.DeleteEnvironment(ctx, "e"); !ok || err != nil {
			t.Fatal(ok, err)
		}
		next(t, wa, watchEvent{changed: "e"})
		next(t, wb, watchEvent{changed: "e"})
	})
}

// TestWatchEnvironmentsRedisDown: a broken watch resets (not live), a new
// subscription resets again (live) so the watcher resyncs everything.
func TestWatchEnvironmentsRedisDown(t *testing.T) {
	old := watchPing
	watchPing = 200 * time.Millisecond
	t.Cleanup(func() { watchPing = old })
	srv := redistest.StartServer(t)
	st := NewRedis(testClient(t, srv.URL()), "", 2*time.Second)
	w := startEnvWatch(t, st)
	srv.Stop()
	next(t, w, watchEvent{reset: true, live: false})
	srv.Restart()
	for got := range w {
		if got.live {
			break
		}
	}
	_, err := st.PutEnvironment(context.Background(), "e", []byte("{}"), nil, 0)
	must(t, err)
	next(t, w, watchEvent{changed: "e"})
}

// TestUnpublishKey: a retired preview's key leaves the published set at
// once.
func TestUnpublishKey(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := mk(t)
			must(t, b.st.PublishKey(ctx, "k1", []byte(`{"kid":"k1"}`), b.now().Add(time.Hour)))
			must(t, b.st.PublishKey(ctx, "k2", []byte(`{"kid":"k2"}`), b.now().Add(time.Hour)))
			must(t, b.st.UnpublishKey(ctx, "k1"))
			must(t, b.st.UnpublishKey(ctx, "absent"))
			keys, err := b.st.PublishedKeys(ctx)
			must(t, err)
			if len(keys) != 1 || string(keys[0]) != `{"kid":"k2"}` {
				t.Fatalf("published = %q", keys)
			}
		})
	}
}
