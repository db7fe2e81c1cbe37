package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxBoundedValue bounds one value of a Bounded namespace, so that its
// memory is at most about max × MaxBoundedValue.
const MaxBoundedValue = 32 << 10

// Bounder hands out bounded namespaces; *Memory and *Redis implement it.
type Bounder interface {
	// Bounded returns a KV in the namespace name that holds at most max
	// live entries of at most MaxBoundedValue bytes each. A Put of a new key
	// when it is full returns ErrFull; replacing a key needs no room. Its
	// entries are apart from every other table (sessions, revocations, keys,
	// the plain KV and other namespaces): filling it never crowds them out.
	// For state that anyone can create without signing in. Calls with the
	// same name share the namespace; the first call's max is kept (memory)
	// or the caller's max is applied at each Put (Redis).
	Bounded(name string, max int) KV
}

var (
	_ Bounder = (*Memory)(nil)
	_ Bounder = (*Redis)(nil)
)

var boundedName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

func checkBounded(name string, max int) {
	if !boundedName.MatchString(name) || max <= 0 {
		panic(fmt.Sprintf("store: bounded namespace %q with max %d", name, max))
	}
}

func checkValue(val []byte) error {
	if len(val) > MaxBoundedValue {
		return fmt.Errorf("%w: value of %d bytes (at most %d)", ErrInvalid, len(val), MaxBoundedValue)
	}
	return nil
}

// Bounded implements Bounder.
func (m *Memory) Bounded(name string, max int) KV {
	checkBounded(name, max)
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bounded[name]
	if !ok {
		b = &boundedTable{max: max, entries: map[string]entry{}}
		m.bounded[name] = b
	}
	return &memoryBounded{m: m, t: b}
}

// memoryBounded is one namespace of a Memory.
type memoryBounded struct {
	m *Memory
	t *boundedTable
}

func (b *memoryBounded) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := firstErr(ctx.Err(), checkID("key", key), checkTTL(ttl), checkValue(val)); err != nil {
		return err
	}
	now := b.m.lock()
	defer b.m.mu.Unlock()
	tab := b.t.entries
	if _, ok := tab[key]; !ok && len(tab) >= b.t.max {
		sweepTable(tab, now)
		if len(tab) >= b.t.max {
			return fmt.Errorf("%w: %d entries", ErrFull, len(tab))
		}
	}
	tab[key] = entry{val: bytes.Clone(val), exp: now.Add(ttl)}
	return nil
}

func (b *memoryBounded) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := firstErr(ctx.Err(), checkID("key", key)); err != nil {
		return nil, false, err
	}
	now := b.m.lock()
	defer b.m.mu.Unlock()
	e, ok := b.t.entries[key]
	if !ok || !e.exp.After(now) {
		return nil, false, nil
	}
	return bytes.Clone(e.val), true, nil
}

func (b *memoryBounded) Take(ctx context.Context, key string) ([]byte, bool, error) {
	if err := firstErr(ctx.Err(), checkID("key", key)); err != nil {
		return nil, false, err
	}
	now := b.m.lock()
	defer b.m.mu.Unlock()
	e, ok := b.t.entries[key]
	delete(b.t.entries, key)
	if !ok || !e.exp.After(now) {
		return nil, false, nil
	}
	return e.val, true, nil
}

func (b *memoryBounded) Delete(ctx context.Context, key string) error {
	if err := firstErr(ctx.Err(), checkID("key", key)); err != nil {
		return err
	}
	b.m.lock()
	defer b.m.mu.Unlock()
	delete(b.t.entries, key)
	return nil
}

// boundedPutScript stores ARGV[1] under KEYS[2] for ARGV[2] ms when the
// namespace's index KEYS[1] (a sorted set: key → expiry in ms of Redis's
// clock) has room for it under ARGV[3] live entries. It returns 1 when
// stored, 0 when full.
var boundedPutScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], KEYS[2]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, KEYS[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
`)

// boundedTakeScript returns and deletes KEYS[2] (take: ARGV[1] = 1) or only
// deletes it, and drops it from the index KEYS[1].
var boundedTakeScript = redis.NewScript(`
local v = false
if ARGV[1] == '1' then v = redis.call('GET', KEYS[2]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], KEYS[2])
return v
`)

// Bounded implements Bounder: the namespace's keys are
// <prefix>{b:<name>}:kv:<key>, counted in the sorted set
// <prefix>{b:<name>}:idx (one hash slot, so it works on Redis Cluster).
func (r *Redis) Bounded(name string, max int) KV {
	checkBounded(name, max)
	base := r.prefix + "{b:" + name + "}:"
	return &redisBounded{r: r, idx: base + "idx", kv: base + "kv:", max: max}
}

// redisBounded is one namespace of a Redis.
type redisBounded struct {
	r       *Redis
	idx, kv string
	max     int
}

func (b *redisBounded) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := firstErr(checkID("key", key), checkTTL(ttl), checkValue(val)); err != nil {
		return err
	}
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	ctx, cancel := b.r.ctx(ctx)
	defer cancel()
	n, err := boundedPutScript.Run(ctx, b.r.rdb, []string{b.idx, b.kv + key}, val, int64(ms), b.max).Int()
	if err != nil {
		return fmt.Errorf("store: redis bounded put: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %d entries", ErrFull, b.max)
	}
	return nil
}

func (b *redisBounded) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkID("key", key); err != nil {
		return nil, false, err
	}
	return b.r.get(ctx, b.kv+key, false)
}

func (b *redisBounded) Take(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkID("key", key); err != nil {
		return nil, false, err
	}
	return b.takeOrDelete(ctx, key, true)
}

func (b *redisBounded) Delete(ctx context.Context, key string) error {
	if err := checkID("key", key); err != nil {
		return err
	}
	_, _, err := b.takeOrDelete(ctx, key, false)
	return err
}

func (b *redisBounded) takeOrDelete(ctx context.Context, key string, take bool) ([]byte, bool, error) {
	ctx, cancel := b.r.ctx(ctx)
	defer cancel()
	arg, op := "0", "delete"
	if take {
		arg, op = "1", "take"
	}
	v, err := boundedTakeScript.Run(ctx, b.r.rdb, []string{b.idx, b.kv + key}, arg).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("store: redis bounded %s: %w", op, err)
	}
	return []byte(v), true, nil
}
