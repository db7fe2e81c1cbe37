package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is a Store for a single replica. Entries expire lazily (an expired
// entry is never returned) and are swept periodically; each table holds at
// most a bounded number of live entries. It is safe for concurrent use.
type Memory struct {
	now        func() time.Time
	maxEntries int
	sweepEach  time.Duration

	mu        sync.Mutex
	tables    [4]map[string]entry // indexed by the table constants
	bounded   map[string]*boundedTable
	lastSweep time.Time

	watchMu  sync.Mutex
	watchers map[*SessionWatcher]SessionWatcher

	envOnce sync.Once
	envs    *memEnvs
}

// boundedTable is a namespace of Bounded: its own entries and its own cap.
type boundedTable struct {
	max     int
	entries map[string]entry
}

// The tables of a Memory.
const (
	tSessions = iota
	tRevoked
	tKeys
	tKV
)

// entry is one stored value.
type entry struct {
	val  []byte  // KV value or JWK
	sess Session // for sessions
	exp  time.Time
}

// MemoryOption configures NewMemory.
type MemoryOption func(*Memory)

// WithClock sets the clock (default time.Now); for tests.
func WithClock(now func() time.Time) MemoryOption {
	return func(m *Memory) { m.now = now }
}

// WithMaxEntries bounds the live entries of each table (sessions,
// revocations, keys, KV), default 1,048,576. A write that would exceed it
// returns ErrFull.
func WithMaxEntries(n int) MemoryOption {
	return func(m *Memory) { m.maxEntries = n }
}

// NewMemory returns an empty in-memory store.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{now: time.Now, maxEntries: 1 << 20, sweepEach: time.Minute, bounded: map[string]*boundedTable{}}
	for i := range m.tables {
		m.tables[i] = make(map[string]entry)
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Ping implements Store; memory is always ready.
func (m *Memory) Ping(ctx context.Context) error { return ctx.Err() }

// lock takes the mutex and returns the current time, sweeping when due.
func (m *Memory) lock() time.Time {
	m.mu.Lock()
	now := m.now()
	if now.Sub(m.lastSweep) >= m.sweepEach {
		m.sweepLocked(now)
	}
	return now
}

// sweepLocked drops every expired entry.
func (m *Memory) sweepLocked(now time.Time) {
	for _, t := range m.tables {
		sweepTable(t, now)
	}
	for _, b := range m.bounded {
		sweepTable(b.entries, now)
	}
	m.lastSweep = now
}

func sweepTable(t map[string]entry, now time.Time) {
	for k, e := range t {
		if !e.exp.After(now) {
			delete(t, k)
		}
	}
}

// getLocked returns the live entry under key in table t.
func (m *Memory) getLocked(t int, key string, now time.Time) (entry, bool) {
	e, ok := m.tables[t][key]
	if !ok || !e.exp.After(now) {
		return entry{}, false
	}
	return e, true
}

// putLocked stores e under key in table t, enforcing the size bound.
func (m *Memory) putLocked(t int, key string, e entry, now time.Time) error {
	tab := m.tables[t]
	if _, ok := tab[key]; !ok && len(tab) >= m.maxEntries {
		m.sweepLocked(now)
		if len(tab) >= m.maxEntries {
			return fmt.Errorf("%w: %d entries", ErrFull, len(tab))
		}
	}
	tab[key] = e
	return nil
}

// PutSession implements Sessions.
func (m *Memory) PutSession(ctx context.Context, id string, s Session, ttl time.Duration) error {
	if err := firstErr(ctx.Err(), checkID("session id", id), checkTTL(ttl)); err != nil {
		return err
	}
	now := m.lock()
	defer m.mu.Unlock()
	return m.putLocked(tSessions, id, entry{sess: s, exp: now.Add(ttl)}, now)
}

// GetSession implements Sessions.
func (m *Memory) GetSession(ctx context.Context, id string) (Session, bool, error) {
	if err := firstErr(ctx.Err(), checkID("session id", id)); err != nil {
		return Session{}, false, err
	}
	now := m.lock()
	defer m.mu.Unlock()
	e, ok := m.getLocked(tSessions, id, now)
	return e.sess, ok, nil
}

// TouchSession implements Sessions.
func (m *Memory) TouchSession(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	if err := firstErr(ctx.Err(), checkID("session id", id), checkTTL(ttl)); err != nil {
		return false, err
	}
	now := m.lock()
	defer m.mu.Unlock()
	e, ok := m.getLocked(tSessions, id, now)
	if !ok {
		return false, nil
	}
	e.exp = now.Add(ttl)
	m.tables[tSessions][id] = e
	return true, nil
}

// DeleteSession implements Sessions. Watchers are told before it returns.
func (m *Memory) DeleteSession(ctx context.Context, id string) error {
	if err := m.delete(ctx, tSessions, "session id", id); err != nil {
		return err
	}
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	for _, w := range m.watchers {
		w.SessionDeleted(id)
	}
	return nil
}

// WatchSessions implements SessionWatch: deletions are reported directly,
// before DeleteSession returns.
func (m *Memory) WatchSessions(ctx context.Context, w SessionWatcher) error {
	key := &w
	m.watchMu.Lock()
	if m.watchers == nil {
		m.watchers = map[*SessionWatcher]SessionWatcher{}
	}
	m.watchers[key] = w
	w.SessionsReset(true)
	m.watchMu.Unlock()
	<-ctx.Done()
	m.watchMu.Lock()
	delete(m.watchers, key)
	m.watchMu.Unlock()
	w.SessionsReset(false)
	return nil
}

// Revoke implements Revocations.
func (m *Memory) Revoke(ctx context.Context, id string, until time.Time) error {
	if err := firstErr(ctx.Err(), checkID("revocation id", id)); err != nil {
		return err
	}
	now := m.lock()
	defer m.mu.Unlock()
	if !until.After(now) {
		return nil
	}
	if e, ok := m.getLocked(tRevoked, id, now); ok && !e.exp.Before(until) {
		return nil
	}
	return m.putLocked(tRevoked, id, entry{exp: until}, now)
}

// IsRevoked implements Revocations.
func (m *Memory) IsRevoked(ctx context.Context, id string) (bool, error) {
	if err := firstErr(ctx.Err(), checkID("revocation id", id)); err != nil {
		return false, err
	}
	now := m.lock()
	defer m.mu.Unlock()
	_, ok := m.getLocked(tRevoked, id, now)
	return ok, nil
}

// PublishKey implements Keys.
func (m *Memory) PublishKey(ctx context.Context, kid string, jwk []byte, until time.Time) error {
	if err := firstErr(ctx.Err(), checkID("kid", kid)); err != nil {
		return err
	}
	now := m.lock()
	defer m.mu.Unlock()
	if !until.After(now) {
		return nil
	}
	return m.putLocked(tKeys, kid, entry{val: bytes.Clone(jwk), exp: until}, now)
}

// UnpublishKey implements Keys.
func (m *Memory) UnpublishKey(ctx context.Context, kid string) error {
	return m.delete(ctx, tKeys, "kid", kid)
}

// PublishedKeys implements Keys.
func (m *Memory) PublishedKeys(ctx context.Context) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.lock()
	defer m.mu.Unlock()
	kids := make([]string, 0, len(m.tables[tKeys]))
	for kid, e := range m.tables[tKeys] {
		if e.exp.After(now) {
			kids = append(kids, kid)
		}
	}
	slices.Sort(kids)
	out := make([][]byte, len(kids))
	for i, kid := range kids {
		out[i] = bytes.Clone(m.tables[tKeys][kid].val)
	}
	return out, nil
}

// Put implements KV.
func (m *Memory) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := firstErr(ctx.Err(), checkID("key", key), checkTTL(ttl)); err != nil {
		return err
	}
	now := m.lock()
	defer m.mu.Unlock()
	return m.putLocked(tKV, key, entry{val: bytes.Clone(val), exp: now.Add(ttl)}, now)
}

// Get implements KV.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := firstErr(ctx.Err(), checkID("key", key)); err != nil {
		return nil, false, err
	}
	now := m.lock()
	defer m.mu.Unlock()
	e, ok := m.getLocked(tKV, key, now)
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(e.val), true, nil
}

// Take implements KV.
func (m *Memory) Take(ctx context.Context, key string) ([]byte, bool, error) {
	if err := firstErr(ctx.Err(), checkID("key", key)); err != nil {
		return nil, false, err
	}
	now := m.lock()
	defer m.mu.Unlock()
	e, ok := m.getLocked(tKV, key, now)
	delete(m.tables[tKV], key)
	if !ok {
		return nil, false, nil
	}
	return e.val, true, nil
}

// Delete implements KV.
func (m *Memory) Delete(ctx context.Context, key string) error {
	return m.delete(ctx, tKV, "key", key)
}

// delete removes key from table t.
func (m *Memory) delete(ctx context.Context, t int, what, key string) error {
	if err := firstErr(ctx.Err(), checkID(what, key)); err != nil {
		return err
	}
	m.lock()
	defer m.mu.Unlock()
	delete(m.tables[t], key)
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
