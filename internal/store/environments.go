package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrEnvironmentsFull reports that a new environment would exceed the
// number of live environments allowed.
var ErrEnvironmentsFull = errors.New("store: environments full")

// Environments persists preview environments so that every replica serves
// every one. A record (what the environments package encodes) and its
// policy bundle (large, read only to open it) are kept apart. Records have
// no TTL here: the environments manager expires them and exactly one
// replica's DeleteEnvironment reports the deletion.
type Environments interface {
	// PutEnvironment stores rec and bundle (nil: none) under name,
	// replacing what is there. A new name is refused with
	// ErrEnvironmentsFull when max (> 0) environments exist already;
	// created reports whether name was new. Every watcher is told.
	PutEnvironment(ctx context.Context, name string, rec, bundle []byte, max int) (created bool, err error)
	// GetEnvironment returns the record under name; false when absent.
	GetEnvironment(ctx context.Context, name string) ([]byte, bool, error)
	// EnvironmentBundle returns the policy bundle of name; false when
	// absent or it has none.
	EnvironmentBundle(ctx context.Context, name string) ([]byte, bool, error)
	// ListEnvironments returns every record by name.
	ListEnvironments(ctx context.Context) (map[string][]byte, error)
	// DeleteEnvironment removes name and its bundle; deleted reports
	// whether this call removed it (of concurrent deletions on any
	// replica, exactly one). Every watcher is told.
	DeleteEnvironment(ctx context.Context, name string) (deleted bool, err error)
}

// EnvironmentWatcher is told of changed environments.
type EnvironmentWatcher interface {
	// EnvironmentChanged reports that name was put or deleted, on any
	// replica: read it again.
	EnvironmentChanged(name string)
	// EnvironmentsReset reports that changes may have been missed (live
	// false: the watch broke) or that the watch is (re)established (live
	// true): read every environment again.
	EnvironmentsReset(live bool)
}

// EnvironmentWatch reports environment changes made through any replica.
type EnvironmentWatch interface {
	// WatchEnvironments reports changes to w until ctx ends, with the same
	// reset semantics as WatchSessions.
	WatchEnvironments(ctx context.Context, w EnvironmentWatcher) error
}

var (
	_ Environments     = (*Memory)(nil)
	_ Environments     = (*Redis)(nil)
	_ EnvironmentWatch = (*Memory)(nil)
	_ EnvironmentWatch = (*Redis)(nil)
)

// memEnvs is the environments table of a Memory.
type memEnvs struct {
	mu       sync.Mutex
	recs     map[string][]byte
	bundles  map[string][]byte
	watchers map[*EnvironmentWatcher]EnvironmentWatcher
}

func (m *Memory) envTable() *memEnvs {
	m.envOnce.Do(func() {
		m.envs = &memEnvs{recs: map[string][]byte{}, bundles: map[string][]byte{}, watchers: map[*EnvironmentWatcher]EnvironmentWatcher{}}
	})
	return m.envs
}

// notify tells every watcher of name, outside the table's lock.
func (e *memEnvs) notify(name string) {
	e.mu.Lock()
	ws := make([]EnvironmentWatcher, 0, len(e.watchers))
	for _, w := range e.watchers {
		ws = append(ws, w)
	}
	e.mu.Unlock()
	for _, w := range ws {
		w.EnvironmentChanged(name)
	}
}

// PutEnvironment implements Environments; watchers are told before it
// returns.
func (m *Memory) PutEnvironment(ctx context.Context, name string, rec, bundle []byte, max int) (bool, error) {
	if err := firstErr(ctx.Err(), checkID("environment name", name)); err != nil {
		return false, err
	}
	e := m.envTable()
	e.mu.Lock()
	_, exists := e.recs[name]
	if !exists && max > 0 && len(e.recs) >= max {
		e.mu.Unlock()
		return false, fmt.Errorf("%w: %d live", ErrEnvironmentsFull, len(e.recs))
	}
	e.recs[name] = bytes.Clone(rec)
	if bundle != nil {
		e.bundles[name] = bytes.Clone(bundle)
	} else {
		delete(e.bundles, name)
	}
	e.mu.Unlock()
	e.notify(name)
	return !exists, nil
}

// GetEnvironment implements Environments.
func (m *Memory) GetEnvironment(ctx context.Context, name string) ([]byte, bool, error) {
	if err := firstErr(ctx.Err(), checkID("environment name", name)); err != nil {
		return nil, false, err
	}
	e := m.envTable()
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.recs[name]
	return bytes.Clone(b), ok, nil
}

// EnvironmentBundle implements Environments.
func (m *Memory) EnvironmentBundle(ctx context.Context, name string) ([]byte, bool, error) {
	if err := firstErr(ctx.Err(), checkID("environment name", name)); err != nil {
		return nil, false, err
	}
	e := m.envTable()
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.bundles[name]
	return bytes.Clone(b), ok, nil
}

