package environments

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/store"
	"github.com/agentharness/harness/policy"
)

// Routes are the API and the webhook, as Options.Routes of the server
// (each limited per client address there).
func (m *Manager) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"PUT /environments/{name}":    m.handle(m.put),
		"GET /environments":           m.handle(m.list),
		"GET /environments/{name}":    m.handle(m.get),
		"DELETE /environments/{name}": m.handle(m.del),
		"POST /hooks/github":          m.handle(m.webhook),
	}
}

// handle adapts an error-returning handler: an *apiError is answered as
// JSON {"error", "error_description"}; anything else is logged and a 500.
func (m *Manager) handle(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			m.log.ErrorContext(r.Context(), "environments API", "method", r.Method, "path", r.URL.Path, "error", err)
			ae = &apiError{http.StatusInternalServerError, "server_error", "the request could not be completed; see the gateway's log"}
		}
		if ae.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		writeJSON(w, ae.status, map[string]string{"error": ae.code, "error_description": ae.desc})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// readBody reads at most limit bytes of the body: more is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{http.StatusRequestEntityTooLarge, "request_too_large", "the body is larger than " + sizeString(limit)}
		}
		return nil, badRequest("the body could not be read")
	}
	return b, nil
}

func sizeString(n int64) string {
	if n >= 1<<20 {
		return itoa(int(n>>20)) + " MiB"
	}
	return itoa(int(n>>10)) + " KiB"
}

// created is the answer to a PUT.
type created struct {
	Name      string    `json:"name"`
	MCPURL    string    `json:"mcp_url"`
	Resource  string    `json:"resource"`
	ExpiresAt time.Time `json:"expires_at"`
}

// listed is one environment in GET answers.
type listed struct {
	Name        string    `json:"name"`
	MCPURL      string    `json:"mcp_url"`
	Resource    string    `json:"resource"`
	ExpiresAt   time.Time `json:"expires_at"`
	Branch      string    `json:"branch"`
	PullRequest int       `json:"pull_request"`
	Repository  string    `json:"repository"`
	Owner       string    `json:"owner"`
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
}

func (m *Manager) listed(e *Env) listed {
	return listed{Name: e.Name, MCPURL: m.MCPURL(e.Name), Resource: m.MCPURL(e.Name), ExpiresAt: e.ExpiresAt.UTC(),
		Branch: e.Branch, PullRequest: e.PullRequest, Repository: e.Repository, Owner: e.Owner,
		CreatedBy: e.CreatedBy, CreatedAt: e.CreatedAt.UTC()}
}

// nameFrom checks the {name} path value.
func nameFrom(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := CheckName(name); err != nil {
		return "", badRequest(err.Error())
	}
	return name, nil
}

// put creates or updates an environment.
func (m *Manager) put(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := m.auth.caller(r) // before reading a large body
	if err != nil {
		return err
	}
	name, err := nameFrom(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, MaxBody)
	if err != nil {
		return err
	}
	req, bundle, ttl, err := DecodeRequest(body, m.o.AllowedUpstreams, m.o.DefaultTTL, m.o.MaxTTL)
	if err != nil {
		var fe *forbiddenError
		if errors.As(err, &fe) {
			return forbidden(err.Error())
		}
		return badRequest(err.Error())
	}
	if !c.Admin && c.Repository != "" {
		switch req.Repository {
		case "":
			req.Repository = c.Repository
		case c.Repository:
		default:
			return forbidden("repository " + quote(req.Repository) + " is not the CI token's repository")
		}
	}
	if bundle != nil {
		if _, err := policy.FromBundle(ctx, bundle, policy.BundleOptions{Query: m.o.Query}); err != nil {
			return &apiError{http.StatusBadRequest, "invalid_policy_bundle", strings.TrimPrefix(err.Error(), policy.ErrLoad.Error()+": ")}
		}
	}
	old, exists, err := m.o.Store.GetEnvironment(ctx, name)
	if err != nil {
		return err
	}
	now := m.o.Now().UTC()
	e := &Env{
		Name: name, Branch: req.Branch, PullRequest: req.PullRequest, Repository: req.Repository, Owner: req.Owner,
		Upstreams: req.Upstreams, CreatedBy: c.who(), CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(ttl),
		Version: newVersion(), HasBundle: bundle != nil, Bundle: bundle,
	}
	if !c.Admin {
		e.CreatorIssuer, e.CreatorRepository = c.Issuer, c.Repository
	}
	if exists {
		prev, err := decode(name, old)
		if err != nil {
			return err
		}
		if !c.mayManage(prev) {
			return forbidden("environment " + name + " belongs to another repository's CI: only its CI or an admin may update it")
		}
		e.CreatedAt, e.CreatedBy = prev.CreatedAt, prev.CreatedBy
		e.CreatorIssuer, e.CreatorRepository = prev.CreatorIssuer, prev.CreatorRepository
	}
	rec, err := json.Marshal(e)
	if err != nil {
		return err
	}
	isNew, err := m.o.Store.PutEnvironment(ctx, name, rec, bundle, m.o.Max)
	if errors.Is(err, store.ErrEnvironmentsFull) {
		return &apiError{http.StatusConflict, "too_many_environments", "environments.max (" + itoa(m.o.Max) + ") live previews exist already: retire one first"}
	}
	if err != nil {
		return err
	}
	// Serve it here before answering (even if the caller goes away
	// meanwhile); other replicas follow the watch.
	if err := m.sync(context.WithoutCancel(ctx), name); err != nil {
		if deleted, _ := m.o.Store.DeleteEnvironment(context.WithoutCancel(ctx), name); deleted {
			_ = m.record(ctx, audit.EnvironmentRetire, e, nil, "could not be opened")
		}
		return &apiError{http.StatusBadGateway, "environment_unavailable", "the environment could not be opened; see the gateway's log"}
	}
	action, status := audit.EnvironmentUpdate, http.StatusOK
	if isNew {
		action, status = audit.EnvironmentCreate, http.StatusCreated
	}
	if err := m.record(ctx, action, e, c, "api"); err != nil && !m.auditMayFail() {
		// Fail closed (audit.on_error: deny): no preview exists, or is
		// changed, without its record. What was opened is retired
		// everywhere; an update retires the preview too, since its
		// previous version's state is gone.
		bg := context.WithoutCancel(ctx)
		if deleted, derr := m.o.Store.DeleteEnvironment(bg, name); derr != nil {
			m.log.ErrorContext(ctx, "retiring an environment whose change was not audited failed; it expires at its ttl", "name", name, "error", derr)
		} else if deleted {
			_ = m.record(bg, audit.EnvironmentRetire, e, nil, "its "+action+" could not be recorded in the audit trail")
		}
		m.retireHere(bg, name)
		what := "nothing was created"
		if !isNew {
			what = "the environment was retired"
		}
		return &apiError{http.StatusServiceUnavailable, "audit_unavailable",
			"the " + action + " could not be recorded in the audit trail, so it was refused (audit.on_error: deny) and " + what + "; retry once the audit trail is writable"}
	}
	writeJSON(w, status, created{Name: name, MCPURL: m.MCPURL(name), Resource: m.MCPURL(name), ExpiresAt: e.ExpiresAt})
	return nil
}

