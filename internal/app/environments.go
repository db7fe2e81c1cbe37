package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/environments"
	"github.com/agentharness/harness/internal/server"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

// envServer is what the preview host needs of *server.Server.
type envServer interface {
	OpenEnvironment(ctx context.Context, e server.Environment) error
	RetireEnvironment(ctx context.Context, name string)
}

// previewKeys publishes and unpublishes previews' public keys (the store).
type previewKeys interface {
	delegation.KeyStore
	UnpublishKey(ctx context.Context, kid string) error
}

// previewHost adapts the server to environments.Host: for each preview it
// builds a catalogue of only the preview's upstreams (the constructors
// production's catalogue uses), the policy from its bundle (nil:
// production's) and a signing key made for it, whose public JWK is in the
// gateway's JWKS while the preview lives and dropped when it is retired.
type previewHost struct {
	srv    envServer // set once the server is built, before any request
	keys   previewKeys
	client *http.Client // refuses redirects outside allowed_upstreams
	query  string
	log    *slog.Logger

	mu   sync.Mutex
	live map[string]*preview
}

// preview is what the host holds for one open preview.
type preview struct {
	catalog *tools.Catalog
	keys    *delegation.Keys
}

var _ environments.Host = (*previewHost)(nil)

func newPreviewHost(keys previewKeys, client *http.Client, allowed []environments.Pattern, query string, log *slog.Logger) *previewHost {
	// A preview's upstream may not redirect the gateway outside
	// allowed_upstreams (to production, say).
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		if err := environments.CheckUpstreamURL(req.URL.String(), allowed); err != nil {
			return fmt.Errorf("a preview upstream redirected outside environments.allowed_upstreams: %w", err)
		}
		return nil
	}
	return &previewHost{keys: keys, client: &c, query: query, log: log, live: map[string]*preview{}}
}

// Open implements environments.Host.
func (h *previewHost) Open(ctx context.Context, e *environments.Env) error {
	names := make([]string, 0, len(e.Upstreams))
	for n := range e.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	ups := make([]tools.Upstream, 0, len(names))
	for _, n := range names {
		u := e.Upstreams[n]
		ups = append(ups, tools.Upstream{Name: n, BaseURL: u.BaseURL, OpenAPI: u.OpenAPI, MCP: u.MCP,
			Timeout: config.DefaultUpstreamTimeout, Prefix: n + "_"})
	}
	log := h.log.With("environment", e.Name) // tools and keys name their component
	cat := tools.NewCatalog(ups, h.client, log)
	if err := cat.Refresh(ctx); err != nil {
		if errors.Is(err, tools.ErrNameClash) {
			cat.Close()
			return fmt.Errorf("environment %s upstreams: %w", e.Name, err)
		}
		log.Warn("some of the preview's upstreams could not be loaded; they are retried", "component", "environments", "err", err)
	}
	var pol server.Decider // nil: production's policy
	if len(e.Bundle) > 0 {
		eng, err := policy.FromBundle(ctx, e.Bundle, policy.BundleOptions{Query: h.query, Logger: log})
		if err != nil {
			cat.Close()
			return fmt.Errorf("environment %s policy bundle: %w", e.Name, err)
		}
		pol = eng
	}
	// A key for this preview alone; its publication is extended while it
	// signs and ends when the preview is retired.
	keys, err := delegation.NewKeys(ctx, h.keys, delegation.KeyOptions{
		MaxTokenTTL:   delegation.MaxAssertionTTL,
		PublishWindow: max(time.Minute, min(time.Hour, time.Until(e.ExpiresAt))),
		Logger:        log.With("component", "keys"),
	})
	if err != nil {
		cat.Close()
		return fmt.Errorf("environment %s signing key: %w", e.Name, err)
	}
	p := &preview{catalog: cat, keys: keys}
	err = h.srv.OpenEnvironment(ctx, server.Environment{
		Name: e.Name,
		Preview: &policy.Preview{Name: e.Name, Branch: e.Branch, PullRequest: e.PullRequest, Repository: e.Repository,
			Owner: e.Owner, CreatedBy: e.CreatedBy, ExpiresAt: e.ExpiresAt.UTC().Format(time.RFC3339)},
		Catalog: cat, Policy: pol, Identity: keys, Created: e.CreatedAt,
	})
	if err != nil {
		h.close(ctx, p)
		return err
	}
	h.mu.Lock()
	old := h.live[e.Name]
	h.live[e.Name] = p
	h.mu.Unlock()
	if old != nil {
		h.close(ctx, old)
	}
	log.Info("preview open", "component", "environments", "tools", len(cat.Tools()), "own_policy", pol != nil, "kid", keys.KeyID())
	return nil
}

// Retire implements environments.Host.
func (h *previewHost) Retire(ctx context.Context, name string) {
	h.srv.RetireEnvironment(ctx, name)
	h.mu.Lock()
	p := h.live[name]
	delete(h.live, name)
	h.mu.Unlock()
	if p != nil {
		h.close(ctx, p)
	}
}

// close drops a preview's catalogue and its key's publication.
func (h *previewHost) close(ctx context.Context, p *preview) {
	p.catalog.Close()
	if err := h.keys.UnpublishKey(context.WithoutCancel(ctx), p.keys.KeyID()); err != nil {
		h.log.Warn("unpublishing a retired preview's key failed; it lapses within the hour", "component", "environments", "kid", p.keys.KeyID(), "err", err)
	}
}

// closeAll closes every preview this replica holds (shutdown); they stay
// in the store for the other replicas.
func (h *previewHost) closeAll(ctx context.Context) {
	h.mu.Lock()
	all := h.live
	h.live = map[string]*preview{}
	h.mu.Unlock()
	for _, p := range all {
		h.close(ctx, p)
	}
}

// buildEnvironments makes the preview environments' manager when the
// configuration turns them on (nil otherwise).
func buildEnvironments(cfg *config.Config, st environments.Store, keys previewKeys, humans environments.Humans, audit environments.Auditor, client *http.Client, log *slog.Logger) (*environments.Manager, *previewHost, error) {
	ec := cfg.Environments
	if !ec.Enabled() {
		return nil, nil, nil
	}
	pats, err := environments.ParsePatterns(ec.AllowedUpstreams)
	if err != nil {
		return nil, nil, fmt.Errorf("environments.allowed_upstreams: %w", err)
	}
	host := newPreviewHost(keys, client, pats, cfg.Policy.Query, log)
	cis := make([]environments.CIIssuer, 0, len(ec.CIIssuers))
	for _, is := range ec.CIIssuers {
		cis = append(cis, environments.CIIssuer{Issuer: is.Issuer, Audiences: is.Audiences, Claims: is.Claims})
	}
	m, err := environments.New(environments.Options{
		PublicURL: cfg.PublicURL, CIIssuers: cis, AdminRoles: ec.AdminRoles, Humans: humans,
		AllowedUpstreams: pats, WebhookSecret: ec.GitHubWebhookSecret,
		DefaultTTL: ec.DefaultTTL.D(), MaxTTL: ec.MaxTTL.D(), Max: ec.Max, Query: cfg.Policy.Query, AuditOnError: cfg.Audit.OnError,
		Store: st, Host: host, Audit: audit, Client: client, Logger: log,
	})
	if err != nil {
		return nil, nil, err
	}
	return m, host, nil
}
