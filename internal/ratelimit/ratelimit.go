// Package ratelimit enforces request rates with GCRA (the generic cell rate
// algorithm): smooth, burst-tolerant, one timestamp per bucket.
//
// A call to Limiter.Allow names one or more buckets (Limit values). Every
// bucket is checked and, only when all of them have room, all are charged,
// atomically: a call refused by one bucket charges none. Two implementations
// share these semantics: Memory (one process) and Redis (shared by replicas;
// one Lua script, one round trip, Redis's own clock).
//
// # Keys and Redis Cluster
//
// A Lua script on Redis Cluster may only touch keys of one hash slot, so the
// keys of one Allow call must share a hash tag: the text between the first
// "{" and the following "}". Build keys with Key, which puts its first
// argument (the principal, e.g. Tag(issuer, subject)) in the tag and escapes
// every part:
//
//	ratelimit.Key(ratelimit.Tag("https://idp", "alice"), "tool", "crm_get_customer") // {https://idp|alice}:tool:crm_get_customer
//	ratelimit.Key(ratelimit.Tag("https://idp", "alice"), "agent", "cursor", "tool", "crm_get_customer")
//
// Allow refuses (with ErrInvalidLimit) a call whose keys carry different hash
// tags, for both implementations, so a configuration that works in memory
// also works on a cluster.
//
// # Calls in flight
//
// InFlight (implemented by both) caps concurrent calls per key, e.g. per
// subject and agent: Acquire a slot before the upstream call, release it
// after. On Redis each slot is a lease (RedisOptions.Lease) so that a
// crashed replica cannot hold slots for ever.
//
// # One round trip, exact
//
// Redis.Allow is one EVALSHA per call, on go-redis's ordinary connection
// pool. Neither tokens leased per replica (a replica charging Redis for
// several calls at once) nor go-redis auto-pipelining is used: leasing makes
// the fleet-wide limit inexact (tokens held by a quiet replica are refused
// to the others; tokens spent after the bucket refilled exceed the burst),
// and auto-pipelining added latency at low concurrency for a few µs of CPU at
// high concurrency. docs/operations.md has the measurements.
//
// # Failing closed
//
// Allow returns an error, never a silent allow, when Redis fails or is slow
// (RedisOptions.Timeout, 50 ms by default), when a limit is invalid, or when
// the in-memory table is full. Callers apply their on_error setting; an error
// wrapping ErrInvalidLimit should always deny.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidLimit reports a malformed call: no limits, an empty or duplicate
// key, a non-positive rate, a negative burst, or keys with different hash
// tags. It is a programming or policy error, not an outage.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// ErrFull reports that the in-memory limiter holds its maximum number of
// live buckets and cannot track a new key.
var ErrFull = errors.New("ratelimit: too many buckets")

// Limit is one bucket: at most Requests per Per on average, with bursts of up
// to Burst requests.
type Limit struct {
	// Key names the bucket. All keys of one Allow call must share a hash tag;
	// see Key.
	Key string
	// Requests is the sustained number of requests per Per; must be > 0.
	Requests int
	// Per is the period of Requests; must be > 0.
	Per time.Duration
	// Burst is how many requests may arrive at once on a full bucket;
	// 0 means Requests.
	Burst int
}

// Result is the outcome of an Allow call.
type Result struct {
	// Allowed is true when every bucket had room and all were charged.
	Allowed bool
	// RetryAfter is, when refused, how long until the call would be allowed
	// (the longest wait among the refusing buckets); 0 when allowed.
	RetryAfter time.Duration
	// Remaining is how many more requests could be allowed right now: the
	// minimum over all buckets after charging; 0 when refused.
	Remaining int
	// Limit is, when refused, the limit that refused (the one with the
	// longest RetryAfter); the zero Limit when allowed.
	Limit Limit
}

// Limiter checks and charges rate-limit buckets.
type Limiter interface {
	// Allow checks every bucket of limits and charges all of them only when
	// all have room, atomically. An error means nothing is known: the caller
	// decides (fail closed by default).
	Allow(ctx context.Context, limits []Limit) (Result, error)
}

var (
	_ Limiter = (*Memory)(nil)
	_ Limiter = (*Redis)(nil)
)

// keyEscaper escapes the characters that structure a key.
var keyEscaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D", ":", "%3A")

// tagEscaper escapes the separator of Tag and its own escape character.
var tagEscaper = strings.NewReplacer("%", "%25", "|", "%7C")

