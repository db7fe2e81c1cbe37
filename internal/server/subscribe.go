package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/tools"
)

// Resource subscriptions (2025-11-25 sessions): resources/subscribe of a
// resource the caller may see is passed to the upstream serving it (once
// per URI, whoever asked first), and its notifications/resources/updated
// go to every session subscribed to that URI.

// subscriber is the part of the catalogue that subscribes upstream.
type subscriber interface {
	Subscribe(ctx context.Context, upstream, uri string, c *tools.MCPCall, unsubscribe bool) error
	OnResourceUpdated(f func(upstream, uri string))
}

// subscriptions are the sessions subscribed to each URI.
type subscriptions struct {
	mu    sync.Mutex
	byURI map[string]map[string]string // uri → session id → upstream
}

// subscribeHooks makes e serve resources/subscribe and unsubscribe when
// its catalogue can subscribe upstream.
func (s *Server) subscribeHooks(e *env, hooks *mcpserver.Hooks) bool {
	sub, ok := e.catalog.(subscriber)
	if !ok {
		return false
	}
	e.subs.byURI = map[string]map[string]string{}
	sub.OnResourceUpdated(func(upstream, uri string) { s.resourceUpdated(e, upstream, uri) })
	hooks.AddOnRequestInitialization(func(ctx context.Context, _ any, message any) error {
		raw, ok := message.(json.RawMessage)
		if !ok || !bytes.Contains(raw, []byte("resources/")) {
			return nil
		}
		if info := mcpserver.RequestProtocolInfoFromContext(ctx); (info != nil && info.Modern) || sessionOf(ctx) == "" {
			return nil // no session (2026-07-28 removed the methods): mcp-go answers it
		}
		var m struct {
			Method string `json:"method"`
			Params struct {
				URI string `json:"uri"`
			} `json:"params"`
		}
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		switch m.Method {
		case string(mcp.MethodResourcesSubscribe):
			return s.subscribe(withEnv(ctx, e), e, sub, m.Params.URI)
		case string(mcp.MethodResourcesUnsubscribe):
			s.unsubscribe(ctx, e, sub, m.Params.URI, sessionOf(ctx))
		}
		return nil
	})
	hooks.AddOnUnregisterSession(func(ctx context.Context, cs mcpserver.ClientSession) {
		e.subs.mu.Lock()
		var uris []string
		for uri, ss := range e.subs.byURI {
			if _, ok := ss[cs.SessionID()]; ok {
				uris = append(uris, uri)
			}
		}
		e.subs.mu.Unlock()
		for _, uri := range uris {
			s.unsubscribe(context.WithoutCancel(ctx), e, sub, uri, cs.SessionID())
		}
	})
	return true
}

func sessionOf(ctx context.Context) string {
	if cs := mcpserver.ClientSessionFromContext(ctx); cs != nil {
		return cs.SessionID()
	}
	return ""
}

// subscribe passes a subscription to the upstream serving uri, unless
// the caller may not see that resource (refused as if it did not exist).
func (s *Server) subscribe(ctx context.Context, e *env, sub subscriber, uri string) error {
	sid := sessionOf(ctx)
	p := principalFrom(ctx)
	r, t, ok := e.catalog.LookupResource(uri)
	if sid == "" || p == nil || !ok {
		return errors.New("no such resource")
	}
	res := policyResource(uri, r, t)
	if !s.resourceAllowed(ctx, p, res) {
		return errors.New("no such resource")
	}
	e.subs.mu.Lock()
	first := len(e.subs.byURI[uri]) == 0
	if e.subs.byURI[uri] == nil {
		e.subs.byURI[uri] = map[string]string{}
	}
	e.subs.byURI[uri][sid] = res.Upstream
	e.subs.mu.Unlock()
	if !first {
		return nil
	}
	assertion, ref := s.upstreamIdentity(ctx, p, res.Upstream, uri)
	if ref == nil {
		if err := sub.Subscribe(ctx, res.Upstream, uri, &tools.MCPCall{Assertion: assertion}, false); err != nil {
			s.log.WarnContext(ctx, "upstream subscribe failed", "err", err, "uri", uri)
			ref = failed(fmt.Sprintf("upstream %s failed: %s", res.Upstream, mcpUpstreamReason(err)))
		}
	}
	if ref != nil {
		e.subs.mu.Lock()
		delete(e.subs.byURI[uri], sid)
		e.subs.mu.Unlock()
		return errors.New(ref.message)
	}
	return nil
}

// unsubscribe forgets sid's subscription to uri, and the upstream's when
// it was the last.
func (s *Server) unsubscribe(ctx context.Context, e *env, sub subscriber, uri, sid string) {
	e.subs.mu.Lock()
	upstream, ok := e.subs.byURI[uri][sid]
	delete(e.subs.byURI[uri], sid)
	last := ok && len(e.subs.byURI[uri]) == 0
	if last {
		delete(e.subs.byURI, uri)
	}
	e.subs.mu.Unlock()
	if !last {
		return
	}
	if err := sub.Subscribe(ctx, upstream, uri, nil, true); err != nil {
		s.log.WarnContext(ctx, "upstream unsubscribe failed", "err", err, "uri", uri)
	}
}

// resourceUpdated relays an upstream's notifications/resources/updated to
// the sessions subscribed to that URI at that upstream.
func (s *Server) resourceUpdated(e *env, upstream, uri string) {
	e.subs.mu.Lock()
	var sids []string
	for sid, up := range e.subs.byURI[uri] {
		if up == upstream {
			sids = append(sids, sid)
		}
	}
	e.subs.mu.Unlock()
	for _, sid := range sids {
		_ = e.mcp.SendNotificationToSpecificClient(sid, string(mcp.MethodNotificationResourceUpdated), map[string]any{"uri": uri})
	}
}
