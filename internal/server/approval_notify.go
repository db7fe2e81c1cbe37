package server

import (
	"context"
	"sync"
	"time"

	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/approvals"
)

// ApprovalLookup reads a request by id; *approvals.Service implements it.
// Without it no notifications/elicitation/complete are sent.
type ApprovalLookup interface {
	Get(ctx context.Context, id string) (approvals.Request, bool, error)
}

// elicitationCompletePoll is how often the replica that holds a session
// asks the shared store whether the requests it handed out as URL
// elicitations were decided. Polling the store (memory or Redis) works
// whichever replica served the approval page, with no pub/sub channel.
const elicitationCompletePoll = time.Second

// maxWatchedElicitations bounds the requests one replica watches; past it
// new ones are not watched (their clients still repeat the call).
const maxWatchedElicitations = 4096

// elicitationWatch remembers, per approval request handed to a legacy
// session as a URL elicitation (-32042), the sessions to tell with
// notifications/elicitation/complete once it is decided or gone.
type elicitationWatch struct {
	mu      sync.Mutex
	ids     map[string]map[string]*env // request id -> session id -> its environment
	running bool
}

// watchElicitation records that sessionID was given request id. The
// poller runs only while something is watched.
func (s *Server) watchElicitation(e *env, id, sessionID string) {
	lookup, ok := s.approvals.(ApprovalLookup)
	if !ok || id == "" || sessionID == "" {
		return
	}
	w := &s.elicitWatch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ids == nil {
		w.ids = map[string]map[string]*env{}
	}
	sessions, ok := w.ids[id]
	if !ok {
		if len(w.ids) >= maxWatchedElicitations {
			s.log.Warn("too many approval requests watched for elicitation/complete: not watching", "approval", id)
			return
		}
		sessions = map[string]*env{}
		w.ids[id] = sessions
	}
	sessions[sessionID] = e
	if !w.running {
		w.running = true
		go s.pollElicitations(lookup)
	}
}

// pollElicitations sends notifications/elicitation/complete for every
// watched request that was approved, denied or expired, and stops when
// nothing is left to watch.
func (s *Server) pollElicitations(lookup ApprovalLookup) {
	w := &s.elicitWatch
	t := time.NewTicker(elicitationCompletePoll)
	defer t.Stop()
	for range t.C {
		w.mu.Lock()
		ids := make([]string, 0, len(w.ids))
		for id := range w.ids {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, ok, err := lookup.Get(ctx, id)
			cancel()
			if err != nil {
				s.log.Warn("approval store unavailable: elicitation/complete delayed", "err", err, "approval", id)
				continue
			}
			if ok && r.Status == approvals.StatusPending {
				continue
			}
			w.mu.Lock()
			sessions := w.ids[id]
			delete(w.ids, id)
			w.mu.Unlock()
			for sid, e := range sessions {
				// A session that ended (or lives on another replica) is
				// simply not found.
				if err := e.mcp.SendNotificationToSpecificClient(sid, "notifications/elicitation/complete", map[string]any{"elicitationId": id}); err != nil {
					s.log.Debug("elicitation/complete not delivered", "err", err, "approval", id)
				}
			}
		}
		w.mu.Lock()
		if len(w.ids) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// sessionIDOf is the mcp-go session id of the request, or "".
func sessionIDOf(ctx context.Context) string {
	if cs := mcpserver.ClientSessionFromContext(ctx); cs != nil {
		return cs.SessionID()
	}
	return ""
}