// list answers every live environment the caller may manage (an admin:
// all; CI: its repository's), by name.
func (m *Manager) list(w http.ResponseWriter, r *http.Request) error {
	c, err := m.auth.caller(r)
	if err != nil {
		return err
	}
	all, err := m.o.Store.ListEnvironments(r.Context())
	if err != nil {
		return err
	}
	now := m.o.Now()
	out := []listed{}
	for name, b := range all {
		e, err := decode(name, b)
		if err != nil || !now.Before(e.ExpiresAt) || !c.mayManage(e) {
			continue
		}
		out = append(out, m.listed(e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"environments": out})
	return nil
}

// get answers one environment the caller may manage (others are 404).
func (m *Manager) get(w http.ResponseWriter, r *http.Request) error {
	c, err := m.auth.caller(r)
	if err != nil {
		return err
	}
	name, err := nameFrom(r)
	if err != nil {
		return err
	}
	b, ok, err := m.o.Store.GetEnvironment(r.Context(), name)
	if err != nil {
		return err
	}
	var e *Env
	if ok {
		e, err = decode(name, b)
	}
	if !ok || err != nil || !m.o.Now().Before(e.ExpiresAt) || !c.mayManage(e) {
		return &apiError{http.StatusNotFound, "not_found", "no environment " + name}
	}
	writeJSON(w, http.StatusOK, m.listed(e))
	return nil
}

// del retires an environment: on this replica at once, on the others
// through the store's watch. Only the replica whose deletion succeeds
// audits it.
func (m *Manager) del(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c, err := m.auth.caller(r)
	if err != nil {
		return err
	}
	name, err := nameFrom(r)
	if err != nil {
		return err
	}
	b, ok, err := m.o.Store.GetEnvironment(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return &apiError{http.StatusNotFound, "not_found", "no environment " + name}
	}
	e, err := decode(name, b)
	if err != nil {
		return err
	}
	if !c.mayManage(e) {
		return forbidden("environment " + name + " belongs to another repository's CI: only its CI or an admin may retire it")
	}
	deleted, err := m.o.Store.DeleteEnvironment(ctx, name)
	if err != nil {
		return err
	}
	m.retireHere(ctx, name)
	if !deleted {
		return &apiError{http.StatusNotFound, "not_found", "no environment " + name}
	}
	why := "api"
	if strings.HasPrefix(r.Header.Get("User-Agent"), "harness-gateway/") {
		why = "cli"
	}
	_ = m.record(ctx, audit.EnvironmentRetire, e, c, why) // retired all the same; the failure is logged
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "retired": true})
	return nil
}

// retireHere stops serving name on this replica now.
func (m *Manager) retireHere(ctx context.Context, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.retireLocked(ctx, name)
}

func quote(s string) string { return `"` + truncate(s) + `"` }

func itoa(n int) string { return strconv.Itoa(n) }
