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
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotLoaded is the status of an upstream that has never loaded.
var ErrNotLoaded = errors.New("not loaded yet")

// Catalog holds the tools of every upstream (and the resources and
// prompts of upstream MCP servers) as an immutable snapshot that Refresh
// replaces atomically; readers never block and never see a half built
// set. It is safe for concurrent use.
type Catalog struct {
	ups    []Upstream
	client *http.Client
	logger *slog.Logger
	conns  map[string]*mcpConn

	mu       sync.Mutex // serializes Refresh
	snap     atomic.Pointer[snapshot]
	onChange atomic.Pointer[func()]
	// onUpdated receives the upstreams' notifications/resources/updated.
	onUpdated atomic.Pointer[func(upstream, uri string)]
	closed    atomic.Bool
}

type snapshot struct {
	tools     []*Tool
	byName    map[string]int // tool name → index in tools
	owner     []*Upstream    // per tool, its upstream
	perUp     map[string]*listing
	status    map[string]error
	resources []*Resource // sorted by URI
	resByURI  map[string]*Resource
	templates []*ResourceTemplate
	prompts   []*Prompt // sorted by name
	byPrompt  map[string]*Prompt
	version   uint64
	sum       [sha256.Size]byte
}

// NewCatalog returns an empty catalogue of ups (defaults applied) whose
// documents are fetched with client (nil: http.DefaultClient). Call Refresh
// to load it. Until then every upstream's status is ErrNotLoaded. MCP
// upstreams are connected by the first Refresh and stay connected (and
// supervised) until Close.
func NewCatalog(ups []Upstream, client *http.Client, logger *slog.Logger) *Catalog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{client: client, logger: logger.With("component", "tools"), conns: map[string]*mcpConn{}}
	st := map[string]error{}
	for _, u := range ups {
		u = u.withDefaults()
		c.ups = append(c.ups, u)
		st[u.Name] = ErrNotLoaded
		if u.IsMCP() && u.Name != "" && c.conns[u.Name] == nil {
			c.conns[u.Name] = newMCPConn(u, client, c.logger, c.upstreamChanged, c.resourceUpdated)
		}
	}
	c.snap.Store(&snapshot{byName: map[string]int{}, perUp: map[string]*listing{}, status: st, resByURI: map[string]*Resource{}, byPrompt: map[string]*Prompt{}, sum: fingerprint(nil, nil)})
	return c
}

// OnChange sets f to be called (from any goroutine) whenever the tool set,
// resources or prompts changed.
func (c *Catalog) OnChange(f func()) { c.onChange.Store(&f) }

// upstreamChanged relists one MCP upstream: it connected, lost its
// connection, or said its lists changed.
func (c *Catalog) upstreamChanged(name string) {
	if c.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = c.refresh(ctx, name)
}

// Close stops every MCP upstream connection (and process).
func (c *Catalog) Close() {
	c.closed.Store(true)
	var wg sync.WaitGroup
	for _, m := range c.conns {
		wg.Go(m.close)
	}
	wg.Wait()
}

// Refresh loads and converts every upstream's document (or, for an MCP
// server, its lists) and swaps in the new set. An upstream that fails
// keeps its last good tools and its error shows in Status; the others are
// refreshed regardless. The returned error joins every upstream's failure
// (nil when all are healthy); a name two upstreams would both serve is
// reported with ErrNameClash. Version increases only when the set changed.
func (c *Catalog) Refresh(ctx context.Context) error { return c.refresh(ctx, "") }

