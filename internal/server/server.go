// Package server composes the gateway: HTTP routes, the middleware chain,
// the MCP endpoint (mcp-go) and the per-call pipeline. It is the one package
// that knows every piece; the pieces do not know each other.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/internal/redact"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

// Catalog is the tool catalogue the server serves.
type Catalog interface {
	Tools() []*tools.Tool
	Lookup(name string) (*tools.Tool, *tools.Upstream, bool)
	Version() uint64
	Status() map[string]error
	Refresh(ctx context.Context) error

	// Upstream MCP servers (federation).
	CallMCP(ctx context.Context, t *tools.Tool, args map[string]any, c *tools.MCPCall) (*mcp.CallToolResult, error)
	Resources() []*tools.Resource
	ResourceTemplates() []*tools.ResourceTemplate
	Prompts() []*tools.Prompt
	LookupPrompt(name string) (*tools.Prompt, bool)
	LookupResource(uri string) (*tools.Resource, *tools.ResourceTemplate, bool)
	ReadResource(ctx context.Context, upstream, uri string, c *tools.MCPCall) (*mcp.ReadResourceResult, error)
	GetPrompt(ctx context.Context, p *tools.Prompt, args map[string]string, c *tools.MCPCall) (*mcp.GetPromptResult, error)
	Complete(ctx context.Context, upstream string, params mcp.CompleteParams, c *tools.MCPCall) (*mcp.CompleteResult, error)
	OnChange(f func())
}

// Decider is the policy engine.
type Decider interface {
	Decide(ctx context.Context, in *policy.Input) (policy.Decision, error)
	Allowed(ctx context.Context, in *policy.Input, tools []policy.Tool) (map[string]bool, error)
	Revision() string
	Stale() error
}

// AuditLog receives one record per call.
type AuditLog interface {
	Write(ctx context.Context, r *audit.Record) error
}

// Options are the parts the server composes. cmd/gateway builds them from
// the configuration; tests build them directly.
type Options struct {
	Config  *config.Config
	Logger  *slog.Logger
	Version string

	Authn    Authenticator
	Catalog  Catalog
	Policy   Decider
	Limiter  ratelimit.Limiter
	Sessions SessionStore
	Audit    AuditLog
	// Client calls the upstreams.
	Client *http.Client
	// Ready checks extra dependencies for /readyz (Redis…), by name.
	Ready map[string]func(context.Context) error
	// Extra routes (JWKS, token exchange, OAuth…) mounted as given. None
	// of them is authenticated by the gateway's chain, so each is limited
	// per client address (server.unauthenticated_rate).
	Routes map[string]http.Handler
	// Metrics serves /metrics: on listen, or only on server.metrics_listen
	// when that is set (see ServeMetrics). Nil: no /metrics.
	Metrics http.Handler
	// PublicLimiter limits the unauthenticated endpoints per client
	// address; default Limiter. Give it its own in-memory limiter so that
	// buckets of many addresses never crowd out the tool-call buckets.
	PublicLimiter ratelimit.Limiter
	// Identity signs upstream identity assertions; nil sends none.
	Identity Asserter
	// Exchangers, by upstream name, obtain a token from the company IdP for
	// upstreams that trust only the IdP; they get it instead of an assertion.
	Exchangers map[string]Exchanger
	// Telemetry receives traces and metrics; nil records nothing.
	Telemetry Telemetry
	// WrapMCP, if set, wraps the /mcp handler outermost (the HTTP server
	// span of OpenTelemetry).
	WrapMCP func(http.Handler) http.Handler
	// Revocations answers whether a delegation was revoked; required when
	// delegation tokens are accepted.
	Revocations Revocations
	// Pins keeps the approved definitions of MCP upstreams' tools; nil
	// turns pinning off.
	Pins Pinner
	// AuthorizationServer, when set, lists the gateway itself (public_url)
	// first among the authorization servers of the protected-resource
	// metadata: the gateway is the OAuth authorization server copilots use.
	AuthorizationServer bool
	// Security receives security events (refused tokens, session misuse);
	// optional.
	Security SecurityEvents
	// Approvals holds calls whose decision asks for a human's approval;
	// nil refuses them. Notifier, optional, tells approvers of new ones.
	Approvals Approvals
	Notifier  ApprovalNotifier
}

// SecurityEvents records security events in the audit trail.
type SecurityEvents interface {
	// Event writes one security event record.
	Event(ctx context.Context, r *audit.Record)
	// TokenRefused counts a refused token (aggregated per minute).
	TokenRefused(reason, issuer, ip string)
}

