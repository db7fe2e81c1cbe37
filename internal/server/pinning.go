package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/pins"
	"github.com/agentharness/harness/tools"
)

// Pinning: the definition of every tool of an upstream MCP server is
// pinned in the shared store when first seen. Under pin: strict a changed
// definition is withheld (not listed, calls denied) until a human runs
// `gateway tools approve`; under warn it is served, logged and audited;
// off ignores changes. Every change is audited once (kind tool_changed).

// pinRecheck is how long a computed set of withheld tools is reused: an
// approval made on any replica takes effect within it.
const pinRecheck = 2 * time.Second

// Pinner keeps the pins; nil turns pinning off.
type Pinner interface {
	Check(ctx context.Context, upstream string, defs []pins.Def, now time.Time) (changed, fresh []pins.Change, err error)
}

type pinState struct {
	mu       sync.Mutex
	withheld map[string]string // tool name → why
	version  uint64
	at       time.Time
}

// withheldTools returns the tools withheld now, by name, with the reason
// a call is denied. A store failure withholds the tools of strict
// upstreams (fail closed).
func (s *Server) withheldTools(ctx context.Context) map[string]string {
	e := s.envOf(ctx)
	if e.pins == nil { // off, and in previews (their upstreams are the branch's own)
		return nil
	}
	st := &e.pinSt
	st.mu.Lock()
	defer st.mu.Unlock()
	v := e.catalog.Version()
	if st.withheld != nil && st.version == v && time.Since(st.at) < pinRecheck {
		return st.withheld
	}
	byUp := map[string][]*tools.Tool{}
	for _, t := range e.catalog.Tools() {
		if t.Kind == tools.KindMCP {
			byUp[t.Upstream] = append(byUp[t.Upstream], t)
		}
	}
	out := map[string]string{}
	now := time.Now()
	for _, u := range s.cfg.Upstreams {
		ts := byUp[u.Name]
		if len(ts) == 0 || u.Pin == "off" {
			continue
		}
		defs := make([]pins.Def, 0, len(ts))
		byOp := map[string]*tools.Tool{}
		for _, t := range ts {
			defs = append(defs, pins.Def{Tool: t.Operation, Name: t.Name, Digest: t.Digest, Description: t.Description})
			byOp[t.Operation] = t
		}
		changed, fresh, err := e.pins.Check(ctx, u.Name, defs, now)
		if err != nil {
			s.log.ErrorContext(ctx, "tool pins unavailable", "upstream", u.Name, "err", err, "pin", u.Pin)
			if u.Pin == "strict" {
				for _, t := range ts {
					out[t.Name] = "the approved definitions of " + u.Name + "'s tools cannot be read"
				}
			}
			continue
		}
		for _, c := range fresh {
			s.recordToolChanged(ctx, u.Pin, c)
		}
		if u.Pin != "strict" {
			continue
		}
		for _, c := range changed {
			out[c.Name] = fmt.Sprintf("the definition of %s changed since it was approved", c.Name)
		}
	}
	if w, ok := s.tel.(interface{ RecordWithheld(context.Context, int) }); ok && s.tel != nil {
		w.RecordWithheld(ctx, len(out))
	}
	st.withheld, st.version, st.at = out, v, now
	return out
}

// recordToolChanged logs and audits a changed definition once.
func (s *Server) recordToolChanged(ctx context.Context, mode string, c pins.Change) {
	what := "withheld until approved (gateway tools approve)"
	if mode == "warn" {
		what = "served (pin: warn)"
	}
	s.log.WarnContext(ctx, "an upstream changed a tool definition since it was approved", "upstream", c.Upstream,
		"tool", c.Name, "pinned", c.Pinned, "current", c.Current, "pin", mode)
	rec := audit.Record{
		Kind: "tool_changed", Tool: c.Name, Upstream: c.Upstream, Environment: s.cfg.Environment,
		Decision: map[string]string{"strict": decDeny, "warn": decAllow}[mode],
		Reason:   fmt.Sprintf("the definition of %s changed (sha256 %s, approved %s): %s", c.Name, c.Current, c.Pinned, what),
	}
	if err := s.audit.Write(ctx, &rec); err != nil {
		s.setAuditErr(err)
		s.log.ErrorContext(ctx, "audit record not written", "err", err, "kind", "tool_changed")
	}
}
