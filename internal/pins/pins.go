// Package pins keeps the approved definition of every tool of an upstream
// MCP server in the shared store, so that every replica agrees on it: the
// first definition seen is pinned by its SHA-256; a changed definition is
// pending until a human approves it (gateway tools approve). A rug pull —
// a server that silently changes a tool after it was trusted — is caught.
package pins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// KV is the part of the shared store pins use.
type KV interface {
	Put(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, bool, error)
}

// ttl keeps pins for as long as a store keeps anything.
const ttl = 10 * 365 * 24 * time.Hour

// Entry is the pin of one tool of an upstream, by the server's own name.
type Entry struct {
	// Digest is the SHA-256 of the approved definition.
	Digest string `json:"digest"`
	// PinnedAt is when it was pinned or approved.
	PinnedAt time.Time `json:"pinned_at"`
	// Pending is a changed definition awaiting approval, if any.
	Pending *Pending `json:"pending,omitempty"`
}

// Pending is a changed definition seen by some replica.
type Pending struct {
	Digest string    `json:"digest"`
	SeenAt time.Time `json:"seen_at"`
	// Description is the changed description, for the human who approves.
	Description string `json:"description,omitempty"`
}

// Def is a tool's current definition as an upstream offers it.
type Def struct {
	// Tool is the server's own name; Name the gateway's.
	Tool, Name  string
	Digest      string
	Description string
}

// Change is a definition that differs from its pin.
type Change struct {
	Upstream, Tool, Name string
	Pinned, Current      string
}

// Pins reads and writes pins in a KV store.
type Pins struct{ kv KV }

// New returns pins kept in kv.
func New(kv KV) *Pins { return &Pins{kv: kv} }

func key(upstream string) string { return "pins:" + upstream }

// Load returns the pins of upstream, by the server's tool name.
func (p *Pins) Load(ctx context.Context, upstream string) (map[string]*Entry, error) {
	b, ok, err := p.kv.Get(ctx, key(upstream))
	if err != nil {
		return nil, fmt.Errorf("pins of %s: %w", upstream, err)
	}
	out := map[string]*Entry{}
	if !ok {
		return out, nil
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("pins of %s: malformed: %w", upstream, err)
	}
	return out, nil
}

func (p *Pins) save(ctx context.Context, upstream string, m map[string]*Entry) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := p.kv.Put(ctx, key(upstream), b, ttl); err != nil {
		return fmt.Errorf("pins of %s: %w", upstream, err)
	}
	return nil
}

// Check compares an upstream's current definitions with their pins: a
// tool seen for the first time is pinned; one whose digest differs is
// returned as a change (and recorded as pending, once per new digest). A
// pending change whose definition went back to the pin is cleared.
// changed lists what differs now; fresh the changes not seen before.
func (p *Pins) Check(ctx context.Context, upstream string, defs []Def, now time.Time) (changed, fresh []Change, err error) {
	m, err := p.Load(ctx, upstream)
	if err != nil {
		return nil, nil, err
	}
	dirty := false
	for _, d := range defs {
		e := m[d.Tool]
		switch {
		case e == nil:
			m[d.Tool] = &Entry{Digest: d.Digest, PinnedAt: now}
			dirty = true
		case e.Digest == d.Digest:
			if e.Pending != nil {
				e.Pending = nil
				dirty = true
			}
		default:
			c := Change{Upstream: upstream, Tool: d.Tool, Name: d.Name, Pinned: e.Digest, Current: d.Digest}
			changed = append(changed, c)
			if e.Pending == nil || e.Pending.Digest != d.Digest {
				e.Pending = &Pending{Digest: d.Digest, SeenAt: now, Description: d.Description}
				fresh = append(fresh, c)
				dirty = true
			}
		}
	}
	if dirty {
		if err := p.save(ctx, upstream, m); err != nil {
			return nil, nil, err
		}
	}
	return changed, fresh, nil
}

// ErrNoPending reports an approval of a tool with no pending change.
var ErrNoPending = errors.New("no pending change")

// Approve pins the pending definition of the named tools of upstream (by
// the server's name; all when tools is empty) and returns those approved.
func (p *Pins) Approve(ctx context.Context, upstream string, tools []string, now time.Time) ([]string, error) {
	m, err := p.Load(ctx, upstream)
	if err != nil {
		return nil, err
	}
	var done []string
	for name, e := range m {
		if e.Pending == nil || (len(tools) > 0 && !slices.Contains(tools, name)) {
			continue
		}
		e.Digest, e.PinnedAt, e.Pending = e.Pending.Digest, now, nil
		done = append(done, name)
	}
	if len(done) == 0 {
		return nil, nil
	}
	slices.Sort(done)
	return done, p.save(ctx, upstream, m)
}