// Server is the gateway's HTTP server.
type Server struct {
	mrtr      mrtrSeal
	cfg       *config.Config
	log       *slog.Logger
	version   string
	authn     Authenticator
	limiter   ratelimit.Limiter
	sessions  SessionStore
	sessCache *sessionCache
	audit     AuditLog
	client    *http.Client
	ready     map[string]func(context.Context) error
	security  SecurityEvents // nil: none recorded
	tel       Telemetry
	revoked   Revocations
	selfAS    bool
	approvals Approvals
	notifier  ApprovalNotifier

	// elicitWatch: approval_notify.go (notifications/elicitation/complete).
	elicitWatch elicitationWatch

	publicLimiter ratelimit.Limiter
	clientAddr    clientAddr
	metrics       http.Handler
	adminToken    [32]byte // SHA-256 of server.admin_token; zero when unset
	// argMasker masks recorded arguments with the configured detectors,
	// compiled once (the set never changes); nil when it cannot compile.
	argMasker     *redact.Redactor
	argMaskerOnce sync.Once
	readyLog      readyLog

	// prod is the production environment; envs the previews
	// (environment.go). A request's environment is in its context.
	prod     *env
	envs     environments
	handler  http.Handler
	auditErr atomic.Pointer[error]
	refusals refusalBook
	// The tools/call fast path (fastcall.go); fastCallOff turns it off.
	fastCallOff  atomic.Bool
	fastServed   atomic.Uint64 // calls the fast path answered
	fastMetaOnce sync.Once
	fastMeta     []byte
	// rebindGuard is whether mcp-go's DNS-rebinding guard is on: unless
	// public_url names a host other than loopback (a proxy fronts the
	// gateway). newMCP sets the guard from it; corsMCP and the fast path
	// mirror it.
	rebindGuard bool
	// inflight is the 2026-07-28 requests in flight, by principal
	// (cancel.go).
	inflight inflightTable
}

// New builds the server. It does no network work.
func New(o Options) (*Server, error) {
	switch {
	case o.Config == nil:
		return nil, errors.New("server: no config")
	case o.Authn == nil, o.Catalog == nil, o.Policy == nil, o.Limiter == nil, o.Sessions == nil, o.Audit == nil:
		return nil, errors.New("server: authn, catalog, policy, limiter, sessions and audit are all required")
	}
	s := &Server{
		cfg: o.Config, log: o.Logger, version: o.Version,
		authn: o.Authn, limiter: o.Limiter,
		sessions: o.Sessions, sessCache: newSessionCache(), audit: o.Audit, client: o.Client, ready: o.Ready,
		tel: o.Telemetry, revoked: o.Revocations,
		selfAS: o.AuthorizationServer, publicLimiter: o.PublicLimiter, metrics: o.Metrics,
		security:  o.Security,
		approvals: o.Approvals, notifier: o.Notifier,
	}
	if s.publicLimiter == nil {
		s.publicLimiter = s.limiter
	}
	for _, p := range s.cfg.Server.TrustedProxies {
		pfx, err := config.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("server: trusted proxy %q: %w", p, err)
		}
		s.clientAddr.trusted = append(s.clientAddr.trusted, pfx)
	}
	if t := s.cfg.Server.AdminToken; t != "" {
		s.adminToken = sha256.Sum256([]byte(t))
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = slog.New(principalAttrs{s.log.Handler()})
	s.sessCache.log = s.log
	if s.client == nil {
		s.client = &http.Client{}
	}
	if s.version == "" {
		s.version = "dev"
	}
	if u, err := url.Parse(s.cfg.PublicURL); err != nil || config.IsLoopbackHost(u.Hostname()) {
		s.rebindGuard = true
	}
	s.prod = s.newProduction(o)

	mux := http.NewServeMux()
	// rpcErrors gives every /mcp error the JSON-RPC shape; corsMCP answers
	// preflights before authentication; routeEnv sets the environment
	// (production or a preview); edge adapts real clients' requests to
	// mcp-go (edge.go). One chain serves every environment.
	mcpChain := chain(http.HandlerFunc(s.serveEnv), s.recoverer, requestID, rpcErrors, s.corsMCP, s.accessLog, limitBody,
		s.routeEnv, s.authenticate, s.bindSession, s.edge)
	if o.WrapMCP != nil {
		mcpChain = o.WrapMCP(mcpChain)
	}
	mux.Handle("/mcp", mcpChain)
	mux.Handle("/env/", mcpChain)
	// Everything reachable without a token is limited per client address.
	public := func(h http.Handler) http.Handler {
		return chain(h, s.recoverer, requestID, s.limitUnauthenticated, limitBody)
	}
	// The metadata documents answer every origin (CORS) and their preflights.
	prm := public(corsPublic(s.prod.metadata))
	mux.Handle("/.well-known/oauth-protected-resource", prm)
	mux.Handle("/.well-known/oauth-protected-resource/mcp", prm)
	mux.Handle("/.well-known/oauth-protected-resource/env/", public(corsPublic(http.HandlerFunc(s.envMetadata))))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /admin/audit/records", chain(http.HandlerFunc(s.adminAuditRecords), s.recoverer, requestID, s.accessLog))
	for pattern, h := range o.Routes {
		mux.Handle(pattern, public(h))
	}
	if s.metrics != nil && s.cfg.Server.MetricsListen == "" {
		mux.Handle("GET /metrics", s.metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "not found: the MCP endpoint is /mcp")
	})
	s.handler = s.readDeadline(mux)
	return s, nil
}

