package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/internal/server"
	"github.com/agentharness/harness/internal/store"
	"github.com/agentharness/harness/internal/telemetry"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

// gatewayApp is a wired gateway and what must be closed when it stops.
type gatewayApp struct {
	srv     *server.Server
	policy  *policy.Engine
	closers []func(context.Context) error
}

func (a *gatewayApp) close(ctx context.Context) {
	for i := len(a.closers) - 1; i >= 0; i-- {
		_ = a.closers[i](ctx)
	}
}

// build wires every part from cfg. It fails on what cannot work (a broken
// policy, an unwritable audit file); an unreachable upstream or IdP is
// reported and retried, never fatal.
func build(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *gatewayApp, err error) {
	app := &gatewayApp{}
	defer func() {
		if err != nil {
			app.close(context.Background())
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
	// Upstream calls carry traceparent; connections are pooled per upstream.
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	upstreamClient := tel.HTTPClient(base)

	// Shared state: Redis when configured, memory otherwise.
	var st store.Store
	var limiter ratelimit.Limiter
	ready := map[string]func(context.Context) error{}
	if cfg.RateLimit.RedisURL != "" {
		rt := cfg.RateLimit.RedisTimeout.D()
		rdb, err := ratelimit.ParseRedisURL(cfg.RateLimit.RedisURL, rt)
		if err != nil {
			return nil, fmt.Errorf("ratelimit.redis_url: %w", err)
		}
		app.closers = append(app.closers, func(context.Context) error { return rdb.Close() })
		rs := store.NewRedis(rdb, "harness:", rt)
		st = rs
		limiter = ratelimit.NewRedis(rdb, ratelimit.RedisOptions{Prefix: "harness:rl:", Timeout: rt})
		ready["redis"] = rs.Ping
		log.Info("shared state and rate limits on Redis", "redis", redactURL(cfg.RateLimit.RedisURL), "on_error", cfg.RateLimit.OnError)
	} else {
		st = store.NewMemory()
		limiter = ratelimit.NewMemory()
		log.Info("shared state and rate limits in memory (one replica only; set ratelimit.redis_url for several)")
	}

	// The gateway's signing keys: new at every start, published for peers.
	keys, err := delegation.NewKeys(ctx, st, delegation.KeyOptions{MaxTokenTTL: cfg.Delegation.MaxTTL.D(), Logger: log.With("component", "keys")})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}

	issuers := make([]authn.IssuerConfig, 0, len(cfg.Auth.Issuers)+1)
	for _, is := range cfg.Auth.Issuers {
		issuers = append(issuers, authn.IssuerConfig{Issuer: is.Issuer, Audiences: is.Audiences, RolesClaim: is.RolesClaim, AgentClaim: is.AgentClaim})
	}
	issuers = append(issuers, authn.IssuerConfig{Issuer: cfg.PublicURL, Audiences: []string{cfg.ResourceURL()}, KeySet: keys, Delegation: true})
	an, err := authn.New(ctx, authn.Config{Issuers: issuers, Logger: log.With("component", "authn")})
	if err != nil {
		return nil, fmt.Errorf("authentication: %w", err)
	}

	pol, err := policy.New(ctx, policy.Options{Dir: cfg.Policy.Dir, Query: cfg.Policy.Query, Logger: log.With("component", "policy")})
	if err != nil {
		return nil, err
	}
	app.policy = pol
	if cfg.Policy.Dir == "" {
		log.Info("policy: the embedded default policy", "revision", pol.Revision())
	} else {
		log.Info("policy loaded, hot reload on", "dir", cfg.Policy.Dir, "query", cfg.Policy.Query, "revision", pol.Revision())
	}

	ups := make([]tools.Upstream, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		ups = append(ups, tools.Upstream{Name: u.Name, BaseURL: u.BaseURL, OpenAPI: u.OpenAPI, Timeout: u.Timeout.D()})
	}
	catalog := tools.NewCatalog(ups, upstreamClient, log.With("component", "tools"))
	if err := catalog.Refresh(ctx); err != nil {
		log.Error("some upstreams could not be loaded; they are retried and /readyz reports them", "err", err)
	}
	for _, u := range cfg.Upstreams {
		n := 0
		for _, t := range catalog.Tools() {
			if t.Upstream == u.Name {
				n++
			}
		}
		log.Info("upstream", "name", u.Name, "base_url", u.BaseURL, "tools", n)
	}

	auditLog, err := audit.Open(ctx, audit.Config{
		Path: cfg.Audit.Path, Fsync: cfg.Audit.Fsync,
		MaxSize: int64(cfg.Audit.MaxSizeMB) << 20, MaxFiles: cfg.Audit.MaxFiles,
	}, log.With("component", "audit"))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	app.closers = append(app.closers, func(context.Context) error { return auditLog.Close() })
	log.Info("audit trail", "path", cfg.Audit.Path, "fsync", cfg.Audit.Fsync, "on_error", cfg.Audit.OnError)

	exchange := &delegation.Exchange{
		Keys: keys, Revocations: st, Issuer: cfg.PublicURL, Audience: cfg.ResourceURL(),
		MaxTTL: cfg.Delegation.MaxTTL.D(), Logger: log.With("component", "delegation"),
	}
	srv, err := server.New(server.Options{
		Config: cfg, Logger: log, Version: version,
		Authn: an, Catalog: catalog, Policy: pol, Limiter: limiter,
		Sessions: st, Audit: auditLog, Client: upstreamClient, Ready: ready,
		Identity: keys, Revocations: st,
		Telemetry: tel,
		WrapMCP:   func(h http.Handler) http.Handler { return tel.HTTPHandler(h, "mcp") },
		Routes: map[string]http.Handler{
			"GET /metrics":               tel.MetricsHandler(),
			"GET /.well-known/jwks.json": keys.Handler(),
			"POST /oauth/token":          exchange.TokenHandler(),
			"POST /oauth/revoke":         exchange.RevokeHandler(),
		},
	})
	if err != nil {
		return nil, err
	}
	exchange.Verifier = srv
	app.srv = srv
	log.Info("delegation: token exchange at /oauth/token, revocation at /oauth/revoke", "max_ttl", cfg.Delegation.MaxTTL)
	return app, nil
}

// redactURL drops credentials from a URL before it is logged.
func redactURL(s string) string {
	u, err := parseURL(s)
	if err != nil {
		return "(unparsable)"
	}
	if u.User != nil {
		u.User = nil
		return u.String() + " (credentials hidden)"
	}
	return u.String()
}
