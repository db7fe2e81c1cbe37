// Package app wires a gateway from its configuration: every part built,
// connected and handed to internal/server. The gateway binary and the
// benchmarks use it, so what is measured is what runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/approvals"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/environments"
	"github.com/agentharness/harness/internal/idpexchange"
	"github.com/agentharness/harness/internal/oauth"
	"github.com/agentharness/harness/internal/pins"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/internal/server"
	"github.com/agentharness/harness/internal/store"
	"github.com/agentharness/harness/internal/telemetry"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
	"github.com/redis/go-redis/v9"
)

// App is a wired gateway and what must be closed when it stops.
type App struct {
	// Server is the HTTP server of the gateway.
	Server *server.Server
	// Policy is the policy engine (Watch and Reload it).
	Policy *policy.Engine
	// Keys are the signing keys (Maintain them).
	Keys *delegation.Keys
	// Security writes security events to the audit trail.
	Security *audit.Security
	closers  []func(context.Context) error
}

// upstreamExchangers are, by upstream, the token exchanges of the upstreams
// with token_exchange: they get a token the company IdP issues for the human
// (RFC 8693) instead of the gateway's assertion. Secrets are never logged.
func upstreamExchangers(cfg *config.Config, client *http.Client, log *slog.Logger) (map[string]server.Exchanger, error) {
	exchangers := map[string]server.Exchanger{}
	for _, u := range cfg.Upstreams {
		te := u.TokenExchange
		if !te.Enabled() {
			continue
		}
		ex, err := idpexchange.New(idpexchange.Config{
			TokenURL: te.TokenURL, ClientID: te.ClientID, ClientSecret: te.ClientSecret,
			Audience: te.Audience, Scope: te.Scope, Timeout: min(u.Timeout.D(), idpexchange.DefaultTimeout),
			Client: client,
		})
		if err != nil {
			return nil, fmt.Errorf("upstreams %s token_exchange: %w", u.Name, err)
		}
		exchangers[u.Name] = ex
		log.Info("upstream trusts only the IdP: it gets IdP tokens by token exchange; delegation tokens are refused for it",
			"upstream", u.Name, "token_url", te.TokenURL, "client_id", te.ClientID, "audience", te.Audience)
	}
	return exchangers, nil
}

// CatalogUpstreams are the configured upstreams as the catalogue takes
// them (prefix defaults applied).
func CatalogUpstreams(cfg *config.Config) []tools.Upstream {
	ups := make([]tools.Upstream, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		ups = append(ups, tools.Upstream{
			Name: u.Name, BaseURL: u.BaseURL, OpenAPI: u.OpenAPI, Timeout: u.Timeout.D(),
			MCP: u.MCP, Command: u.Command, Env: u.Env, Headers: u.Headers, Prefix: u.ToolPrefix(),
		})
	}
	return ups
}

// Close releases what Build opened (telemetry flush, audit file, Redis).
func (a *App) Close(ctx context.Context) {
	for i := len(a.closers) - 1; i >= 0; i-- {
		_ = a.closers[i](ctx)
	}
}

// Build wires every part from cfg. It fails on what cannot work (a broken
// policy, an unwritable audit file); an unreachable upstream or IdP is
// reported and retried, never fatal. version names the build in telemetry.
func Build(ctx context.Context, cfg *config.Config, log *slog.Logger, version string) (*App, error) {
	return BuildWith(ctx, cfg, log, version, Options{})
}

// Options are the operator's start-time choices that are not configuration.
type Options struct {
	// AcceptNewAuditOrigin lets an audit log with records start a checkpoint
	// history when no witness holds one for its origin
	// (gateway serve --accept-new-audit-origin).
	AcceptNewAuditOrigin bool
}

