package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/policy"
)

// Environments: the pipeline serves production (built from Options) and
// any number of preview environments handed in at run time. Each request
// carries its environment in its context, set by the route (/mcp or
// /env/{name}/mcp); every step of the pipeline takes the catalogue, the
// policy, the identity and the caches from there, never from the Server.

// Environment is one environment the pipeline serves. Production is built from
// Options (Catalog, Policy, Identity, config); previews are handed in at run time.
type Environment struct {
	Name     string          // preview name, [a-z0-9-]{1,40}; never "default"
	Preview  *policy.Preview // what the policy sees as input.preview
	Catalog  Catalog         // only the preview's upstreams
	Policy   Decider         // nil: production's policy
	Identity Asserter        // signs the preview's upstream assertions; nil: none sent
	Created  time.Time       // a token issued (iat) before this is refused here; zero: now
}

// env is the serving state of one environment.
type env struct {
	name     string          // "" in production
	preview  *policy.Preview // nil in production
	label    string          // input.environment and the audit records' environment
	resource string          // the protected resource (RFC 9728) tokens must name
	issuer   string          // "iss" of upstream assertions
	created  time.Time       // zero in production
	catalog  Catalog
	policy   Decider
	identity Asserter
	// exchangers and pins exist in production only: a preview never
	// obtains production's IdP tokens, and its MCP upstreams are the
	// branch's own (not pinned against production's approvals).
	exchangers map[string]Exchanger
	pins       Pinner

	mcp      *mcpserver.MCPServer
	http     *mcpserver.StreamableHTTPServer
	metadata http.Handler // the RFC 9728 document

	toolsMu      sync.RWMutex
	toolsVersion uint64
	policyTools  []policy.Tool
	visCache     visibleCache
	assertions   assertionCache
	subs         subscriptions
	pinSt        pinState
	retired      atomic.Bool
}

// path is the MCP endpoint of e.
func (e *env) path() string {
	if e.name == "" {
		return "/mcp"
	}
	return "/env/" + e.name + "/mcp"
}

// qualify makes a name unique across environments (for what is sealed or
// cached under it); production's names are kept as they are.
func (e *env) qualify(name string) string {
	if e.name == "" {
		return name
	}
	return "env:" + e.name + ":" + name
}

type envKey struct{}

// withEnv returns ctx serving e.
func withEnv(ctx context.Context, e *env) context.Context {
	return context.WithValue(ctx, envKey{}, e)
}

// envOf is the environment the request of ctx is served in: the one its
// route set, production for work that belongs to no request.
func (s *Server) envOf(ctx context.Context) *env {
	if e, ok := ctx.Value(envKey{}).(*env); ok && e != nil {
		return e
	}
	return s.prod
}

// environments are the live previews and the names retired on this
// replica.
type environments struct {
	mu      sync.RWMutex
	live    map[string]*env
	retired map[string]bool
}

// maxRetiredNames bounds the names remembered as retired; past it the
// oldest are not told apart from never-opened ones (both are refused).
const maxRetiredNames = 100000

var envName = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// validEnvName reports whether name may name a preview.
func validEnvName(name string) bool {
	return envName.MatchString(name) && name != "default"
}

// EnvironmentResource is the protected resource of a preview: publicURL + "/env/" + name + "/mcp".
func EnvironmentResource(publicURL, name string) string {
	return publicURL + "/env/" + name + "/mcp"
}

// EnvironmentIssuer is the "iss" of a preview's upstream assertions: publicURL + "/env/" + name.
func EnvironmentIssuer(publicURL, name string) string {
	return publicURL + "/env/" + name
}

// newProduction builds the production environment from Options.
func (s *Server) newProduction(o Options) *env {
	e := &env{
		label: s.cfg.Environment, resource: s.cfg.ResourceURL(), issuer: s.cfg.PublicURL,
		catalog: o.Catalog, policy: o.Policy, identity: o.Identity, exchangers: o.Exchangers, pins: o.Pins,
	}
	s.buildEnv(e)
	return e
}