// refresh refreshes every upstream, or only the one named.
func (c *Catalog) refresh(ctx context.Context, only string) error {
	for _, m := range c.conns {
		m.start()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snap.Load()

	type result struct {
		list  *listing
		err   error
		reuse bool
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
		if only != "" && u.Name != only {
			results[i] = result{list: old.perUp[u.Name], err: old.status[u.Name], reuse: true}
			continue
		}
		if m := c.conns[u.Name]; m != nil {
			wg.Go(func() {
				lctx, cancel := context.WithTimeout(ctx, u.Timeout)
				defer cancel()
				l, err := m.list(lctx)
				if err != nil {
					results[i].err = err
					return
				}
				results[i].list = l
			})
			continue
		}
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
			results[i].list = &listing{tools: ts, warns: warns}
		})
	}
	wg.Wait()

	next := &snapshot{byName: map[string]int{}, perUp: map[string]*listing{}, status: map[string]error{},
		resByURI: map[string]*Resource{}, byPrompt: map[string]*Prompt{}}
	var errs []error
	toolOwner := map[string]string{}
	tplOwner := map[string]string{}
	clash := func(u *Upstream, what, name, other string) {
		err := fmt.Errorf("upstream %q: %s %q is also served by upstream %q: %w (skipped; set a prefix)", u.Name, what, name, other, ErrNameClash)
		errs = append(errs, err)
		next.status[u.Name] = errors.Join(next.status[u.Name], err)
	}
	for i := range c.ups {
		u := &c.ups[i]
		r := results[i]
		l := r.list
		switch {
		case r.reuse:
			next.status[u.Name] = r.err
			if r.err != nil && !errors.Is(r.err, ErrNameClash) {
				errs = append(errs, r.err)
			}
		case r.err != nil:
			errs = append(errs, r.err)
			next.status[u.Name] = r.err
			l = old.perUp[u.Name] // keep the last good set
			n := 0
			if l != nil {
				n = len(l.tools)
			}
			c.logger.WarnContext(ctx, "upstream refresh failed", "upstream", u.Name, "error", r.err, "kept_tools", n)
		default:
			next.status[u.Name] = nil
			for _, w := range l.warns {
				c.logger.InfoContext(ctx, "upstream definition skipped", "upstream", u.Name, "where", w.Where, "reason", w.Reason)
			}
		}
		if l == nil {
			continue
		}
		kept := &listing{warns: l.warns}
		for _, t := range l.tools {
			if other, dup := toolOwner[t.Name]; dup {
				clash(u, "tool", t.Name, other)
				continue
			}
			toolOwner[t.Name] = u.Name
			next.byName[t.Name] = -1
			kept.tools = append(kept.tools, t)
			next.tools = append(next.tools, t)
			next.owner = append(next.owner, u)
		}
		for _, r := range l.resources {
			if other, dup := next.resByURI[r.URI]; dup {
				clash(u, "resource", r.URI, other.Upstream)
				continue
			}
			next.resByURI[r.URI] = r
			kept.resources = append(kept.resources, r)
			next.resources = append(next.resources, r)
		}
		for _, t := range l.templates {
			raw := t.URITemplate.Raw()
			if other, dup := tplOwner[raw]; dup {
				clash(u, "resource template", raw, other)
				continue
			}
			tplOwner[raw] = u.Name
			kept.templates = append(kept.templates, t)
			next.templates = append(next.templates, t)
		}
		for _, p := range l.prompts {
			if other, dup := next.byPrompt[p.Name]; dup {
				clash(u, "prompt", p.Name, other.Upstream)
				continue
			}
			next.byPrompt[p.Name] = p
			kept.prompts = append(kept.prompts, p)
			next.prompts = append(next.prompts, p)
		}
		next.perUp[u.Name] = kept
	}
	idx := make([]int, len(next.tools))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(next.tools[a].Name, next.tools[b].Name) })
	sortedTools := make([]*Tool, len(idx))
	sortedOwner := make([]*Upstream, len(idx))
	for i, j := range idx {
		sortedTools[i], sortedOwner[i] = next.tools[j], next.owner[j]
		next.byName[next.tools[j].Name] = i
	}
	next.tools, next.owner = sortedTools, sortedOwner
	slices.SortFunc(next.resources, func(a, b *Resource) int { return strings.Compare(a.URI, b.URI) })
	slices.SortFunc(next.prompts, func(a, b *Prompt) int { return strings.Compare(a.Name, b.Name) })
	next.sum = fingerprint(next.tools, next)
	next.version = old.version
	changed := next.sum != old.sum
	if changed {
		next.version++
		c.logger.InfoContext(ctx, "tool catalogue changed", "tools", len(next.tools), "resources", len(next.resources),
			"prompts", len(next.prompts), "version", next.version)
	}
	c.snap.Store(next)
	if f := c.onChange.Load(); changed && f != nil {
		(*f)()
	}
	return errors.Join(errs...)
}

// fingerprint hashes everything about a catalogue that callers can
// observe: the tools, and the resources, templates and prompts of s.
func fingerprint(ts []*Tool, s *snapshot) [sha256.Size]byte {
	h := sha256.New()
	for _, t := range ts {
		b, _ := json.Marshal(toolFingerprint{
			Name: t.Name, Upstream: t.Upstream, Operation: t.Operation, Method: t.Method, Path: t.Path,
			Title: t.Title, Description: t.Description, Tags: t.Tags, ReadOnly: t.ReadOnly,
			Destructive: t.Destructive, Idempotent: t.Idempotent, Deprecated: t.Deprecated,
			Params: t.params, Body: t.body, Kind: t.Kind, Digest: t.Digest,
		})
		h.Write(b)
		h.Write(bytes.TrimSpace(t.InputSchema))
		h.Write([]byte{0})
	}
	if s != nil {
		b, _ := json.Marshal([]any{s.resources, s.templates, s.prompts})
		h.Write(b)
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
	Kind, Digest                                                string
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

// Status reports each upstream's health: nil when healthy, otherwise why
// not (ErrNotLoaded before the first Refresh). An MCP upstream whose
// connection or process is down reports that at once.
func (c *Catalog) Status() map[string]error {
	s := c.snap.Load()
	out := make(map[string]error, len(s.status))
	for k, v := range s.status {
		out[k] = v
	}
	for name, m := range c.conns {
		if err := m.Status(); err != nil && !errors.Is(err, ErrNotLoaded) {
			out[name] = fmt.Errorf("upstream %q: %w", name, err)
		}
	}
	return out
}

// Version increases every time the tool set changes; callers can cache
// anything derived from Tools on it. It is 0 until tools are first loaded.
func (c *Catalog) Version() uint64 { return c.snap.Load().version }