// BuildWith is Build with start-time options.
func BuildWith(ctx context.Context, cfg *config.Config, log *slog.Logger, version string, opts Options) (_ *App, err error) {
	app := &App{}
	defer func() {
		if err != nil {
			app.Close(context.Background())
		}
	}()
	tel, err := telemetry.Setup(ctx, telemetry.Config{
		OTLPEndpoint: cfg.Telemetry.OTLPEndpoint, ServiceName: "harness", ServiceVersion: version, Environment: cfg.Environment,
	}, log.With("component", "telemetry"))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	app.closers = append(app.closers, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return tel.Shutdown(ctx)
	})
	if tel.Exporting() {
		log.Info("telemetry: exporting traces over OTLP/HTTP", "endpoint", cfg.Telemetry.OTLPEndpoint)
	} else {
		log.Info("telemetry: metrics at /metrics; traces not exported (set telemetry.otlp_endpoint)")
	}
	// Upstream calls carry traceparent; connections are pooled per upstream:
	// up to 64 idle per upstream, with no fleet-wide cap (the default 100
	// would close the idle connections of one busy upstream to keep another's).
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	base.MaxIdleConns = 0
	upstreamClient := tel.HTTPClient(base)

	// Shared state: Redis when configured, memory otherwise.
	var st store.Store
	var limiter, publicLimiter ratelimit.Limiter
	var rdb redis.UniversalClient
	ready := map[string]func(context.Context) error{}
	if cfg.RateLimit.RedisURL != "" {
		rt := cfg.RateLimit.RedisTimeout.D()
		rdb, err = ratelimit.ParseRedisURL(cfg.RateLimit.RedisURL, rt)
		if err != nil {
			return nil, fmt.Errorf("ratelimit.redis_url: %w", err)
		}
		app.closers = append(app.closers, func(context.Context) error { return rdb.Close() })
		rs := store.NewRedis(rdb, "harness:", rt)
		st = rs
		limiter = ratelimit.NewRedis(rdb, ratelimit.RedisOptions{Prefix: "harness:rl:", Timeout: rt})
		publicLimiter = limiter // Redis buckets expire on their own
		ready["redis"] = rs.Ping
		log.Info("shared state and rate limits on Redis", "redis", RedactURL(cfg.RateLimit.RedisURL), "on_error", cfg.RateLimit.OnError)
	} else {
		st = store.NewMemory()
		limiter = ratelimit.NewMemory()
		// Per-address buckets of the unauthenticated endpoints get a table
		// of their own: many addresses never crowd out tool-call buckets.
		publicLimiter = ratelimit.NewMemory()
		log.Info("shared state and rate limits in memory (one replica only; set ratelimit.redis_url for several)")
	}

	// The gateway's signing keys: new at every start, published for peers.
	// They sign delegation tokens from token exchange (delegation.max_ttl)
	// and OAuth access tokens (oauth.access_ttl): the longer of the two.
	maxTokenTTL := cfg.Delegation.MaxTTL.D()
	if cfg.OAuth.Enabled() {
		maxTokenTTL = max(maxTokenTTL, cfg.OAuth.AccessTTL.D())
	}
	keys, err := delegation.NewKeys(ctx, st, delegation.KeyOptions{MaxTokenTTL: maxTokenTTL, Logger: log.With("component", "keys")})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	app.Keys = keys

	issuers := make([]authn.IssuerConfig, 0, len(cfg.Auth.Issuers)+1)
	for _, is := range cfg.Auth.Issuers {
		issuers = append(issuers, authn.IssuerConfig{Issuer: is.Issuer, Audiences: is.Audiences, RolesClaim: is.RolesClaim, AgentClaim: is.AgentClaim})
	}
	issuers = append(issuers, authn.IssuerConfig{Issuer: cfg.PublicURL, Audiences: []string{cfg.ResourceURL()}, KeySet: keys.AccessTokenKeySet(), Delegation: true})
	// Tokens for a live preview environment (aud public_url/env/{name}/mcp)
	// are accepted too; the server checks they are used at that preview.
	live := &liveEnvironments{}
	an, err := authn.New(ctx, authn.Config{Issuers: issuers, Logger: log, LiveAudience: live.Live}) // authn, policy and tools name their component themselves
	if err != nil {
		return nil, fmt.Errorf("authentication: %w", err)
	}

	var sec *audit.Security // set once the audit log is open, before any reload can run
	onReload := func(ctx context.Context, revision string, err error) {
		r := &audit.Record{Event: audit.EventPolicyLoaded, PolicyRevision: revision, Reason: "policy reloaded"}
		if err != nil {
			r.Event, r.Decision, r.Reason = audit.EventPolicyRejected, "deny", "policy rejected, the last good one keeps running: "+err.Error()
		}
		sec.Event(ctx, r)
	}
	pol, err := policy.New(ctx, policy.Options{Dir: cfg.Policy.Dir, Query: cfg.Policy.Query, Logger: log, OnReload: onReload})
	if err != nil {
		return nil, err
	}
	app.Policy = pol
	if cfg.Policy.Dir == "" {
		log.Info("policy: the embedded default policy", "revision", pol.Revision())
	} else {
		log.Info("policy loaded, hot reload on", "dir", cfg.Policy.Dir, "query", cfg.Policy.Query, "revision", pol.Revision())
	}

	catalog := tools.NewCatalog(CatalogUpstreams(cfg), upstreamClient, log)
	app.closers = append(app.closers, func(context.Context) error { catalog.Close(); return nil })
	if err := catalog.Refresh(ctx); err != nil {
		if errors.Is(err, tools.ErrNameClash) {
			return nil, fmt.Errorf("upstreams: %w", err)
		}
		log.Error("some upstreams could not be loaded; they are retried and /readyz reports them", "err", err)
	}
	for _, u := range cfg.Upstreams {
		n := 0
		for _, t := range catalog.Tools() {
			if t.Upstream == u.Name {
				n++
			}
		}
		where := u.BaseURL
		switch u.Kind() {
		case "mcp":
			where = RedactURL(u.MCP)
		case "command":
			where = u.Command[0]
		}
		log.Info("upstream", "name", u.Name, "kind", u.Kind(), "at", where, "tools", n)
	}

	anchor, err := auditAnchor(ctx, cfg, rdb, log, opts)
	if err != nil {
		return nil, err
	}
	auditLog, err := audit.Open(ctx, audit.Config{
		Path: cfg.Audit.Path, Fsync: cfg.Audit.Fsync,
		MaxSize: int64(cfg.Audit.MaxSizeMB) << 20, MaxFiles: cfg.Audit.MaxFiles,
		Merkle: anchor != nil,
	}, log.With("component", "audit"))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	app.closers = append(app.closers, func(context.Context) error { return auditLog.Close() })
	log.Info("audit trail", "path", cfg.Audit.Path, "fsync", cfg.Audit.Fsync, "on_error", cfg.Audit.OnError)
	if anchor != nil {
		pub, err := anchor.start(auditLog, log)
		if err != nil {
			return nil, fmt.Errorf("audit checkpoints: %w", err)
		}
		app.closers = append(app.closers, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return pub.Close(ctx)
		})
		ready["audit_checkpoint"] = pub.Ready
	}

	var records server.AuditLog = auditLog
	if ep := cfg.Audit.Export.OTLPEndpoint; ep != "" {
		exp, err := audit.NewExporter(ctx, audit.ExportConfig{Endpoint: ep, ServiceName: "harness", Environment: cfg.Environment, Logger: log.With("component", "audit")})
		if err != nil {
			return nil, err
		}
		app.closers = append(app.closers, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return exp.Close(ctx)
		})
		ready["audit_export"] = exp.Ready
		records = &audit.ExportingLog{Log: auditLog, Exporter: exp}
		log.Info("audit records exported as OpenTelemetry logs", "endpoint", RedactURL(ep))
	}
	sec = audit.NewSecurity(records, cfg.Environment, log.With("component", "audit"))
	sec.Start(time.Minute)
	app.Security = sec
	app.closers = append(app.closers, func(ctx context.Context) error {
		sec.Event(ctx, &audit.Record{Event: audit.EventStop, Reason: "gateway stopping"})
		sec.Close(ctx)
		return nil
	})
	sec.Event(ctx, &audit.Record{Event: audit.EventStart, Reason: "gateway " + version + " starting"})
	sec.Event(ctx, &audit.Record{Event: audit.EventPolicyLoaded, PolicyRevision: pol.Revision(), Reason: "policy loaded at start"})

	exchange := &delegation.Exchange{
		Keys: keys, Revocations: st, Issuer: cfg.PublicURL, Audience: cfg.ResourceURL(), Resources: live,
		MaxTTL: cfg.Delegation.MaxTTL.D(), Logger: log.With("component", "delegation"),
		OnSecurity: func(ctx context.Context, ev delegation.SecurityEvent) {
			dec := ""
			if ev.Event == delegation.EventExchangeRefused {
				dec = "deny"
			}
			sec.Event(ctx, &audit.Record{Event: ev.Event, Decision: dec, Reason: ev.Reason, Subject: ev.Subject, Agent: ev.Agent, Delegation: ev.ID})
		},
	}
	approvalSvc := approvals.New(st) // held calls, in the shared store
	var notifier server.ApprovalNotifier
	if cfg.Approvals.WebhookURL != "" {
		wctx, stop := context.WithCancel(context.Background())
		app.closers = append(app.closers, func(context.Context) error { stop(); return nil })
		notifier = approvals.NewWebhook(wctx, cfg.Approvals.WebhookURL, cfg.Approvals.WebhookSecret, nil, log.With("component", "approvals"))
		log.Info("approvals: new requests are posted to the webhook", "url", RedactURL(cfg.Approvals.WebhookURL), "signed", cfg.Approvals.WebhookSecret != "")
	}
	routes := map[string]http.Handler{
		"GET /.well-known/jwks.json": keys.Handler(),
		"POST /oauth/token":          exchange.TokenHandler(),
		"POST /oauth/revoke":         exchange.RevokeHandler(),
	}
	// Preview environments: the API and the webhook, served by a manager
	// that follows the store (when environments are configured).
	envStore, ok := st.(environments.Store)
	if !ok {
		return nil, errors.New("environments: the store cannot be watched")
	}
	envs, previews, err := buildEnvironments(cfg, envStore, st, an, records, tel.HTTPClient(http.DefaultTransport.(*http.Transport).Clone()), log)
	if err != nil {
		return nil, err
	}
	if envs != nil {
		for pattern, h := range envs.Routes() {
			routes[pattern] = h
		}
	}
	if cfg.OAuth.Enabled() {
		as, err := buildOAuth(cfg, log, st, exchange, catalog, pol, sec, approvalSvc, live)
		if err != nil {
			return nil, err
		}
		for pattern, h := range as.Routes() {
			routes[pattern] = h // /oauth/token and /oauth/revoke pass token exchange on
		}
	}
	exchangers, err := upstreamExchangers(cfg, tel.HTTPClient(http.DefaultTransport.(*http.Transport).Clone()), log)
	if err != nil {
		return nil, err
	}
	srv, err := server.New(server.Options{
		Config: cfg, Logger: log, Version: version,
		Authn: an, Catalog: catalog, Policy: pol, Limiter: limiter,
		Sessions: st, Audit: records, Client: upstreamClient, Ready: ready,
		Identity: keys, Exchangers: exchangers, Revocations: st, Pins: pins.New(st),
		Approvals:           approvalSvc,
		Notifier:            notifier,
		Telemetry:           tel,
		Security:            sec,
		WrapMCP:             func(h http.Handler) http.Handler { return tel.HTTPHandler(h, "mcp") },
		Routes:              routes,
		Metrics:             tel.MetricsHandler(),
		PublicLimiter:       publicLimiter,
		AuthorizationServer: cfg.OAuth.Enabled(),
	})
	if err != nil {
		return nil, err
	}
	// Legacy session bindings are cached in-process and evicted through the
	// store's invalidation (Redis pub/sub); see docs/operations.md.
	wctx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = srv.WatchSessions(wctx)
	}()
	app.closers = append(app.closers, func(context.Context) error { stopWatch(); <-watched; return nil })
	exchange.Verifier = srv
	exchange.OnIssue = srv.RecordGrant
	live.srv.Store(srv)
	app.Server = srv
	if envs != nil {
		previews.srv = srv
		envs.Start(ctx) // opens every live preview before the gateway serves
		app.closers = append(app.closers, func(ctx context.Context) error {
			envs.Stop()
			previews.closeAll(ctx)
			return nil
		})
		log.Info("preview environments: API at /environments, GitHub webhook at /hooks/github",
			"ci_issuers", len(cfg.Environments.CIIssuers), "admin_roles", cfg.Environments.AdminRoles,
			"allowed_upstreams", cfg.Environments.AllowedUpstreams, "webhook", cfg.Environments.GitHubWebhookSecret != "",
			"default_ttl", cfg.Environments.DefaultTTL, "max_ttl", cfg.Environments.MaxTTL, "max", cfg.Environments.Max)
	}
	log.Info("delegation: token exchange at /oauth/token, revocation at /oauth/revoke", "max_ttl", cfg.Delegation.MaxTTL)
	return app, nil
}

