package store

import (
	"context"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/redistest"
)

// watchEvent is one call a watcher received: a deleted session id, a
// changed environment, or a reset.
type watchEvent struct {
	deleted string
	changed string
	reset   bool
	live    bool
}

// chanWatcher records what it is told, in order; it watches sessions and
// environments alike.
type chanWatcher chan watchEvent

func (c chanWatcher) SessionDeleted(id string)       { c <- watchEvent{deleted: id} }
func (c chanWatcher) SessionsReset(live bool)        { c <- watchEvent{reset: true, live: live} }
func (c chanWatcher) EnvironmentChanged(name string) { c <- watchEvent{changed: name} }
func (c chanWatcher) EnvironmentsReset(live bool)    { c <- watchEvent{reset: true, live: live} }

// startWatch runs st's session watch for the test; it returns the watcher
// once the watch is live.
func startWatch(t *testing.T, st SessionWatch) chanWatcher {
	t.Helper()
	return watching(t, func(ctx context.Context, w chanWatcher) error { return st.WatchSessions(ctx, w) })
}

// watching runs watch until the test ends (it must then return nil) and
// returns its watcher once the first event, a live reset, arrived.
func watching(t *testing.T, watch func(context.Context, chanWatcher) error) chanWatcher {
	t.Helper()
	w := make(chanWatcher, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watch(ctx, w) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch ended with %v", err)
		}
	})
	next(t, w, watchEvent{reset: true, live: true})
	return w
}

// next waits for the watcher's next event and checks it.
func next(t *testing.T, w chanWatcher, want watchEvent) {
	t.Helper()
	select {
	case got := <-w:
		if got != want {
			t.Fatalf("watch event %+v, want %+v", got, want)
		}
	case <-time.After(20 * time.Second): // a hang, not a timing threshold
		t.Fatalf("no watch event, want %+v", want)
	}
}

// TestWatchSessions: a deletion through any replica's store reaches every
// replica's watcher; memory tells it before DeleteSession returns.
func TestWatchSessions(t *testing.T) {
	ctx := context.Background()
	t.Run("memory", func(t *testing.T) {
		m := NewMemory()
		w := startWatch(t, m)
		must(t, m.PutSession(ctx, "s", Session{Subject: "alice"}, time.Hour))
		must(t, m.DeleteSession(ctx, "s"))
		select {
		case got := <-w:
			if got.deleted != "s" {
				t.Fatalf("event %+v", got)
			}
		default:
			t.Fatal("DeleteSession returned before the watcher was told")
		}
	})
	t.Run("redis", func(t *testing.T) {
		url := redistest.Start(t)
		a := NewRedis(testClient(t, url), "w:", 2*time.Second)
		b := NewRedis(testClient(t, url), "w:", 2*time.Second)
		other := NewRedis(testClient(t, url), "other:", 2*time.Second)
		wa, wb := startWatch(t, a), startWatch(t, b)
		must(t, a.PutSession(ctx, "s", Session{Subject: "alice"}, time.Hour))
		must(t, other.DeleteSession(ctx, "s")) // another prefix: another deployment
		must(t, a.DeleteSession(ctx, "s"))
		next(t, wa, watchEvent{deleted: "s"})
		next(t, wb, watchEvent{deleted: "s"})
		if _, ok, err := b.GetSession(ctx, "s"); ok || err != nil {
			t.Fatalf("deleted session still in redis: %v %v", ok, err)
		}
	})
}

// TestWatchSessionsRedisDown: when Redis goes away the watcher is reset
// (not live), and once a subscription is back it is reset again (live):
// deletions published in between were lost, so nothing cached survives.
func TestWatchSessionsRedisDown(t *testing.T) {
	old := watchPing
	watchPing = 200 * time.Millisecond
	t.Cleanup(func() { watchPing = old })
	srv := redistest.StartServer(t)
	st := NewRedis(testClient(t, srv.URL()), "", 2*time.Second)
	w := startWatch(t, st)
	srv.Stop()
	next(t, w, watchEvent{reset: true, live: false})
	srv.Restart()
	for got := range w {
		if got.deleted != "" {
			t.Fatalf("event %+v while reconnecting", got)
		}
		if got.live {
			break
		}
	}
	must(t, st.DeleteSession(context.Background(), "s"))
	next(t, w, watchEvent{deleted: "s"})
}
