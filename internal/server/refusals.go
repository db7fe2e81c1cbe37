package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/policy"
)

// Refused calls (unknown tool, denied, rate limited, invalid arguments)
// never reach an upstream, so the rate limit of the tool does not bound
// them; each would still write an audit record. A spinning agent could then
// fill the disk, and with audit.on_error: deny stop every call. So each
// human has a refusal budget (ratelimit.refusals): refusals within it are
// audited one by one; beyond it they are still answered and counted in the
// metrics, and written as one aggregate record (kind "refusals") per human
// and budget period. The trail grows by at most requests+1 records per
// human and period, however fast the agent spins.

// maxRefusalHumans bounds the humans with unrecorded refusals held at once;
// beyond it refusals are aggregated under one entry without a human.
const maxRefusalHumans = 10000

// refusalBook holds the refusals over budget, per human, until they are
// written as one record.
type refusalBook struct {
	mu      sync.Mutex
	pending map[string]*unrecorded // by humanTag; "" is the overflow entry
	nextDue time.Time              // earliest due time of an entry; zero when empty
}

type unrecorded struct {
	issuer, subject, agent string
	n                      int
	first, last            time.Time
}

// refusalAudited charges a refusal of p's human to the refusal budget and
// reports whether it is to be audited one by one. When not, it is counted
// for the aggregate record. A failing limiter fails toward the trail.
func (s *Server) refusalAudited(ctx context.Context, p *authn.Principal) bool {
	rate := s.cfg.RateLimit.Refusals
	if rate.Requests <= 0 || rate.Per <= 0 {
		return true
	}
	tag := humanTag(p)
	res, err := s.limiter.Allow(ctx, []ratelimit.Limit{{Key: ratelimit.Key(tag, "refusals"), Requests: rate.Requests, Per: rate.Per.D()}})
	if err != nil || res.Allowed {
		return true
	}
	now := time.Now()
	b := &s.refusals
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = make(map[string]*unrecorded)
	}
	u := b.pending[tag]
	if u == nil {
		if len(b.pending) >= maxRefusalHumans {
			tag = ""
			u = b.pending[tag]
		}
		if u == nil {
			u = &unrecorded{first: now}
			if tag != "" {
				u.issuer, u.subject, u.agent = humanIssuer(p), p.Subject, p.Agent
			}
			b.pending[tag] = u
			if due := now.Add(rate.Per.D()); b.nextDue.IsZero() || due.Before(b.nextDue) {
				b.nextDue = due
			}
		}
	}
	u.n++
	u.last = now
	return false
}

// flushRefusals writes the aggregate records that are due before the
// record about to be written: p's human's own (its next record follows),
// and any older than one budget period. Cheap when nothing is due.
func (s *Server) flushRefusals(ctx context.Context, p *authn.Principal, now time.Time) {
	b := &s.refusals
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	var out []*unrecorded
	if p != nil {
		if u := b.pending[humanTag(p)]; u != nil {
			out = append(out, u)
			delete(b.pending, humanTag(p))
		}
	}
	per := s.cfg.RateLimit.Refusals.Per.D()
	if !now.Before(b.nextDue) {
		b.nextDue = time.Time{}
		for k, u := range b.pending {
			due := u.first.Add(per)
			if !now.Before(due) {
				out = append(out, u)
				delete(b.pending, k)
			} else if b.nextDue.IsZero() || due.Before(b.nextDue) {
				b.nextDue = due
			}
		}
	}
	b.mu.Unlock()
	for _, u := range out {
		s.writeRefusals(ctx, u)
	}
}

// FlushRefusals writes every aggregate record still held (at shutdown).
func (s *Server) FlushRefusals(ctx context.Context) {
	b := &s.refusals
	b.mu.Lock()
	out := make([]*unrecorded, 0, len(b.pending))
	for _, u := range b.pending {
		out = append(out, u)
	}
	b.pending, b.nextDue = nil, time.Time{}
	b.mu.Unlock()
	for _, u := range out {
		s.writeRefusals(ctx, u)
	}
}

func (s *Server) writeRefusals(ctx context.Context, u *unrecorded) {
	rate := s.cfg.RateLimit.Refusals
	who := "humans beyond the tracking limit"
	if u.subject != "" {
		who = u.subject
	}
	rec := &audit.Record{
		Kind: audit.KindRefusals, Action: policy.ActionCall, Decision: decDeny,
		Reason: fmt.Sprintf("%d refused calls of %s between %s and %s not recorded one by one: over the refusal budget of %d per %s",
			u.n, who, u.first.UTC().Format(time.RFC3339), u.last.UTC().Format(time.RFC3339), rate.Requests, rate.Per),
		Subject: u.subject, Issuer: u.issuer, Agent: u.agent, Environment: s.cfg.Environment,
	}
	if err := s.audit.Write(ctx, rec); err != nil {
		s.setAuditErr(err)
		s.log.ErrorContext(ctx, "audit record of suppressed refusals not written", "err", err, "subject", u.subject, "count", u.n)
	}
}
