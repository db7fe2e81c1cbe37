package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// InFlight caps concurrent calls per key (for example per subject and
// agent). *Memory and *Redis implement it.
type InFlight interface {
	// Acquire takes one of max slots of key. When ok, the caller must call
	// release once the call ends (calling it again does nothing). When all
	// slots are taken, ok is false and release is nil. An error means
	// nothing is known: the caller decides (fail closed by default).
	Acquire(ctx context.Context, key string, max int) (release func(), ok bool, err error)
}

var (
	_ InFlight = (*Memory)(nil)
	_ InFlight = (*Redis)(nil)
)

// inflight is Memory's slot table.
type inflight struct {
	mu sync.Mutex
	n  map[string]int
}

func checkSlots(key string, max int) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidLimit)
	}
	if max <= 0 {
		return fmt.Errorf("%w: %q: max in-flight must be positive", ErrInvalidLimit, key)
	}
	return nil
}

// Acquire implements InFlight in memory. Keys without calls in flight use no
// memory.
func (m *Memory) Acquire(ctx context.Context, key string, max int) (func(), bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("ratelimit: %w", err)
	}
	if err := checkSlots(key, max); err != nil {
		return nil, false, err
	}
	f := &m.inflight
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = make(map[string]int)
	}
	if f.n[key] >= max {
		return nil, false, nil
	}
	if _, ok := f.n[key]; !ok && len(f.n) >= m.maxKeys {
		return nil, false, fmt.Errorf("%w: %d keys with calls in flight", ErrFull, len(f.n))
	}
	f.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.n[key]--; f.n[key] <= 0 {
				delete(f.n, key)
			}
		})
	}, true, nil
}

// acquireScript adds member ARGV[3] to the sorted set KEYS[1] when fewer
// than ARGV[1] unexpired members remain. Scores are lease deadlines in ms on
// Redis's clock; ARGV[2] is the lease in ms. The set expires with its last
// lease.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
`)

// Acquire implements InFlight on Redis, shared by all replicas. Each slot is
// a lease of RedisOptions.Lease (default 1 minute): a replica that dies
// without releasing frees its slots when the lease ends, and a call that
// outlives its lease stops counting.
func (r *Redis) Acquire(ctx context.Context, key string, max int) (func(), bool, error) {
	if err := checkSlots(key, max); err != nil {
		return nil, false, err
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	member := hex.EncodeToString(id[:])
	rkey := r.prefix + "inflight:" + key
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ok, err := acquireScript.Run(cctx, r.rdb, []string{rkey}, max, r.lease.Milliseconds(), member).Bool()
	if err != nil {
		return nil, false, fmt.Errorf("ratelimit: redis acquire: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// Best effort: if this fails the lease frees the slot.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
			defer cancel()
			_ = r.rdb.ZRem(ctx, rkey, member).Err()
		})
	}, true, nil
}

// defaultLease is the default RedisOptions.Lease.
const defaultLease = time.Minute