// liveEnvironments answers which preview environments are live once the
// server exists (the authenticator, token exchange and the OAuth server are
// built before it; until then none is).
type liveEnvironments struct{ srv atomic.Pointer[server.Server] }

// Live reports whether resource is a live preview's protected resource.
func (l *liveEnvironments) Live(resource string) bool {
	s := l.srv.Load()
	return s != nil && s.Live(resource)
}

// buildOAuth wires the authorization server copilots connect to: sign-in at
// oauth.login_issuer, consent, and delegation tokens as access tokens.
func buildOAuth(cfg *config.Config, log *slog.Logger, st store.Store, exchange *delegation.Exchange, catalog *tools.Catalog, pol *policy.Engine, sec *audit.Security, aps *approvals.Service, live delegation.Resources) (*oauth.Server, error) {
	rolesClaim := "roles"
	for _, is := range cfg.Auth.Issuers {
		if is.Issuer == cfg.OAuth.LoginIssuer && is.RolesClaim != "" {
			rolesClaim = is.RolesClaim
		}
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("public_url: %w", err)
	}
	devLoopback := pub.Scheme == "http" && config.IsLoopbackHost(pub.Hostname())
	stateKey, err := cfg.OAuth.StateKeyBytes()
	if err != nil {
		return nil, fmt.Errorf("oauth.state_key: %w", err)
	}
	as, err := oauth.New(oauth.Options{
		Issuer: cfg.PublicURL, Resource: cfg.ResourceURL(), Resources: live,
		KV: st, Revocations: st, Minter: exchange,
		// What anyone can create without signing in has its own quotas.
		Clients: st.Bounded("oauth-clients", cfg.Server.UnauthenticatedQuota),
		Pending: st.Bounded("oauth-pending", cfg.Server.UnauthenticatedQuota),
		Login: oauth.Login{
			Issuer: cfg.OAuth.LoginIssuer, ClientID: cfg.OAuth.ClientID,
			ClientSecret: cfg.OAuth.ClientSecret, RolesClaim: rolesClaim,
			Scopes: cfg.OAuth.Scopes,
		},
		Tools:         consentTools(cfg, catalog, pol),
		AccessTTL:     cfg.OAuth.AccessTTL.D(),
		RefreshTTL:    cfg.OAuth.RefreshTTL.D(),
		TokenExchange: exchange.TokenHandler(),
		Revoke:        exchange.RevokeHandler(),
		// A gateway on plain-http loopback is a development gateway: it
		// accepts client metadata documents served on loopback too.
		AllowLoopbackHTTPClientIDs: devLoopback,
		StateKey:                   stateKey,
		Recheck:                    cfg.OAuth.Recheck.D(),
		RequestID:                  server.RequestID,
		OnRevoke: func(ctx context.Context, h oauth.Human, clientID, grantID, reason string) {
			sec.Event(ctx, &audit.Record{Event: audit.EventRevocation, Reason: reason,
				Subject: h.Subject, Email: h.Email, Name: h.Name, Issuer: h.Issuer, Agent: clientID, Delegation: grantID})
		},
		Logger:    log.With("component", "oauth"),
		Approvals: aps,
	})
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	log.Info("oauth: authorization server on; humans sign in at the login issuer",
		"metadata", cfg.PublicURL+"/.well-known/oauth-authorization-server", "login_issuer", cfg.OAuth.LoginIssuer,
		"client_id", cfg.OAuth.ClientID, "access_ttl", cfg.OAuth.AccessTTL, "refresh_ttl", cfg.OAuth.RefreshTTL, "recheck", cfg.OAuth.Recheck,
		"my_agents", cfg.PublicURL+"/oauth/agents")
	return as, nil
}

