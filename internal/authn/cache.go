package authn

import (
	"crypto/sha256"
	"maps"
	"slices"
	"sync"
	"time"
)

// evictSample is how many entries an insert into a full cache inspects.
const evictSample = 8

type cacheEntry struct {
	p   *Principal
	exp time.Time
}

// cache maps SHA-256(token) to its verified Principal until the token
// expires. When full, an insert drops expired entries among a few random
// ones, or one random entry.
type cache struct {
	size int
	mu   sync.RWMutex
	m    map[[sha256.Size]byte]cacheEntry
}

func newCache(size int) *cache {
	if size < 0 {
		size = 0
	}
	return &cache{size: size, m: make(map[[sha256.Size]byte]cacheEntry, min(size, 1024))}
}

func cacheKey(raw string) [sha256.Size]byte { return sha256.Sum256([]byte(raw)) }

// get returns a copy of the cached Principal if it has not expired at now.
func (c *cache) get(k [sha256.Size]byte, now time.Time) (*Principal, bool) {
	if c.size == 0 {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if !now.Before(e.exp) {
		c.mu.Lock()
		if cur, ok := c.m[k]; ok && cur == e {
			delete(c.m, k)
		}
		c.mu.Unlock()
		return nil, false
	}
	return clonePrincipal(e.p), true
}

// put stores p until p.ExpiresAt; now is used to find expired victims.
func (c *cache) put(k [sha256.Size]byte, p *Principal, now time.Time) {
	if c.size == 0 || !now.Before(p.ExpiresAt) {
		return
	}
	e := cacheEntry{p: clonePrincipal(p), exp: p.ExpiresAt}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.size {
		c.evictLocked(now)
	}
	c.m[k] = e
}

// evictLocked removes the expired entries among a few random ones or, if
// none has expired, the first of them (map iteration order is random).
func (c *cache) evictLocked(now time.Time) {
	var first [sha256.Size]byte
	n, removed := 0, false
	for k, e := range c.m {
		if n == 0 {
			first = k
		}
		if !now.Before(e.exp) {
			delete(c.m, k)
			removed = true
		}
		if n++; n >= evictSample {
			break
		}
	}
	if !removed {
		delete(c.m, first)
	}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// clonePrincipal copies p so callers cannot alter a cached entry's top-level
// fields, roles, claims map or delegation; nested claim values are shared.
func clonePrincipal(p *Principal) *Principal {
	cp := *p
	cp.Roles = slices.Clone(p.Roles)
	cp.Claims = maps.Clone(p.Claims)
	if p.Delegation != nil {
		d := *p.Delegation
		d.Scopes = slices.Clone(d.Scopes)
		d.Actors = slices.Clone(d.Actors)
		cp.Delegation = &d
	}
	return &cp
}
