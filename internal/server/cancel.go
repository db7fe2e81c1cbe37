package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// Cancellation in the 2026-07-28 era, scoped to the principal.
//
// mcp-go v1.6.0 keys its table of requests in flight by (session id,
// request id), and a 2026-07-28 request has no session: its key is the
// request id alone. A notifications/cancelled naming id 1 would end
// whichever principal's request 1 is in flight — and ids 1, 2, 3 are what
// every client sends. So the edge keeps the table itself, keyed by
// environment, principal (human issuer and subject, agent) and request id:
//
//   - every 2026-07-28 request the edge passes on (the tools/call fast
//     path and mcp-go alike) is registered with a cancel func while it is
//     in flight (serveTracked, and serveFastCall for the fast path), and
//     removed when it ends, so the table holds at most the requests being
//     served;
//   - a 2026-07-28 notification reaches mcp-go with a session of its own
//     (noSession), so mcp-go's id-only table is never consulted for it;
//     when mcp-go has accepted a notifications/cancelled (202, its own
//     checks passed), the edge cancels the requests of the same principal
//     in the same environment with that id, and nothing else
//     (cancelScoped). The answer is mcp-go's, whether or not anything was
//     cancelled: no oracle for other principals' ids.
//
// A cancelled request ends as mcp-go ends one: its handler's context is
// cancelled (the tool, resource, prompt or completion handler; see
// cancelScope) and mcp-go answers with whatever the handler returns (a
// tool error for a tools/call, audited). Methods without such a handler
// (lists, server/discover) are short and run to their end. A
// subscriptions/listen stream, which mcp-go holds open on that context,
// is ended by cancelling the request's own context instead (the stream
// ends as if the client had closed it, which is how the revision cancels
// over HTTP).
//
// Legacy (session) requests are left to mcp-go: its key holds the session
// id, and bindSession lets a session be used only by the principal (and
// at the environment) that opened it.

// cancelKey names a 2026-07-28 request in flight.
type cancelKey struct {
	e                   *env
	issuer, subject, ag string // the human (humanIssuer) and the agent
	id                  string // mcp.RequestId.String() of the id, as mcp-go keys it
}

// inflightCall is one request in flight; a principal may reuse an id, so
// calls under one key form a list (next, guarded by the table's lock).
// cancel is what ends the request: set at once for the fast path and a
// listen stream, and by cancelScope when a handler starts for a request
// mcp-go serves; a cancel before that is remembered.
type inflightCall struct {
	next      *inflightCall
	mu        sync.Mutex
	cancelled bool
	cancel    context.CancelFunc
}

// fire cancels the call, now or as soon as its handler starts.
func (c *inflightCall) fire() {
	c.mu.Lock()
	c.cancelled = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// bind makes cancel end the call (at once, if it was cancelled already).
func (c *inflightCall) bind(cancel context.CancelFunc) {
	c.mu.Lock()
	c.cancel = cancel
	cancelled := c.cancelled
	c.mu.Unlock()
	if cancelled {
		cancel()
	}
}

// inflightTable is the edge's table of 2026-07-28 requests in flight.
// Entries live exactly as long as their request (or until cancelled), so
// it holds at most the requests the server is serving.
type inflightTable struct {
	mu sync.Mutex
	m  map[cancelKey]*inflightCall
}

func (t *inflightTable) add(k cancelKey, c *inflightCall) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[cancelKey]*inflightCall)
	}
	c.next = t.m[k]
	t.m[k] = c
}

// remove takes c out of the table, if a cancel has not already.
func (t *inflightTable) remove(k cancelKey, c *inflightCall) {
	t.mu.Lock()
	defer t.mu.Unlock()
	head := t.m[k]
	switch {
	case head == nil:
	case head == c:
		if c.next == nil {
			delete(t.m, k)
		} else {
			t.m[k] = c.next
		}
	default:
		for p := head; p.next != nil; p = p.next {
			if p.next == c {
				p.next = c.next
				break
			}
		}
	}
	c.next = nil
}

