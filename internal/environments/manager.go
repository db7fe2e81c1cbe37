package environments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/store"
)

// Host serves environments; internal/app adapts *server.Server plus the
// builders (catalogue from the upstream URLs, policy from the bundle, a
// fresh signing key).
type Host interface {
	// Open builds e and starts serving it (server.OpenEnvironment),
	// replacing an environment of that name.
	Open(ctx context.Context, e *Env) error
	// Retire stops serving name at once (server.RetireEnvironment) and
	// drops its key and catalogue. Idempotent.
	Retire(ctx context.Context, name string)
}

// Store is where environments live: shared by every replica, watched.
type Store interface {
	store.Environments
	store.EnvironmentWatch
}

// Auditor writes audit records (the gateway's audit log).
type Auditor interface {
	Write(ctx context.Context, r *audit.Record) error
}

// Options configure a Manager.
type Options struct {
	// PublicURL is the gateway's public_url; a preview's MCP URL and
	// protected resource are PublicURL/env/{name}/mcp.
	PublicURL string
	// CIIssuers and AdminRoles are who may call the API.
	CIIssuers  []CIIssuer
	AdminRoles []string
	// Humans authenticates admins' tokens.
	Humans Humans
	// AllowedUpstreams are the patterns every preview URL must match.
	AllowedUpstreams []Pattern
	// WebhookSecret verifies POST /hooks/github; empty: the hook is 404.
	WebhookSecret string
	// DefaultTTL, MaxTTL and Max are environments.default_ttl, max_ttl
	// and max.
	DefaultTTL, MaxTTL time.Duration
	Max                int
	// Query is the policy query a bundle must define; default
	// data.harness.decision.
	Query string

	Store Store
	Host  Host
	Audit Auditor
	// AuditOnError is audit.on_error: "deny" (the default, also for "")
	// refuses a creation or update whose audit record cannot be written
	// (and retires what it had opened); "allow" logs and goes on. A
	// retirement happens either way: failing closed means retiring.
	AuditOnError string
	Client       *http.Client // for CI issuers' discovery and keys
	Logger       *slog.Logger
	// Now is the clock (default time.Now); SweepEvery how often expiry
	// is checked (default 1s).
	Now        func() time.Time
	SweepEvery time.Duration
}

// Manager keeps this replica's served environments in step with the
// store, expires them, and serves the API and the webhook.
type Manager struct {
	o    Options
	log  *slog.Logger
	auth *authenticator

	mu   sync.Mutex // serialises opening and retiring
	open map[string]opened

	kick   chan string // names to look at again; "" resyncs everything
	live   atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
}

// opened is what this replica serves of one environment.
type opened struct {
	version string
	expires time.Time
}

// New checks o and returns a Manager; Start runs it.
func New(o Options) (*Manager, error) {
	switch {
	case o.Store == nil || o.Host == nil || o.Audit == nil:
		return nil, errors.New("environments: store, host and audit are required")
	case o.PublicURL == "":
		return nil, errors.New("environments: public URL is required")
	case o.DefaultTTL <= 0 || o.MaxTTL < o.DefaultTTL || o.Max <= 0:
		return nil, errors.New("environments: default_ttl, max_ttl and max must be positive, max_ttl ≥ default_ttl")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		o:    o,
		log:  o.Logger.With("component", "environments"),
		auth: newAuthenticator(o.CIIssuers, o.Humans, o.AdminRoles, o.Client),
		open: map[string]opened{},
		kick: make(chan string, 256),
	}, nil
}

// Start opens every live environment in the store (expiring those past
// their time), then follows the store's changes and expires environments
// until Stop.
func (m *Manager) Start(ctx context.Context) {
	m.resync(ctx)
	ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.done = make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_ = m.o.Store.WatchEnvironments(ctx, watcher{m})
	}()
	go func() {
		defer close(m.done)
		defer func() { <-watched }()
		t := time.NewTicker(m.o.SweepEvery)
		defer t.Stop()
		ticks := 0
		for {
			select {
			case <-ctx.Done():
				return
			case name := <-m.kick:
				if name == "" {
					m.resync(ctx)
				} else {
					m.sync(ctx, name)
				}
			case <-t.C:
				// Changes may be missed while the watch is down; and a
				// record no replica could open still expires.
				if ticks++; !m.live.Load() || ticks%30 == 0 {
					m.resync(ctx)
				}
				m.expire(ctx)
			}
		}
	}()
}

// Stop ends what Start began. Environments stay in the store.
func (m *Manager) Stop() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
}

// watcher hands store notifications to the manager's loop without
// blocking the watch.
type watcher struct{ m *Manager }

func (w watcher) EnvironmentChanged(name string) { w.m.poke(name) }

func (w watcher) EnvironmentsReset(live bool) {
	w.m.live.Store(live)
	if live {
		w.m.poke("")
	}
}

// poke queues name ("" for everything); a full queue becomes a resync.
func (m *Manager) poke(name string) {
	select {
	case m.kick <- name:
	default:
		select {
		case m.kick <- "":
		default: // a resync is queued or the loop catches up at the next tick
		}
	}
}

// decode parses a stored record.
func decode(name string, b []byte) (*Env, error) {
	var e Env
	if err := json.Unmarshal(b, &e); err != nil || e.Name != name {
		return nil, fmt.Errorf("environment %s: malformed record", name)
	}
	return &e, nil
}

