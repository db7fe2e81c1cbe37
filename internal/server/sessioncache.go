package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/agentharness/harness/internal/store"
)

// Session cache bounds: a cached binding is re-read from the store at
// least this often, and at most this many are held.
const (
	sessionCacheTTL = time.Minute
	sessionCacheMax = 10000
)

// sessionCache keeps legacy session bindings in-process, so that a request
// on an open session needs no store round trip. A binding never changes;
// only deletion (DELETE /mcp on any replica) and expiry end it. Deletions
// come from the store's invalidation (store.SessionWatch): Redis pub/sub
// or, for memory, directly.
//
// It fails safe: it serves nothing unless a watch is live (confirmed
// subscription), and it forgets everything whenever the watch breaks or is
// re-established, since deletions may have been missed in between. An
// entry lives at most sessionCacheTTL and never past the session's own
// expiry. Revocation of delegations is not its business: authenticate
// checks it on every request, before bindSession.
type sessionCache struct {
	now func() time.Time
	ttl time.Duration
	max int
	log *slog.Logger // nil: silent

	mu   sync.Mutex
	live bool
	gen  uint64 // bumped by every deletion and reset
	m    map[string]cachedSession
}

type cachedSession struct {
	sess store.Session
	exp  time.Time
}

func newSessionCache() *sessionCache {
	return &sessionCache{now: time.Now, ttl: sessionCacheTTL, max: sessionCacheMax, m: map[string]cachedSession{}}
}

// get returns the cached binding of id, and the generation to pass to put
// after a store read.
func (c *sessionCache) get(id string) (store.Session, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		return store.Session{}, false, c.gen
	}
	e, ok := c.m[id]
	if ok && !c.now().Before(e.exp) {
		delete(c.m, id)
		ok = false
	}
	return e.sess, ok, c.gen
}

// put caches a binding read from the store, unless the cache is not live
// or a deletion or reset happened since get returned gen (the read may
// predate that deletion).
func (c *sessionCache) put(id string, s store.Session, gen uint64) {
	now := c.now()
	exp := now.Add(c.ttl)
	if end := s.Created.Add(sessionTTL); end.Before(exp) {
		exp = end
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || gen != c.gen || !now.Before(exp) {
		return
	}
	if _, ok := c.m[id]; !ok && len(c.m) >= c.max {
		c.evictLocked(now)
	}
	c.m[id] = cachedSession{sess: s, exp: exp}
}

// evictLocked makes room: expired entries go, else an arbitrary one.
func (c *sessionCache) evictLocked(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.exp) {
			delete(c.m, k)
		}
	}
	for k := range c.m {
		if len(c.m) < c.max {
			return
		}
		delete(c.m, k)
	}
}

// SessionDeleted implements store.SessionWatcher.
func (c *sessionCache) SessionDeleted(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, id)
}

// SessionsReset implements store.SessionWatcher. A change between live
// and not live is logged.
func (c *sessionCache) SessionsReset(live bool) {
	c.mu.Lock()
	was := c.live
	c.gen++
	c.live = live
	clear(c.m)
	c.mu.Unlock()
	switch {
	case c.log == nil || was == live:
	case live:
		c.log.Info("session cache on: deletions on every replica reach this one")
	default:
		c.log.Warn("session cache off: the store's invalidation is not confirmed; sessions are read from the store on every request")
	}
}

// len is the number of cached bindings; for tests.
func (c *sessionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// WatchSessions keeps the session cache in step with the store until ctx
// ends. Without it (or with a store that cannot watch) nothing is cached
// and every request reads its session from the store.
func (s *Server) WatchSessions(ctx context.Context) error {
	w, ok := s.sessions.(store.SessionWatch)
	if !ok {
		return nil
	}
	return w.WatchSessions(ctx, s.sessCache)
}

// isLive reports whether the cache serves; for tests.
func (c *sessionCache) isLive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}