// cancel ends every request in flight under k and forgets them (as
// mcp-go's table does for a request without a session).
func (t *inflightTable) cancel(k cancelKey) int {
	t.mu.Lock()
	var calls []*inflightCall
	for c := t.m[k]; c != nil; c = c.next {
		calls = append(calls, c)
	}
	delete(t.m, k)
	t.mu.Unlock()
	for _, c := range calls {
		c.fire()
	}
	return len(calls)
}

// size is the number of keys held (for tests).
func (t *inflightTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// cancelKeyOf is the key of request id (an mcp.RequestId.String()) of
// r's principal at r's environment; false without a principal.
func (s *Server) cancelKeyOf(r *http.Request, id string) (cancelKey, bool) {
	p := principalFrom(r.Context())
	if p == nil {
		return cancelKey{}, false
	}
	return cancelKey{e: s.envOf(r.Context()), issuer: humanIssuer(p), subject: p.Subject, ag: p.Agent, id: id}, true
}

// requestKey is the key mcp-go's handleMessage gives request id raw, and
// its handleNotification a notifications/cancelled's requestId raw
// (mcp.RequestId.String() of the id as read: a number through
// mcp.RequestId, an integer within ±(2^53-1) held as a float64). False for
// a notification (no id, or null) or an id mcp-go cannot read. The ids
// clients send (small integers, plain strings) are keyed without decoding.
func requestKey(raw json.RawMessage) (string, bool) {
	if fastIDPattern.Match(raw) {
		return "int64:" + string(raw), true
	}
	if plainString(raw) {
		return "string:" + string(raw[1:len(raw)-1]), true
	}
	return decodedRequestKey(raw)
}

// mustRequestKey is requestKey of an id the fast path took (a string or
// an integer it echoes verbatim, which always has a key).
func mustRequestKey(raw json.RawMessage) string {
	k, _ := requestKey(raw)
	return k
}

// plainString reports whether raw is a JSON string that reads as its own
// bytes: no escapes, no control characters, valid UTF-8.
func plainString(raw []byte) bool {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	in := raw[1 : len(raw)-1]
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(in)
}

// decodedRequestKey is requestKey for any id, decoded as mcp-go decodes it.
func decodedRequestKey(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return "", false
	}
	if n, ok := v.(json.Number); ok {
		var id mcp.RequestId
		if json.Unmarshal([]byte(n), &id) != nil {
			return "", false
		}
		v = id.Value()
		if i, ok := v.(int64); ok && i >= -9007199254740991 && i <= 9007199254740991 {
			v = float64(i)
		}
	}
	if v == nil {
		return "", false
	}
	return mcp.NewRequestId(v).String(), true
}

// cancelSignalKey holds, in a request's context, the *inflightCall whose
// cancel ends that request's handler (cancelScope).
type cancelSignalKey struct{}

// noSessionKey marks, in a request's context, a 2026-07-28 notification
// that mcp-go must see with noSession.
type noSessionKey struct{}

// edgeMessage is what the edge reads of every 2026-07-28 message to decide
// how to track it: encoding/json reads "id" and "method" as mcp-go's
// envelope does.
type edgeMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
}

