package tools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrNotLoaded is the status of an upstream that has never loaded.
var ErrNotLoaded = errors.New("not loaded yet")

// Catalog holds the tools of every upstream as an immutable snapshot that
// Refresh replaces atomically; readers never block and never see a half
// built set. It is safe for concurrent use.
type Catalog struct {
	ups    []Upstream
	client *http.Client
	logger *slog.Logger

	mu   sync.Mutex // serializes Refresh
	snap atomic.Pointer[snapshot]
}

type snapshot struct {
	tools   []*Tool
	byName  map[string]int // tool name → index in tools
	owner   []*Upstream    // per tool, its upstream
	perUp   map[string][]*Tool
	status  map[string]error
	version uint64
	sum     [sha256.Size]byte
}

// NewCatalog returns an empty catalogue of ups (defaults applied) whose
// documents are fetched with client (nil: http.DefaultClient). Call Refresh
// to load it. Until then every upstream's status is ErrNotLoaded.
func NewCatalog(ups []Upstream, client *http.Client, logger *slog.Logger) *Catalog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{client: client, logger: logger.With("component", "tools")}
	st := map[string]error{}
	for _, u := range ups {
		c.ups = append(c.ups, u.withDefaults())
		st[u.Name] = ErrNotLoaded
	}
	c.snap.Store(&snapshot{byName: map[string]int{}, perUp: map[string][]*Tool{}, status: st, sum: fingerprint(nil)})
	return c
}

// Refresh loads and converts every upstream's document and swaps in the new
// tool set. An upstream that fails keeps its last good tools and its error
// shows in Status; the others are refreshed regardless. The returned error
// joins every upstream's failure (nil when all are healthy). Version
// increases only when the set of tools changed.
func (c *Catalog) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snap.Load()

	type result struct {
		tools []*Tool
		warns []Warning
		err   error
	}
	results := make([]result, len(c.ups))
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for i := range c.ups {
		u := &c.ups[i]
		if u.Name == "" {
			results[i].err = errors.New("upstream has no name")
			continue
		}
		if seen[u.Name] {
			results[i].err = fmt.Errorf("upstream %q is configured twice", u.Name)
			continue
		}
		seen[u.Name] = true
		if _, err := parseBaseURL(u.BaseURL); err != nil {
			results[i].err = fmt.Errorf("upstream %q: %w", u.Name, err)
			continue
		}
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, u.Timeout)
			defer cancel()
			doc, err := LoadDocument(lctx, c.client, u.OpenAPI)
			if err != nil {
				results[i].err = fmt.Errorf("upstream %q: %w", u.Name, err)
				return
			}
			ts, warns, err := ConvertWithWarnings(u.Name, doc)
			if err != nil {
				results[i].err = fmt.Errorf("upstream %q: %w", u.Name, err)
				return
			}
			results[i].tools, results[i].warns = ts, warns
		})
	}
	wg.Wait()

	next := &snapshot{byName: map[string]int{}, perUp: map[string][]*Tool{}, status: map[string]error{}}
	var errs []error
	for i := range c.ups {
		u := &c.ups[i]
		r := results[i]
		ts := r.tools
		if r.err != nil {
			errs = append(errs, r.err)
			next.status[u.Name] = r.err
			ts = old.perUp[u.Name] // keep the last good tools
			c.logger.WarnContext(ctx, "upstream refresh failed", "upstream", u.Name, "error", r.err, "kept_tools", len(ts))
		} else {
			next.status[u.Name] = nil
			for _, w := range r.warns {
				c.logger.InfoContext(ctx, "openapi part skipped", "upstream", u.Name, "where", w.Where, "reason", w.Reason)
			}
		}
		var kept []*Tool
		for _, t := range ts {
			if _, dup := next.byName[t.Name]; dup {
				err := fmt.Errorf("upstream %q: tool %q clashes with a tool of another upstream and is skipped", u.Name, t.Name)
				errs = append(errs, err)
				next.status[u.Name] = errors.Join(next.status[u.Name], err)
				continue
			}
			next.byName[t.Name] = -1
			kept = append(kept, t)
		}
		if ts != nil || r.err == nil {
			next.perUp[u.Name] = kept
		}
		for _, t := range kept {
			next.tools = append(next.tools, t)
			next.owner = append(next.owner, u)
		}
	}
	idx := make([]int, len(next.tools))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch ta, tb := next.tools[a].Name, next.tools[b].Name; {
		case ta < tb:
			return -1
		case ta > tb:
			return 1
		}
		return 0
	})
	sortedTools := make([]*Tool, len(idx))
	sortedOwner := make([]*Upstream, len(idx))
	for i, j := range idx {
		sortedTools[i], sortedOwner[i] = next.tools[j], next.owner[j]
		next.byName[next.tools[j].Name] = i
	}
	next.tools, next.owner = sortedTools, sortedOwner
	next.sum = fingerprint(next.tools)
	next.version = old.version
	if next.sum != old.sum {
		next.version++
		c.logger.InfoContext(ctx, "tool catalogue changed", "tools", len(next.tools), "version", next.version)
	}
	c.snap.Store(next)
	return errors.Join(errs...)
}

// fingerprint hashes everything about a tool set that callers can observe.
func fingerprint(ts []*Tool) [sha256.Size]byte {
	h := sha256.New()
	for _, t := range ts {
		b, _ := json.Marshal(toolFingerprint{
			Name: t.Name, Upstream: t.Upstream, Operation: t.Operation, Method: t.Method, Path: t.Path,
			Title: t.Title, Description: t.Description, Tags: t.Tags, ReadOnly: t.ReadOnly,
			Destructive: t.Destructive, Idempotent: t.Idempotent, Deprecated: t.Deprecated,
			Params: t.params, Body: t.body,
		})
		h.Write(b)
		h.Write(bytes.TrimSpace(t.InputSchema))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

type toolFingerprint struct {
	Name, Upstream, Operation, Method, Path, Title, Description string
	Tags                                                        []string
	ReadOnly, Destructive, Idempotent, Deprecated               bool
	Params                                                      []param
	Body                                                        bodySpec
}

// Tools returns every tool, sorted by name. The slice is the caller's; the
// tools are shared and must not be modified.
func (c *Catalog) Tools() []*Tool {
	return slices.Clone(c.snap.Load().tools)
}

// Lookup finds a tool by name and (a copy of) the upstream it belongs to,
// with defaults applied.
func (c *Catalog) Lookup(name string) (*Tool, *Upstream, bool) {
	s := c.snap.Load()
	i, ok := s.byName[name]
	if !ok {
		return nil, nil, false
	}
	up := *s.owner[i]
	return s.tools[i], &up, true
}

// Status reports each upstream's last refresh: nil when healthy, otherwise
// why not (ErrNotLoaded before the first Refresh).
func (c *Catalog) Status() map[string]error {
	s := c.snap.Load()
	out := make(map[string]error, len(s.status))
	for k, v := range s.status {
		out[k] = v
	}
	return out
}

// Version increases every time the tool set changes; callers can cache
// anything derived from Tools on it. It is 0 until tools are first loaded.
func (c *Catalog) Version() uint64 { return c.snap.Load().version }
