package audit

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Events of KindSecurity records (Record.Event).
const (
	// EventTokenRefused: bearer tokens refused at /mcp, aggregated per
	// reason, issuer and client IP per minute (Count, Time = window end).
	EventTokenRefused = "token_refused"
	// EventSessionOtherPrincipal: a legacy session id presented by a
	// principal other than the one that opened it (refused as unknown).
	EventSessionOtherPrincipal = "session_other_principal"
	// EventRevocation: a token or grant revoked (RFC 7009, "My agents",
	// refresh or code reuse); Reason says how.
	EventRevocation = "revocation"
	// EventExchangeRefused: a token exchange refused for widening a grant.
	EventExchangeRefused = "exchange_refused"
	// EventPolicyLoaded / EventPolicyRejected: a policy revision was loaded,
	// or a new one was rejected (the last good one keeps running).
	EventPolicyLoaded   = "policy_loaded"
	EventPolicyRejected = "policy_rejected"
	// EventConfigReload: a reload was requested (SIGHUP).
	EventConfigReload = "config_reload"
	// EventToolChanged: an upstream's tool definitions changed.
	EventToolChanged = "tool_changed"
	// EventStart / EventStop: the gateway started serving / stopped.
	EventStart = "gateway_start"
	EventStop  = "gateway_stop"
)

// DefaultMaxRefusalKeys bounds the refused-token aggregation table.
const DefaultMaxRefusalKeys = 1024

// overflowKey stands for every refusal once the table is full.
var overflowKey = refusalKey{reason: "other (aggregation table full)", issuer: "*", ip: "*"}

// RecordWriter is where security records go (a *Log).
type RecordWriter interface {
	Write(ctx context.Context, r *Record) error
}

type refusalKey struct{ reason, issuer, ip string }

// Security writes security events as KindSecurity records. Refused tokens
// are counted in memory and written as one record per reason, issuer and
// client IP per interval (a minute), so a flood of bad tokens is a handful
// of records, not one per request. The table is bounded: beyond MaxKeys
// distinct keys, refusals are counted under one overflow key. A security
// record that cannot be written is logged, never a reason to refuse a call
// (the calls' own records are).
type Security struct {
	w       RecordWriter
	log     *slog.Logger
	env     string
	maxKeys int

	mu     sync.Mutex
	counts map[refusalKey]int

	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started bool
}

// NewSecurity returns a Security writing to w; environment fills the
// records' Environment.
func NewSecurity(w RecordWriter, environment string, logger *slog.Logger) *Security {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Security{w: w, log: logger, env: environment, maxKeys: DefaultMaxRefusalKeys,
		counts: map[refusalKey]int{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// Event writes one security event now. r.Kind becomes KindSecurity.
func (s *Security) Event(ctx context.Context, r *Record) {
	if s == nil {
		return
	}
	r.Kind = KindSecurity
	if r.Environment == "" {
		r.Environment = s.env
	}
	if err := s.w.Write(context.WithoutCancel(ctx), r); err != nil {
		s.log.ErrorContext(ctx, "security event not audited", "event", r.Event, "error", err)
	}
}

// TokenRefused counts one refused token. reason must be a safe description
// (never the token); issuer is the token's unverified iss claim, if any.
func (s *Security) TokenRefused(reason, issuer, ip string) {
	if s == nil {
		return
	}
	k := refusalKey{reason: truncate(reason, 200), issuer: truncate(issuer, 200), ip: truncate(ip, 64)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.counts[k]; !ok && len(s.counts) >= s.maxKeys {
		k = overflowKey
	}
	s.counts[k]++
}

// Flush writes one EventTokenRefused record per key counted since the last
// flush and empties the table.
func (s *Security) Flush(ctx context.Context) {
	if s == nil {
		return
	}
	s.mu.Lock()
	counts := s.counts
	s.counts = make(map[refusalKey]int, len(counts))
	s.mu.Unlock()
	keys := make([]refusalKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.reason != b.reason {
			return a.reason < b.reason
		}
		if a.issuer != b.issuer {
			return a.issuer < b.issuer
		}
		return a.ip < b.ip
	})
	for _, k := range keys {
		s.Event(ctx, &Record{Event: EventTokenRefused, Decision: DecisionDeny, Reason: k.reason,
			Issuer: k.issuer, ClientIP: k.ip, Count: counts[k]})
	}
}

// Start flushes every interval (a minute in the gateway) until Close.
func (s *Security) Start(every time.Duration) {
	s.started = true
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.Flush(context.Background())
			}
		}
	}()
}

// Close stops the flushing (if started) and flushes what is left.
func (s *Security) Close(ctx context.Context) {
	s.once.Do(func() {
		close(s.stop)
		if s.started {
			<-s.done
		}
		s.Flush(ctx)
	})
}