// Tag joins the parts of an identity (issuer, subject, agent…) into one
// hash tag for Key, separated by "|", each part escaped first: distinct
// part lists give distinct tags ("victim|x", "copilot" is not "victim",
// "x|copilot").
func Tag(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(tagEscaper.Replace(p))
	}
	return b.String()
}

// Key builds a bucket key whose hash tag is tag: "{tag}:part1:part2…". Every
// component is escaped ('%', '{', '}', ':'), so distinct inputs give distinct
// keys and the hash tag is exactly the escaped tag (an empty tag becomes
// "%", which no escaped tag can equal). Use the principal (for
// example issuer|subject|agent) as tag so that all buckets of one call land
// in one Redis Cluster slot.
func Key(tag string, parts ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	if tag == "" {
		b.WriteByte('%')
	}
	b.WriteString(keyEscaper.Replace(tag))
	b.WriteByte('}')
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(keyEscaper.Replace(p))
	}
	return b.String()
}

// hashTag returns the part of key Redis Cluster hashes: the text between the
// first '{' and the next '}' when non-empty, otherwise the whole key.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// bucket is a validated limit in integer nanoseconds.
type bucket struct {
	interval  int64 // emission interval: Per / Requests, rounded up to 1µs
	tolerance int64 // interval * burst
}

// maxSpan bounds Per and interval*burst so that times fit Redis Lua doubles
// (exact to 2^53 µs) and int64 nanoseconds comfortably.
const maxSpan = 100 * 365 * 24 * time.Hour

// validate checks limits and returns their buckets.
func validate(limits []Limit) ([]bucket, error) {
	if len(limits) == 0 {
		return nil, fmt.Errorf("%w: no limits", ErrInvalidLimit)
	}
	out := make([]bucket, len(limits))
	tag := hashTag(limits[0].Key)
	for i, l := range limits {
		switch {
		case l.Key == "":
			return nil, fmt.Errorf("%w: empty key", ErrInvalidLimit)
		case l.Requests <= 0:
			return nil, fmt.Errorf("%w: %q: requests must be positive", ErrInvalidLimit, l.Key)
		case l.Per <= 0 || l.Per > maxSpan:
			return nil, fmt.Errorf("%w: %q: period out of range", ErrInvalidLimit, l.Key)
		case l.Burst < 0:
			return nil, fmt.Errorf("%w: %q: negative burst", ErrInvalidLimit, l.Key)
		case i > 0 && hashTag(l.Key) != tag:
			return nil, fmt.Errorf("%w: keys %q and %q have different hash tags", ErrInvalidLimit, limits[0].Key, l.Key)
		}
		for _, p := range limits[:i] {
			if p.Key == l.Key {
				return nil, fmt.Errorf("%w: duplicate key %q", ErrInvalidLimit, l.Key)
			}
		}
		burst := l.Burst
		if burst == 0 {
			burst = l.Requests
		}
		// Round the interval up to whole microseconds (Redis works in µs),
		// which errs on the strict side.
		iv := (int64(l.Per)/int64(l.Requests) + 999) / 1000 * 1000
		if iv <= 0 {
			iv = 1000
		}
		if int64(burst) > int64(maxSpan)/iv {
			return nil, fmt.Errorf("%w: %q: burst too large", ErrInvalidLimit, l.Key)
		}
		out[i] = bucket{interval: iv, tolerance: iv * int64(burst)}
	}
	return out, nil
}

// decide runs GCRA over all buckets at now (ns). tats holds each bucket's
// stored theoretical arrival time (0 when absent). It returns the result and,
// when allowed, the new arrival times to store.
func decide(limits []Limit, bs []bucket, tats []int64, now int64) (Result, []int64) {
	newTats := make([]int64, len(bs))
	var res Result
	refused := -1
	remaining := -1
	for i, b := range bs {
		tat := max(tats[i], now)
		nt := tat + b.interval
		allowAt := nt - b.tolerance
		if now < allowAt {
			if wait := time.Duration(allowAt - now); refused < 0 || wait > res.RetryAfter {
				res.RetryAfter = wait
				refused = i
			}
			continue
		}
		newTats[i] = nt
		r := int((now - allowAt) / b.interval)
		if remaining < 0 || r < remaining {
			remaining = r
		}
	}
	if refused >= 0 {
		res.Limit = limits[refused]
		return res, nil
	}
	res.Allowed = true
	res.Remaining = remaining
	return res, newTats
}