// sync brings name in line with the store.
func (m *Manager) sync(ctx context.Context, name string) error {
	b, ok, err := m.o.Store.GetEnvironment(ctx, name)
	if err != nil {
		m.log.WarnContext(ctx, "reading an environment failed; it is looked at again on the next resync", "name", name, "error", err)
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(ctx, name, b, ok)
}

// resync brings every environment in line with the store.
func (m *Manager) resync(ctx context.Context) {
	all, err := m.o.Store.ListEnvironments(ctx)
	if err != nil {
		m.log.WarnContext(ctx, "listing environments failed; retried every second", "error", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.open {
		if _, ok := all[name]; !ok {
			m.retireLocked(ctx, name)
		}
	}
	for name, b := range all {
		_ = m.applyLocked(ctx, name, b, true)
	}
}

// applyLocked opens, reopens or retires name given its stored record (ok
// false: gone). An expired record is deleted (and audited once).
func (m *Manager) applyLocked(ctx context.Context, name string, b []byte, ok bool) error {
	if !ok {
		m.retireLocked(ctx, name)
		return nil
	}
	e, err := decode(name, b)
	if err != nil {
		m.retireLocked(ctx, name)
		m.log.ErrorContext(ctx, "ignoring a malformed environment record", "name", name)
		return err
	}
	if !m.o.Now().Before(e.ExpiresAt) {
		m.expireLocked(ctx, e)
		return nil
	}
	if cur, ok := m.open[name]; ok && cur.version == e.Version {
		return nil
	}
	if e.HasBundle {
		bundle, ok, err := m.o.Store.EnvironmentBundle(ctx, name)
		if err != nil || !ok {
			m.retireLocked(ctx, name) // never serve it with another policy
			m.log.ErrorContext(ctx, "the environment's policy bundle cannot be read; not serving it", "name", name, "error", err)
			return fmt.Errorf("environment %s: policy bundle unavailable", name)
		}
		e.Bundle = bundle
	}
	if err := m.o.Host.Open(ctx, e); err != nil {
		m.retireLocked(ctx, name)
		m.log.ErrorContext(ctx, "opening the environment failed", "name", name, "error", err)
		return err
	}
	m.open[name] = opened{version: e.Version, expires: e.ExpiresAt}
	m.log.InfoContext(ctx, "environment served", "name", name, "version", e.Version, "expires_at", e.ExpiresAt)
	return nil
}

// retireLocked stops serving name here, if it is served.
func (m *Manager) retireLocked(ctx context.Context, name string) {
	if _, ok := m.open[name]; !ok {
		return
	}
	m.o.Host.Retire(ctx, name)
	delete(m.open, name)
	m.log.InfoContext(ctx, "environment retired here", "name", name)
}

// expire retires every served environment past its time.
func (m *Manager) expire(ctx context.Context) {
	now := m.o.Now()
	var due []string
	m.mu.Lock()
	for name, o := range m.open {
		if !now.Before(o.expires) {
			due = append(due, name)
		}
	}
	m.mu.Unlock()
	for _, name := range due {
		b, ok, err := m.o.Store.GetEnvironment(ctx, name)
		m.mu.Lock()
		if err == nil && ok {
			if e, err := decode(name, b); err == nil && !now.Before(e.ExpiresAt) {
				m.expireLocked(ctx, e)
			} else {
				_ = m.applyLocked(ctx, name, b, ok) // renewed meanwhile
			}
		} else {
			m.retireLocked(ctx, name) // gone, or unreadable: fail closed
		}
		m.mu.Unlock()
	}
}

// expireLocked retires an expired environment here and deletes it from
// the store; the one replica whose deletion succeeds audits it.
func (m *Manager) expireLocked(ctx context.Context, e *Env) {
	m.retireLocked(ctx, e.Name)
	deleted, err := m.o.Store.DeleteEnvironment(ctx, e.Name)
	if err != nil {
		m.log.WarnContext(ctx, "deleting an expired environment failed; retried", "name", e.Name, "error", err)
		return
	}
	if deleted {
		_ = m.record(ctx, audit.EnvironmentExpire, e, nil, "ttl: expired at "+e.ExpiresAt.UTC().Format(time.RFC3339))
	}
}

// record writes a kind=environment audit record; c nil: the gateway
// itself. A failure is logged and returned: a creation or update must not
// stand unrecorded (see put), a retirement happens all the same.
func (m *Manager) record(ctx context.Context, action string, e *Env, c *Caller, why string) error {
	exp := e.ExpiresAt.UTC()
	r := &audit.Record{
		Kind: audit.KindEnvironment, Action: action, Reason: why, Environment: e.Name,
		Preview: &audit.Preview{Name: e.Name, Repository: e.Repository, PullRequest: e.PullRequest, Branch: e.Branch, ExpiresAt: &exp},
	}
	if action == audit.EnvironmentCreate || action == audit.EnvironmentUpdate {
		r.Preview.Upstreams = map[string]string{}
		for n, u := range e.Upstreams {
			if u.MCP != "" {
				r.Preview.Upstreams[n] = u.MCP
			} else {
				r.Preview.Upstreams[n] = u.BaseURL
			}
		}
	}
	if c != nil {
		r.Subject, r.Issuer, r.Email, r.Name, r.Preview.Actor = c.Subject, c.Issuer, c.Email, c.Name, c.Actor
	} else {
		r.Subject = "harness"
	}
	if err := m.o.Audit.Write(ctx, r); err != nil {
		m.log.ErrorContext(ctx, "writing the environment audit record failed", "name", e.Name, "action", action, "error", err)
		return fmt.Errorf("environment %s audit record: %w", e.Name, err)
	}
	return nil
}

// auditMayFail reports whether audit.on_error lets a change stand whose
// record could not be written.
func (m *Manager) auditMayFail() bool { return m.o.AuditOnError == "allow" }

// newVersion returns a fresh random record version.
func newVersion() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// MCPURL is a preview's MCP endpoint and protected resource:
// public_url/env/{name}/mcp (server.EnvironmentResource).
func (m *Manager) MCPURL(name string) string { return m.o.PublicURL + "/env/" + name + "/mcp" }
