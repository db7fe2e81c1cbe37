package server

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

// newMCP builds the mcp-go server and its streamable HTTP transport, which
// serves both protocol eras on one endpoint: the stateless 2026-07-28
// revision and the session-based 2025-03-26…2025-11-25 revisions, whose
// sessions this server binds to principals (session.go).
//
// fastcall.go answers most 2026-07-28 tools/call requests itself, as
// mcp-go answers them with exactly these options and hooks: an option,
// hook or tool middleware that acts on tools/call (filters, validators,
// result limits, tracing, logging…) must be mirrored there or make it
// step aside (TestFastCallDifferential compares the two).
func (s *Server) newMCP(e *env) *mcpserver.StreamableHTTPServer {
	hooks := &mcpserver.Hooks{}
	hooks.AddAfterListTools(s.filterList)
	hooks.AddAfterListResources(s.filterResources)
	hooks.AddAfterListResourceTemplates(s.filterTemplates)
	hooks.AddAfterListPrompts(s.filterPrompts)
	hooks.AddOnError(s.auditUnknownTool)
	subscribe := s.subscribeHooks(e, hooks)
	e.mcp = mcpserver.NewMCPServer("harness", s.version,
		mcpserver.WithToolCapabilities(true),
		mcpserver.WithResourceCapabilities(subscribe, true),
		mcpserver.WithPromptCapabilities(true),
		mcpserver.WithPromptCompletionProvider(s),
		mcpserver.WithResourceCompletionProvider(s),
		mcpserver.WithCompletions(),
		mcpserver.WithLogging(),
		mcpserver.WithRecovery(),
		mcpserver.WithHooks(hooks),
		mcpserver.WithInstructions("Harness exposes your organisation's internal APIs as tools. Every call is made on behalf of the signed-in human, decided by policy, rate limited and audited."),
	)
	opts := []mcpserver.StreamableHTTPOption{
		mcpserver.WithEndpointPath(e.path()),
		mcpserver.WithSessionIdManagerResolver(s),
		mcpserver.WithStreamableHTTPLogger(s.log.With("component", "mcp")),
		mcpserver.WithHTTPContextFunc(mcpContext(e.mcp)), // cancellation by principal (cancel.go)
	}
	// DNS-rebinding protection (a loopback listener refuses a foreign Host)
	// stays on unless the public URL says a proxy fronts the gateway.
	if !s.rebindGuard {
		opts = append(opts, mcpserver.WithDisableLocalhostProtection(true))
	}
	return mcpserver.NewStreamableHTTPServer(e.mcp, opts...)
}

// syncTools registers e's catalogue's current tools with its mcp-go
// server; it runs at start and whenever a refresh changes the catalogue.
func (s *Server) syncTools(e *env) {
	v := e.catalog.Version()
	e.toolsMu.RLock()
	current := e.toolsVersion == v && e.policyTools != nil
	e.toolsMu.RUnlock()
	if current { // the common case: no write lock on the call path
		return
	}
	e.toolsMu.Lock()
	defer e.toolsMu.Unlock()
	if e.toolsVersion == v && e.policyTools != nil {
		return
	}
	all := e.catalog.Tools()
	st := make([]mcpserver.ServerTool, 0, len(all))
	pt := make([]policy.Tool, 0, len(all))
	for _, t := range all {
		st = append(st, mcpserver.ServerTool{Tool: mcpTool(t), Handler: cancellable(s.callTool)})
		pt = append(pt, policyTool(t))
	}
	e.mcp.SetTools(st...)
	s.syncFederated(e)
	e.policyTools = pt
	e.toolsVersion = v
}

func mcpTool(t *tools.Tool) mcp.Tool {
	if t.Kind == tools.KindMCP && t.Definition != nil {
		mt := *t.Definition // the server's definition: annotations, title, output schema kept
		mt.Name = t.Name
		mt.InputSchema, mt.OutputSchema = mcp.ToolInputSchema{}, mcp.ToolOutputSchema{}
		mt.RawInputSchema, mt.RawOutputSchema = json.RawMessage(t.InputSchema), json.RawMessage(t.OutputSchema)
		return mt
	}
	mt := mcp.NewToolWithRawSchema(t.Name, t.Description, json.RawMessage(t.InputSchema))
	ro, de, id, open := t.ReadOnly, t.Destructive, t.Idempotent, false
	mt.Annotations = mcp.ToolAnnotation{ReadOnlyHint: &ro, DestructiveHint: &de, IdempotentHint: &id, OpenWorldHint: &open}
	return mt
}