// trackModern serves a 2026-07-28 POST (not a batch, not taken by the fast
// path) through next with cancellation scoped to its principal: a request
// is registered while in flight; a notification reaches mcp-go with
// noSession, and a notifications/cancelled that mcp-go accepted cancels
// the principal's own requests with that id.
// msg is the edge's reading of body, when it had one (nil: read here).
func (s *Server) trackModern(w http.ResponseWriter, r *http.Request, body []byte, msg *edgeMessage, next http.Handler) {
	decoded := msg != nil
	if !decoded {
		msg = &edgeMessage{}
		decoded = json.Unmarshal(body, msg) == nil
	}
	if decoded {
		if id, ok := requestKey(msg.ID); ok {
			s.serveTracked(w, r, id, msg.Method, next)
			return
		}
	}
	// Anything mcp-go may read as a notification (no id, a null id, or a
	// body the edge cannot read) has no session in mcp-go's eyes.
	r = r.WithContext(context.WithValue(r.Context(), noSessionKey{}, true))
	if !decoded || msg.Method != string(mcp.MethodNotificationCancelled) {
		next.ServeHTTP(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	next.ServeHTTP(sw, r)
	if sw.status != http.StatusAccepted { // refused by mcp-go: it changes nothing
		return
	}
	s.cancelScoped(r, body)
}

// serveTracked serves request id of r's principal through next, registered
// in the table while it is in flight.
func (s *Server) serveTracked(w http.ResponseWriter, r *http.Request, id, method string, next http.Handler) {
	key, ok := s.cancelKeyOf(r, id)
	if !ok {
		next.ServeHTTP(w, r)
		return
	}
	call := &inflightCall{}
	if method == string(mcp.MethodSubscriptionsListen) {
		// mcp-go holds the stream open on the request's context.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		r, call.cancel = r.WithContext(ctx), cancel
	} else {
		r = r.WithContext(context.WithValue(r.Context(), cancelSignalKey{}, call))
	}
	s.inflight.add(key, call)
	defer s.inflight.remove(key, call)
	next.ServeHTTP(w, r)
}

// cancelScoped cancels the requests in flight that notifications/cancelled
// body names, of r's principal at r's environment only. It reads the
// requestId as mcp-go's handleNotification does.
func (s *Server) cancelScoped(r *http.Request, body []byte) {
	var n mcp.JSONRPCNotification
	if json.Unmarshal(body, &n) != nil {
		return
	}
	id, ok := n.Params.AdditionalFields["requestId"]
	if !ok {
		return
	}
	if key, ok := s.cancelKeyOf(r, mcp.NewRequestId(id).String()); ok {
		s.inflight.cancel(key)
	}
}

// mcpContext is the streamable HTTP transport's context func: a message
// the edge marked (a 2026-07-28 notification) gets noSession, so that
// mcp-go's handleNotification keys a cancel by a session no request has.
func mcpContext(m *mcpserver.MCPServer) mcpserver.HTTPContextFunc {
	return func(ctx context.Context, r *http.Request) context.Context {
		if r != nil && r.Context().Value(noSessionKey{}) != nil {
			return m.WithContext(ctx, noSession{})
		}
		return ctx
	}
}

// noSessionID is the session id of noSession: no request can carry it
// (legacy session ids are sessionPrefix + a UUID, and bindSession admits
// only those in the store; 2026-07-28 requests have the empty id).
const noSessionID = "harness: a 2026-07-28 notification has no session"

// noSession is the mcp-go client session of a 2026-07-28 notification.
type noSession struct{}

// noSessionNotifications is never read: nothing is sent to a notification.
var noSessionNotifications = make(chan mcp.JSONRPCNotification)

func (noSession) Initialize()                                         {}
func (noSession) Initialized() bool                                   { return true }
func (noSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return noSessionNotifications }
func (noSession) SessionID() string                                   { return noSessionID }

// noStop is cancelScope's stop when there is nothing to stop.
func noStop() {}

// cancelScope derives the context a handler runs with: when the edge
// registered the request (serveTracked), a cancel of it cancels this
// context, as mcp-go's own cancel would have cancelled the handler's.
// stop must be called when the handler returns.
func cancelScope(ctx context.Context) (context.Context, context.CancelFunc) {
	call, _ := ctx.Value(cancelSignalKey{}).(*inflightCall)
	if call == nil {
		return ctx, noStop
	}
	ctx, cancel := context.WithCancel(ctx)
	call.bind(cancel)
	return ctx, cancel
}

// cancellable wraps a handler (tool, resource, prompt) in cancelScope.
func cancellable[Req, Res any](h func(context.Context, Req) (Res, error)) func(context.Context, Req) (Res, error) {
	return func(ctx context.Context, req Req) (Res, error) {
		ctx, stop := cancelScope(ctx)
		defer stop()
		return h(ctx, req)
	}
}