// Handler is the gateway's root handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) protectedResourceMetadata(e *env) http.Handler {
	name := "Harness MCP gateway"
	if e.name != "" {
		name += " (preview " + e.name + ")"
	}
	return mcpserver.NewProtectedResourceMetadataHandler(mcpserver.ProtectedResourceMetadataConfig{
		Resource:               e.resource,
		AuthorizationServers:   s.authorizationServers(),
		BearerMethodsSupported: []string{"header"},
		ResourceName:           name,
	})
}

func (s *Server) authorizationServers() []string {
	out := make([]string, 0, len(s.cfg.Auth.Issuers)+1)
	if s.selfAS {
		out = append(out, s.cfg.PublicURL)
	}
	for _, is := range s.cfg.Auth.Issuers {
		out = append(out, is.Issuer)
	}
	return out
}

// readyz answers 200 only when every dependency a call needs is usable:
// identity providers, upstream documents, policy freshness, the audit trail
// and whatever Options.Ready names (Redis). Anyone gets only the status
// ({"ready": false}); what is wrong goes to the log, and to a caller
// presenting server.admin_token as its bearer token.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	set := func(name string, err error) {
		if err != nil {
			checks[name] = err.Error()
			ok = false
		} else {
			checks[name] = "ok"
		}
	}
	set("identity_providers", s.authn.Ready(ctx))
	for name, err := range s.prod.catalog.Status() {
		set("upstream:"+name, err)
	}
	set("policy", s.prod.policy.Stale())
	set("audit", s.auditHealthy())
	for name, f := range s.ready {
		set(name, f(ctx))
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
		s.readyLog.report(ctx, s.log, checks)
	} else {
		s.readyLog.reset()
	}
	w.Header().Set("Cache-Control", "no-store")
	if s.isAdmin(r) {
		writeJSON(w, status, map[string]any{"ready": ok, "checks": checks})
		return
	}
	writeJSON(w, status, map[string]any{"ready": ok})
}

// isAdmin reports whether r bears server.admin_token (compared in
// constant time, over SHA-256 digests so that not even the length leaks).
func (s *Server) isAdmin(r *http.Request) bool {
	if s.adminToken == ([32]byte{}) {
		return false
	}
	tok, ok := bearer(r)
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], s.adminToken[:]) == 1
}

// readyLog logs why the gateway is not ready: when the reasons change, and
// at most once a minute otherwise (a probe polls every few seconds).
type readyLog struct {
	mu   sync.Mutex
	last string
	at   time.Time
}

func (l *readyLog) report(ctx context.Context, log *slog.Logger, checks map[string]string) {
	b, _ := json.Marshal(checks)
	l.mu.Lock()
	defer l.mu.Unlock()
	if string(b) == l.last && time.Since(l.at) < time.Minute {
		return
	}
	l.last, l.at = string(b), time.Now()
	var failing []any
	for name, v := range checks {
		if v != "ok" {
			failing = append(failing, slog.String(name, v))
		}
	}
	log.WarnContext(ctx, "not ready", slog.Group("checks", failing...))
}

// reset forgets the last reasons once the gateway is ready again, so that
// the next failure is logged at once.
func (l *readyLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = ""
}

// ServeMetrics serves /metrics alone on ln (server.metrics_listen) until
// ctx ends.
func (s *Server) ServeMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return nil
}

func (s *Server) auditHealthy() error {
	if p := s.auditErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Server) setAuditErr(err error) {
	if err == nil {
		if s.auditErr.Load() != nil {
			s.auditErr.Store(nil)
		}
		return
	}
	s.auditErr.Store(&err)
}

// RefreshTools reloads every upstream's document and re-registers the
// tools; in-flight calls keep the tools they started with.
func (s *Server) RefreshTools(ctx context.Context) error {
	err := s.prod.catalog.Refresh(ctx)
	s.syncTools(s.prod)
	return err
}

// Serve serves on ln until ctx ends, then shuts down gracefully: it stops
// accepting, lets in-flight calls finish (up to grace), and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down: finishing in-flight calls", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("grace period over: closing remaining connections")
		_ = srv.Close()
	}
	<-errc
	s.FlushRefusals(context.WithoutCancel(ctx))
	return nil
}

// ToolsBroken reports whether some upstream's document is not loaded.
func (s *Server) ToolsBroken() bool {
	for _, err := range s.prod.catalog.Status() {
		if err != nil {
			return true
		}
	}
	return false
}