// ListEnvironments implements Environments.
func (m *Memory) ListEnvironments(ctx context.Context) (map[string][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := m.envTable()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := maps.Clone(e.recs)
	for k, v := range out {
		out[k] = bytes.Clone(v)
	}
	return out, nil
}

// DeleteEnvironment implements Environments; watchers are told before it
// returns.
func (m *Memory) DeleteEnvironment(ctx context.Context, name string) (bool, error) {
	if err := firstErr(ctx.Err(), checkID("environment name", name)); err != nil {
		return false, err
	}
	e := m.envTable()
	e.mu.Lock()
	_, ok := e.recs[name]
	delete(e.recs, name)
	delete(e.bundles, name)
	e.mu.Unlock()
	if ok {
		e.notify(name)
	}
	return ok, nil
}

// WatchEnvironments implements EnvironmentWatch: changes are reported
// directly, before PutEnvironment or DeleteEnvironment returns.
func (m *Memory) WatchEnvironments(ctx context.Context, w EnvironmentWatcher) error {
	e := m.envTable()
	key := &w
	e.mu.Lock()
	e.watchers[key] = w
	e.mu.Unlock()
	w.EnvironmentsReset(true)
	<-ctx.Done()
	e.mu.Lock()
	delete(e.watchers, key)
	e.mu.Unlock()
	w.EnvironmentsReset(false)
	return nil
}

// envChannel is the pub/sub channel of changed environment names.
const envChannel = "env-changed"

// envPutScript stores a record (and its bundle) unless a new name would
// exceed ARGV[4] (0: no limit), and publishes the name. KEYS[1] is the
// record hash, KEYS[2] the bundle hash (same slot); ARGV: name, record,
// bundle ("" for none), max, channel. Returns -1 when full, 1 when created,
// 0 when replaced.
var envPutScript = redis.NewScript(`
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1])
local max = tonumber(ARGV[4])
if exists == 0 and max > 0 and redis.call('HLEN', KEYS[1]) >= max then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
redis.call('PUBLISH', ARGV[5], ARGV[1])
if exists == 0 then return 1 end
return 0
`)

// envDeleteScript removes name (ARGV[1]) from both hashes and, when it was
// there, publishes it on ARGV[2]. Returns 1 when this call deleted it.
var envDeleteScript = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if n == 1 then redis.call('PUBLISH', ARGV[2], ARGV[1]) end
return n
`)

// envKeys are the record and bundle hashes, in one cluster slot.
func (r *Redis) envKeys() []string {
	return []string{r.prefix + "{envs}:rec", r.prefix + "{envs}:bundle"}
}

// PutEnvironment implements Environments in one script: the limit check,
// the write and the publication are atomic.
func (r *Redis) PutEnvironment(ctx context.Context, name string, rec, bundle []byte, max int) (bool, error) {
	if err := checkID("environment name", name); err != nil {
		return false, err
	}
	if len(rec) == 0 {
		return false, fmt.Errorf("%w: empty environment record", ErrInvalid)
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	n, err := envPutScript.Run(ctx, r.rdb, r.envKeys(), name, rec, bundle, max, r.prefix+envChannel).Int()
	if err != nil {
		return false, fmt.Errorf("store: redis put environment: %w", err)
	}
	if n < 0 {
		return false, fmt.Errorf("%w: %d live", ErrEnvironmentsFull, max)
	}
	return n == 1, nil
}

// GetEnvironment implements Environments.
func (r *Redis) GetEnvironment(ctx context.Context, name string) ([]byte, bool, error) {
	return r.hget(ctx, r.envKeys()[0], name)
}

// EnvironmentBundle implements Environments.
func (r *Redis) EnvironmentBundle(ctx context.Context, name string) ([]byte, bool, error) {
	return r.hget(ctx, r.envKeys()[1], name)
}

func (r *Redis) hget(ctx context.Context, key, name string) ([]byte, bool, error) {
	if err := checkID("environment name", name); err != nil {
		return nil, false, err
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	b, err := r.rdb.HGet(ctx, key, name).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("store: redis get environment: %w", err)
	}
	return b, true, nil
}

// ListEnvironments implements Environments.
func (r *Redis) ListEnvironments(ctx context.Context) (map[string][]byte, error) {
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	all, err := r.rdb.HGetAll(ctx, r.envKeys()[0]).Result()
	if err != nil {
		return nil, fmt.Errorf("store: redis list environments: %w", err)
	}
	out := make(map[string][]byte, len(all))
	for k, v := range all {
		out[k] = []byte(v)
	}
	return out, nil
}

// DeleteEnvironment implements Environments.
func (r *Redis) DeleteEnvironment(ctx context.Context, name string) (bool, error) {
	if err := checkID("environment name", name); err != nil {
		return false, err
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	n, err := envDeleteScript.Run(ctx, r.rdb, r.envKeys(), name, r.prefix+envChannel).Int()
	if err != nil {
		return false, fmt.Errorf("store: redis delete environment: %w", err)
	}
	return n == 1, nil
}

// WatchEnvironments implements EnvironmentWatch with Redis pub/sub on
// <prefix>env-changed, like WatchSessions: any break resets the watcher
// (not live), a new subscription resets it again (live), and the watcher
// then reads every environment again.
func (r *Redis) WatchEnvironments(ctx context.Context, w EnvironmentWatcher) error {
	r.watch(ctx, envChannel, w.EnvironmentsReset, w.EnvironmentChanged)
	return nil
}
