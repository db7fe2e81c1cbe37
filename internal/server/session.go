package server

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/store"
)

// SessionStore keeps legacy MCP sessions, bound to the principal that opened
// them. With Redis every replica sees every session.
type SessionStore interface {
	PutSession(ctx context.Context, id string, s store.Session, ttl time.Duration) error
	GetSession(ctx context.Context, id string) (store.Session, bool, error)
	DeleteSession(ctx context.Context, id string) error
}

// sessionTTL is how long a legacy session lives after it was opened.
const sessionTTL = 24 * time.Hour

const sessionPrefix = "mcp-session-"

func sameHolder(s store.Session, p *authn.Principal) bool {
	return s.Issuer == p.Issuer && s.Subject == p.Subject && s.Agent == p.Agent
}

// sameEnvironment reports whether session s was opened at e (since e was
// created: a re-created preview does not revive the sessions of the one
// retired before it).
func sameEnvironment(s store.Session, e *env) bool {
	return s.Environment == e.name && !s.Created.Before(e.created)
}

// bindSession enforces that a legacy session id is used only by the
// principal that opened it (issuer, subject, agent). A session id is never
// authentication: the token was verified before this runs. A mismatch looks
// exactly like an unknown session (404), so ids cannot be probed.
//
// Requests of the 2026-07-28 revision carry no sessions; mcp-go ignores the
// header for them and so does this check.
func (s *Server) bindSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(mcpserver.HeaderKeySessionID)
		if id == "" || mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion)) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		p := principalFrom(ctx)
		sess, ok, err := s.lookupSession(ctx, id)
		if err != nil {
			s.log.ErrorContext(ctx, "session store unavailable", "err", err, "request_id", RequestID(ctx))
			writeError(w, r, http.StatusServiceUnavailable, "session store unavailable")
			return
		}
		e := s.envOf(ctx)
		if ok && p != nil && sameHolder(sess, p) && !sameEnvironment(sess, e) {
			s.log.WarnContext(ctx, "session used at another environment: refused", "session", id, "environment", e.label,
				"request_id", RequestID(ctx))
			writeError(w, r, http.StatusNotFound, "session not found")
			return
		}
		if !ok || p == nil || !sameHolder(sess, p) {
			if ok {
				s.log.WarnContext(ctx, "session used by another principal: refused",
					"session", id, "subject", p.Subject, "agent", p.Agent, "request_id", RequestID(ctx))
				if s.security != nil {
					s.security.Event(ctx, &audit.Record{Event: audit.EventSessionOtherPrincipal, Decision: decDeny,
						Reason:  "a session opened by another principal was presented; refused as unknown",
						Subject: p.Subject, Issuer: p.Issuer, Agent: p.Agent, Session: id, ClientIP: clientIP(r)})
				}
			}
			writeError(w, r, http.StatusNotFound, "session not found")
			return
		}
		if r.Method == http.MethodDelete {
			s.sessCache.SessionDeleted(id) // this replica at once, whatever the store says
			if err := s.sessions.DeleteSession(ctx, id); err != nil {
				writeError(w, r, http.StatusServiceUnavailable, "session store unavailable")
				return
			}
			s.sessCache.SessionDeleted(id) // again: a read racing the delete may have cached it
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, sessionKey, id)))
	})
}

// lookupSession returns the binding of session id: from the in-process
// cache when it holds it, else from the store (and then caches it).
func (s *Server) lookupSession(ctx context.Context, id string) (store.Session, bool, error) {
	sess, ok, gen := s.sessCache.get(id)
	if ok {
		return sess, true, nil
	}
	sess, ok, err := s.sessions.GetSession(ctx, id)
	if err == nil && ok {
		s.sessCache.put(id, sess, gen)
	}
	return sess, ok, err
}

// ResolveSessionIdManager implements mcp-go's SessionIdManagerResolver: the
// manager it returns is bound to the request's principal.
func (s *Server) ResolveSessionIdManager(r *http.Request) mcpserver.SessionIdManager {
	if r == nil {
		return shutdownManager{}
	}
	return &boundManager{s: s, ctx: r.Context()}
}

// boundManager mints and checks session ids for one request.
type boundManager struct {
	s   *Server
	ctx context.Context
}

// Generate opens a session bound to the principal. If the store fails, the
// id is not recorded and its next use gets 404, so the client starts over.
func (m *boundManager) Generate() string {
	id := sessionPrefix + uuid.NewString()
	p := principalFrom(m.ctx)
	if p == nil {
		return id
	}
	sess := store.Session{Issuer: p.Issuer, Subject: p.Subject, Agent: p.Agent, Created: time.Now().UTC(),
		Environment: m.s.envOf(m.ctx).name}
	if err := m.s.sessions.PutSession(m.ctx, id, sess, sessionTTL); err != nil {
		m.s.log.ErrorContext(m.ctx, "cannot record new session", "err", err)
	}
	return id
}

// Validate accepts only the id bindSession checked for this request.
func (m *boundManager) Validate(id string) (bool, error) {
	if checked, _ := m.ctx.Value(sessionKey).(string); checked != "" && checked == id {
		return false, nil
	}
	return false, errNoSession
}

// Terminate is reached for DELETE after bindSession deleted the session.
func (m *boundManager) Terminate(string) (bool, error) { return false, nil }

// shutdownManager serves mcp-go's housekeeping (no request): on shutdown a
// replica must not end sessions that other replicas keep serving.
type shutdownManager struct{}

func (shutdownManager) Generate() string              { return "" }
func (shutdownManager) Validate(string) (bool, error) { return false, errNoSession }
func (shutdownManager) Terminate(string) (bool, error) {
	return false, nil
}

type sessionError string

func (e sessionError) Error() string { return string(e) }

const errNoSession = sessionError("session not found")
