package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript checks every bucket in KEYS and charges all of them only when
// all allow. ARGV[1] is the current time in µs, or "" to use Redis TIME (the
// production path; the override exists for deterministic tests). ARGV[2i] and
// ARGV[2i+1] are bucket i's emission interval and burst tolerance in µs. It
// returns {allowed, retry_after_us, remaining, refusing_index (1-based)}.
// Each key holds the theoretical arrival time in µs and expires when the
// bucket is full again.
var gcraScript = redis.NewScript(`
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local newtats = {}
local refused = 0
local wait = 0
local remaining = -1
for i = 1, #KEYS do
  local iv = tonumber(ARGV[2*i])
  local tol = tonumber(ARGV[2*i+1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  local nt = tat + iv
  local allow_at = nt - tol
  if now < allow_at then
    if refused == 0 or allow_at - now > wait then
      wait = allow_at - now
      refused = i
    end
  else
    newtats[i] = nt
    local r = math.floor((now - allow_at) / iv)
    if remaining < 0 or r < remaining then remaining = r end
  end
end
if refused > 0 then
  return {0, wait, 0, refused}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', newtats[i]),
    'PX', string.format('%.0f', math.ceil((newtats[i] - now) / 1000)))
end
return {1, 0, remaining, 0}
`)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Prefix is prepended to every bucket key; default "harness:rl:". It must
	// not contain '{' or '}' (it would replace the keys' hash tags).
	Prefix string
	// Timeout bounds one Allow round trip; default 50ms.
	Timeout time.Duration
	// Lease bounds how long one Acquire slot counts without a release;
	// default 1 minute. Set it above the longest upstream timeout.
	Lease time.Duration
}

// Redis is a Limiter whose buckets live in Redis, shared by every replica.
// Each Allow is one EVALSHA (EVAL after a Redis restart) of a Lua script
// that reads Redis's own clock, so replicas need no clock agreement.
// Buckets live at Prefix+Limit.Key and expire when full again; in-flight
// slots at Prefix+"inflight:"+key. Redis 5 or later.
type Redis struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	lease   time.Duration
	nowUS   func() int64 // test hook: overrides Redis TIME when set
}

// NewRedis returns a Limiter on rdb. It does not contact Redis.
func NewRedis(rdb redis.UniversalClient, opts RedisOptions) *Redis {
	r := &Redis{rdb: rdb, prefix: opts.Prefix, timeout: opts.Timeout, lease: opts.Lease}
	if r.lease < time.Millisecond {
		r.lease = defaultLease
	}
	if r.prefix == "" {
		r.prefix = "harness:rl:"
	}
	if r.timeout <= 0 {
		r.timeout = 50 * time.Millisecond
	}
	return r
}

// Allow implements Limiter. Any Redis error or timeout is returned, never
// turned into an allow.
func (r *Redis) Allow(ctx context.Context, limits []Limit) (Result, error) {
	bs, err := validate(limits)
	if err != nil {
		return Result{}, err
	}
	keys := make([]string, len(limits))
	args := make([]any, 1, 1+2*len(limits))
	args[0] = ""
	if r.nowUS != nil {
		args[0] = strconv.FormatInt(r.nowUS(), 10)
	}
	for i, l := range limits {
		keys[i] = r.prefix + l.Key
		args = append(args, bs[i].interval/1000, bs[i].tolerance/1000)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	vals, err := gcraScript.Run(ctx, r.rdb, keys, args...).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(vals) != 4 {
		return Result{}, errors.New("ratelimit: redis: malformed script reply")
	}
	if vals[0] == 1 {
		return Result{Allowed: true, Remaining: int(vals[2])}, nil
	}
	idx := int(vals[3]) - 1
	if idx < 0 || idx >= len(limits) {
		return Result{}, errors.New("ratelimit: redis: malformed script reply")
	}
	return Result{RetryAfter: time.Duration(vals[1]) * time.Microsecond, Limit: limits[idx]}, nil
}

// Ping checks that Redis answers, for readiness probes.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis ping: %w", err)
	}
	return nil
}
