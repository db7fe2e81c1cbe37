package policy

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const versionedPolicy = `package harness

decision := {"allow": input.tool.name == data.version.tool, "reason": data.version.name}
`

// waitFor polls cond until it holds or a generous bound passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestWatchReloadsUnderLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	write(t, dir, "policy.rego", versionedPolicy)
	write(t, dir, "data.json", `{"version": {"name": "v1", "tool": "a"}}`)
	var logs syncBuffer
	e, err := New(ctx, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.pollInt = 10 * time.Millisecond
	rev1 := e.Revision()

	watchDone := make(chan error, 1)
	go func() { watchDone <- e.Watch(ctx) }()

	// Concurrent deciders record which reason each revision gave: a
	// half-loaded policy would pair a revision with another's data.
	var (
		mu       sync.Mutex
		byRev    = map[string]map[string]bool{}
		failures atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := callInput(nil, "GET", nil, nil)
			in.Tool.Name = "a"
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := e.Decide(ctx, in)
				if err != nil {
					failures.Add(1)
					continue
				}
				mu.Lock()
				if byRev[d.Revision] == nil {
					byRev[d.Revision] = map[string]bool{}
				}
				byRev[d.Revision][d.Reason+"/"+boolString(d.Allow)] = true
				mu.Unlock()
			}
		}()
	}
	reasonNow := func() string {
		in := callInput(nil, "GET", nil, nil)
		in.Tool.Name = "a"
		d, _ := e.Decide(ctx, in)
		return d.Reason
	}

	// 1. A data change is picked up within a bounded wait.
	write(t, dir, "data.json", `{"version": {"name": "v2", "tool": "b"}}`)
	waitFor(t, "v2", func() bool { return reasonNow() == "v2" })
	rev2 := e.Revision()
	if rev2 == rev1 || e.Stale() != nil {
		t.Fatalf("after reload: revision %s (was %s), stale %v", rev2, rev1, e.Stale())
	}

	// 2. A broken policy is refused: the old one keeps running and Stale
	// names the file and line.
	write(t, dir, "policy.rego", "package harness\n\ndecision := {\"allow\": true\n")
	waitFor(t, "stale", func() bool { return e.Stale() != nil })
	if got := reasonNow(); got != "v2" || e.Revision() != rev2 {
		t.Fatalf("broken policy replaced the running one: reason %q revision %s", got, e.Revision())
	}
	if s := e.Stale().Error(); !strings.Contains(s, "policy.rego:4") || !strings.Contains(s, rev2) {
		t.Errorf("Stale() = %q, want the file:line and the running revision", s)
	}
	if !strings.Contains(logs.String(), "policy.rego:4") {
		t.Errorf("reload failure not logged with file:line: %s", logs.String())
	}

	// 3. A fixed policy is loaded and Stale clears.
	// Data first: every intermediate state is still broken, so no
	// revision mixes v2 and v3.
	write(t, dir, "data.json", `{"version": {"name": "v3", "tool": "a"}}`)
	write(t, dir, "policy.rego", versionedPolicy)
	waitFor(t, "v3", func() bool { return reasonNow() == "v3" && e.Stale() == nil })

	close(stop)
	wg.Wait()
	cancel()
	if err := <-watchDone; err != nil {
		t.Errorf("Watch returned %v", err)
	}
	if n := failures.Load(); n != 0 {
		t.Errorf("%d decisions failed during reloads", n)
	}
	want := map[string]string{rev1: "v1/true", rev2: "v2/false", e.Revision(): "v3/true"}
	for rev, reasons := range byRev {
		if len(reasons) != 1 || !reasons[want[rev]] {
			t.Errorf("revision %s gave %v, want only %s", rev, reasons, want[rev])
		}
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write(t, dir, "policy.rego", versionedPolicy)
	write(t, dir, "data.json", `{"version": {"name": "v1", "tool": "a"}}`)
	e, err := New(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rev := e.Revision()
	if err := e.Reload(ctx); err != nil || e.Revision() != rev || e.Stale() != nil {
		t.Fatalf("reload of unchanged files: %v, revision %s, stale %v", err, e.Revision(), e.Stale())
	}
	write(t, dir, "extra.rego", "package harness\n\nhelper := y\n")
	if err := e.Reload(ctx); err == nil || !strings.Contains(err.Error(), "extra.rego:3") {
		t.Fatalf("Reload(broken) = %v, want an error naming extra.rego:3", err)
	}
	if e.Revision() != rev || e.Stale() == nil {
		t.Fatalf("after a failed reload: revision %s (want %s), stale %v", e.Revision(), rev, e.Stale())
	}
	write(t, dir, "extra.rego", "package harness\n\nhelper := 1\n")
	if err := e.Reload(ctx); err != nil || e.Revision() == rev || e.Stale() != nil {
		t.Fatalf("reload of fixed files: %v, revision %s, stale %v", err, e.Revision(), e.Stale())
	}
}

func TestWatchEmbeddedReturnsOnCancel(t *testing.T) {
	e := newDefault(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v", err)
	}
}

// TestReloadIsReported: OnReload hears of a new revision and of a
// rejected one (the audit trail records both).
func TestReloadIsReported(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write(t, dir, "policy.rego", versionedPolicy)
	write(t, dir, "data.json", `{"version": {"name": "v1", "tool": "a"}}`)
	type ev struct {
		rev string
		err bool
	}
	var got []ev
	e, err := New(ctx, Options{Dir: dir, OnReload: func(_ context.Context, rev string, err error) { got = append(got, ev{rev, err != nil}) }})
	if err != nil {
		t.Fatal(err)
	}
	rev1 := e.Revision()
	write(t, dir, "data.json", `{"version": {"name": "v2", "tool": "b"}}`)
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	rev2 := e.Revision()
	write(t, dir, "extra.rego", "package harness\n\nhelper := y\n")
	_ = e.Reload(ctx)
	if len(got) != 2 || got[0] != (ev{rev2, false}) || got[1] != (ev{rev2, true}) || rev1 == rev2 {
		t.Fatalf("OnReload calls %+v (revisions %s → %s)", got, rev1, rev2)
	}
}