// buildEnv gives e its MCP server, tools and metadata document.
func (s *Server) buildEnv(e *env) {
	e.http = s.newMCP(e)
	e.metadata = s.protectedResourceMetadata(e)
	s.syncTools(e)
	e.catalog.OnChange(func() { // clients are told of catalogue changes; changed definitions are audited
		if e.retired.Load() {
			return
		}
		s.syncTools(e)
		go s.withheldTools(withEnv(context.Background(), e))
	})
}

// OpenEnvironment starts serving e at /env/{e.Name}/mcp, or replaces the one of that name.
func (s *Server) OpenEnvironment(ctx context.Context, e Environment) error {
	switch {
	case !validEnvName(e.Name):
		return fmt.Errorf("server: environment name %q: want [a-z0-9-]{1,40}, not \"default\"", e.Name)
	case e.Catalog == nil:
		return fmt.Errorf("server: environment %s: no catalogue", e.Name)
	}
	created := e.Created
	if created.IsZero() {
		created = time.Now()
	}
	n := &env{
		name: e.Name, preview: e.Preview, label: e.Name,
		resource: EnvironmentResource(s.cfg.PublicURL, e.Name), issuer: EnvironmentIssuer(s.cfg.PublicURL, e.Name),
		created: created, catalog: e.Catalog, policy: e.Policy, identity: e.Identity,
	}
	if n.policy == nil {
		n.policy = s.prod.policy
	}
	s.buildEnv(n)
	s.envs.mu.Lock()
	old := s.envs.live[e.Name]
	if s.envs.live == nil {
		s.envs.live = map[string]*env{}
	}
	s.envs.live[e.Name] = n
	delete(s.envs.retired, e.Name)
	s.envs.mu.Unlock()
	if old != nil {
		s.stopEnv(ctx, old)
	}
	s.log.InfoContext(ctx, "environment open", "environment", e.Name, "resource", n.resource)
	return nil
}

// RetireEnvironment stops serving name at once: later requests with a token for it get
// 401 "environment retired"; its legacy sessions end; its cached state is dropped.
// Idempotent; a name never opened is remembered as retired too.
func (s *Server) RetireEnvironment(ctx context.Context, name string) {
	s.envs.mu.Lock()
	old := s.envs.live[name]
	delete(s.envs.live, name)
	if s.envs.retired == nil || len(s.envs.retired) >= maxRetiredNames {
		s.envs.retired = map[string]bool{}
	}
	s.envs.retired[name] = true
	s.envs.mu.Unlock()
	if old != nil {
		s.stopEnv(ctx, old)
		s.log.InfoContext(ctx, "environment retired", "environment", name)
	}
}

// stopEnv ends what e holds: its open streams (the legacy sessions opened
// there end; their ids are refused from now on, see bindSession) and its
// caches.
func (s *Server) stopEnv(ctx context.Context, e *env) {
	e.retired.Store(true)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := e.http.Shutdown(sctx); err != nil {
		s.log.WarnContext(ctx, "environment's streams not all closed", "environment", e.name, "err", err)
	}
	e.visCache.reset()
	e.assertions.reset()
}

// Live reports whether resource is the protected resource of a live
// preview environment (authn.Config.LiveAudience, token exchange and the
// OAuth flow accept it as an audience). Production's is not a preview's.
func (s *Server) Live(resource string) bool {
	rest, ok := strings.CutPrefix(resource, s.cfg.PublicURL+"/env/")
	if !ok {
		return false
	}
	name, ok := strings.CutSuffix(rest, "/mcp")
	if !ok || !validEnvName(name) {
		return false
	}
	s.envs.mu.RLock()
	defer s.envs.mu.RUnlock()
	_, live := s.envs.live[name]
	return live
}

// lookupEnv returns the live environment name, or whether it was retired.
func (s *Server) lookupEnv(name string) (e *env, retired bool) {
	s.envs.mu.RLock()
	defer s.envs.mu.RUnlock()
	return s.envs.live[name], s.envs.retired[name]
}

// errEnvRetired is the description a retired environment answers with.
const errEnvRetired = "environment retired"

// parseEnvPath returns the environment name of an escaped path
// "/env/{name}/mcp" (or of "/.well-known/oauth-protected-resource/env/{name}/mcp"
// with prefix set to that document's prefix). Any escape, dot segment,
// extra segment or name outside [a-z0-9-]{1,40} is refused.
func parseEnvPath(escaped, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(escaped, prefix+"/env/")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, "/mcp")
	if !ok || !validEnvName(name) {
		return "", false
	}
	return name, true
}

