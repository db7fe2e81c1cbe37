package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory is an in-process Limiter for a single replica. It keeps one
// timestamp per live bucket; a bucket whose theoretical arrival time has
// passed is full again and is swept. It is safe for concurrent use.
type Memory struct {
	now       func() time.Time
	maxKeys   int
	sweepEach time.Duration

	mu        sync.Mutex
	tats      map[string]int64 // key → theoretical arrival time, ns since the Unix epoch
	lastSweep int64

	inflight inflight
}

// MemoryOption configures NewMemory.
type MemoryOption func(*Memory)

// WithClock sets the clock (default time.Now); for tests.
func WithClock(now func() time.Time) MemoryOption {
	return func(m *Memory) { m.now = now }
}

// WithMaxKeys bounds the number of live buckets (default 1,048,576). When the
// table is full even after a sweep, Allow for a new key returns ErrFull.
func WithMaxKeys(n int) MemoryOption {
	return func(m *Memory) { m.maxKeys = n }
}

// WithSweepInterval sets how often Allow sweeps expired buckets (default 1
// minute; a full table is always swept before refusing).
func WithSweepInterval(d time.Duration) MemoryOption {
	return func(m *Memory) { m.sweepEach = d }
}

// NewMemory returns an empty in-memory limiter.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{
		now:       time.Now,
		maxKeys:   1 << 20,
		sweepEach: time.Minute,
		tats:      make(map[string]int64),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Allow implements Limiter.
func (m *Memory) Allow(ctx context.Context, limits []Limit) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("ratelimit: %w", err)
	}
	bs, err := validate(limits)
	if err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	if now-m.lastSweep >= int64(m.sweepEach) {
		m.sweepLocked(now)
	}
	tats := make([]int64, len(limits))
	missing := 0
	for i, l := range limits {
		t, ok := m.tats[l.Key]
		if !ok || t <= now {
			missing++
		}
		tats[i] = t
	}
	res, newTats := decide(limits, bs, tats, now)
	if !res.Allowed {
		return res, nil
	}
	if len(m.tats)+missing > m.maxKeys {
		m.sweepLocked(now)
		if len(m.tats)+missing > m.maxKeys {
			return Result{}, fmt.Errorf("%w: %d live buckets", ErrFull, len(m.tats))
		}
	}
	for i, l := range limits {
		m.tats[l.Key] = newTats[i]
	}
	return res, nil
}

// Len returns the number of buckets held, expired ones included until the
// next sweep.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tats)
}

// sweepLocked drops buckets that are full again (arrival time passed).
func (m *Memory) sweepLocked(now int64) {
	for k, t := range m.tats {
		if t <= now {
			delete(m.tats, k)
		}
	}
	m.lastSweep = now
}