func policyTool(t *tools.Tool) policy.Tool {
	return policy.Tool{Name: t.Name, Upstream: t.Upstream, Operation: t.Operation, Method: t.Method, Path: t.Path, Tags: t.Tags,
		Kind: t.Kind, Annotations: t.Annotations}
}

// input builds the policy input for p; the caller fills tool and arguments.
func (s *Server) input(ctx context.Context, p *authn.Principal, action string) *policy.Input {
	e := s.envOf(ctx)
	in := &policy.Input{
		Action: action,
		Subject: policy.Subject{
			Iss: humanIssuer(p), Sub: p.Subject, Email: p.Email, Name: p.Name,
			Roles: p.Roles, Claims: p.Claims,
		},
		Agent:       policy.Agent{ID: p.Agent, SessionID: sessionFrom(ctx)},
		Environment: e.label,
		Preview:     e.preview,
		Time:        time.Now().UTC().Format(time.RFC3339),
	}
	if d := p.Delegation; d != nil {
		in.Delegation = &policy.Delegation{ID: d.ID, Scopes: d.Scopes, ExpiresAt: d.ExpiresAt.UTC().Format(time.RFC3339)}
	}
	return in
}

func sessionFrom(ctx context.Context) string {
	id, _ := ctx.Value(sessionKey).(string)
	return id
}

// filterList hides every tool the policy does not list for this principal
// (and, for a delegation, every tool outside its scopes).
func (s *Server) filterList(ctx context.Context, _ any, _ *mcp.ListToolsRequest, res *mcp.ListToolsResult) {
	if res == nil {
		return
	}
	p := principalFrom(ctx)
	if p == nil {
		res.Tools = nil
		return
	}
	vis := s.visible(ctx, p)
	held := s.withheldTools(ctx)
	kept := res.Tools[:0]
	for _, t := range res.Tools {
		if _, h := held[t.Name]; vis[t.Name] && !h {
			kept = append(kept, t)
		}
	}
	res.Tools = kept
}

// visibleCache remembers, per credential, policy revision and catalogue
// version, which tools are listed. Entries live at most visibleTTL, so
// time-dependent policies stay fresh.
type visibleCache struct {
	mu sync.Mutex
	m  map[string]visibleEntry
}

type visibleEntry struct {
	names   map[string]bool
	expires time.Time
}

const (
	visibleTTL      = 30 * time.Second
	visibleCacheMax = 10000
)

func (c *visibleCache) get(key string, now time.Time) (map[string]bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || now.After(e.expires) {
		return nil, false
	}
	return e.names, true
}

func (c *visibleCache) put(key string, names map[string]bool, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= visibleCacheMax {
		c.m = make(map[string]visibleEntry) // bounded: start over rather than grow
	}
	c.m[key] = visibleEntry{names: names, expires: expires}
}

// reset drops every entry.
func (c *visibleCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// visible returns the tools p may see: those the policy allows for
// action "list", narrowed to the delegation's scopes. A policy failure shows
// nothing (fail closed) and is not cached.
func (s *Server) visible(ctx context.Context, p *authn.Principal) map[string]bool {
	e := s.envOf(ctx)
	s.syncTools(e)
	e.toolsMu.RLock()
	pt, ver := e.policyTools, e.toolsVersion
	e.toolsMu.RUnlock()
	now := time.Now()
	key := tokenKeyFrom(ctx) + "|" + e.policy.Revision() + "|" + itoa(ver) + "|" + sessionFrom(ctx)
	if names, ok := e.visCache.get(key, now); ok {
		return names
	}
	in := s.input(ctx, p, policy.ActionList)
	allowed, err := e.policy.Allowed(ctx, in, pt)
	if err != nil {
		s.log.ErrorContext(ctx, "policy failed to filter tools/list: listing nothing", "err", err, "subject", p.Subject)
		return map[string]bool{}
	}
	if d := p.Delegation; d != nil {
		for name := range allowed {
			if !delegation.ScopeAllows(d.Scopes, name) {
				delete(allowed, name)
			}
		}
	}
	exp := now.Add(visibleTTL)
	if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(exp) {
		exp = p.ExpiresAt
	}
	e.visCache.put(key, allowed, exp)
	return allowed
}