// consentTools lists, for the consent and "my agents" pages, the tools an
// agent acting for h with scopes would see: named by a scope and listed by
// the policy for h.
func consentTools(cfg *config.Config, catalog *tools.Catalog, pol *policy.Engine) oauth.ToolLister {
	return func(ctx context.Context, h oauth.Human, agent string, scopes []string) ([]oauth.ToolInfo, error) {
		var pts []policy.Tool
		byName := map[string]*tools.Tool{}
		for _, t := range catalog.Tools() {
			if !delegation.ScopeAllows(scopes, t.Name) {
				continue
			}
			byName[t.Name] = t
			pts = append(pts, policy.Tool{Name: t.Name, Upstream: t.Upstream, Operation: t.Operation, Method: t.Method, Path: t.Path, Tags: t.Tags,
				Kind: t.Kind, Annotations: t.Annotations})
		}
		if len(pts) == 0 {
			return nil, nil
		}
		in := &policy.Input{
			Action:      "list",
			Subject:     policy.Subject{Iss: h.Issuer, Sub: h.Subject, Email: h.Email, Name: h.Name, Roles: h.Roles, Claims: h.Claims},
			Agent:       policy.Agent{ID: agent},
			Delegation:  &policy.Delegation{ID: "consent", Scopes: scopes},
			Environment: cfg.Environment,
			Time:        time.Now().UTC().Format(time.RFC3339),
		}
		allowed, err := pol.Allowed(ctx, in, pts)
		if err != nil {
			return nil, err
		}
		var out []oauth.ToolInfo
		for _, pt := range pts {
			if allowed[pt.Name] {
				t := byName[pt.Name]
				out = append(out, oauth.ToolInfo{Name: t.Name, Description: firstLine(t.Description), Tags: t.Tags, ReadOnly: t.ReadOnly})
			}
		}
		return out, nil
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:157] + "…"
	}
	return s
}

// RedactURL drops credentials from a URL before it is logged.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	if u.User != nil {
		u.User = nil
		return u.String() + " (credentials hidden)"
	}
	return u.String()
}