// routeEnv sets the request's environment: production at /mcp, the live
// preview at /env/{name}/mcp. An unknown name is 404; a retired one 401
// "environment retired" (with the challenge naming its metadata).
func (s *Server) routeEnv(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mcp" {
			next.ServeHTTP(w, r.WithContext(withEnv(r.Context(), s.prod)))
			return
		}
		name, ok := parseEnvPath(r.URL.EscapedPath(), "")
		if !ok {
			writeError(w, r, http.StatusNotFound, "not found: a preview's MCP endpoint is /env/{name}/mcp")
			return
		}
		e, retired := s.lookupEnv(name)
		switch {
		case e != nil:
			next.ServeHTTP(w, r.WithContext(withEnv(r.Context(), e)))
		case retired:
			s.challengeAt(w, r, s.cfg.PublicURL+"/.well-known/oauth-protected-resource/env/"+name+"/mcp", true, errEnvRetired)
		default:
			writeError(w, r, http.StatusNotFound, fmt.Sprintf("not found: no environment %s", name))
		}
	})
}

// serveEnv hands the request to its environment's MCP transport.
func (s *Server) serveEnv(w http.ResponseWriter, r *http.Request) {
	s.envOf(r.Context()).http.ServeHTTP(w, r)
}

// envMetadata serves the RFC 9728 document of a live preview.
func (s *Server) envMetadata(w http.ResponseWriter, r *http.Request) {
	name, ok := parseEnvPath(r.URL.EscapedPath(), "/.well-known/oauth-protected-resource")
	if !ok {
		writeError(w, r, http.StatusNotFound, "not found")
		return
	}
	e, retired := s.lookupEnv(name)
	switch {
	case e != nil:
		e.metadata.ServeHTTP(w, r)
	case retired:
		writeError(w, r, http.StatusNotFound, "not found: environment "+name+" was retired")
	default:
		writeError(w, r, http.StatusNotFound, "not found: no environment "+name)
	}
}

// errEnvAudience refuses a token presented at an environment it was not
// issued for.
var errEnvAudience = errors.New("token for another environment")

// checkEnvironment refuses a token at an environment it was not issued
// for: production takes only tokens naming a configured audience; a
// preview only tokens naming its resource, issued (iat) since it was
// created (a re-created name does not revive older tokens).
func checkEnvironment(e *env, p *authn.Principal) error {
	if e.name == "" {
		if p.LiveAudienceOnly {
			return fmt.Errorf("%w: the token was issued for a preview environment, not for production (%s)", errEnvAudience, e.resource)
		}
		return nil
	}
	found := false
	for _, a := range p.Audiences {
		if a == e.resource {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%w: the token was not issued for environment %s (its audience must be %s)", errEnvAudience, e.name, e.resource)
	}
	if p.IssuedAt.IsZero() {
		return fmt.Errorf("%w: the token has no iat, so it cannot be shown to postdate environment %s", errEnvAudience, e.name)
	}
	if p.IssuedAt.Before(e.created.Truncate(time.Second)) {
		return fmt.Errorf("%w: the token was issued before environment %s was created", errEnvAudience, e.name)
	}
	return nil
}

// envForAudiences is the live preview one of auds names, or nil.
func (s *Server) envForAudiences(auds []string) *env {
	prefix := s.cfg.PublicURL + "/env/"
	s.envs.mu.RLock()
	defer s.envs.mu.RUnlock()
	for _, a := range auds {
		rest, ok := strings.CutPrefix(a, prefix)
		if !ok {
			continue
		}
		if name, ok := strings.CutSuffix(rest, "/mcp"); ok {
			if e := s.envs.live[name]; e != nil {
				return e
			}
		}
	}
	return nil
}

// envLabel is the environment an audit record names for resource: the
// preview's name (production's resource is never passed).
func (s *Server) envLabel(resource string) string {
	name, _ := parseEnvPath(strings.TrimPrefix(resource, s.cfg.PublicURL), "")
	return name
}
