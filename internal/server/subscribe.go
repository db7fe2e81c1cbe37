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

// subscribeHooks makes the gateway serve resources/subscribe and
// unsubscribe when its catalogue can subscribe upstream.
func (s *Server) subscribeHooks(hooks *mcpserver.Hooks) bool {
	sub, ok := s.catalog.(subscriber)
	if !ok {
		return false
	}
	s.subs.byURI = map[string]map[string]string{}
	sub.OnResourceUpdated(s.resourceUpdated)
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
			return s.subscribe(ctx, sub, m.Params.URI)
		case string(mcp.MethodResourcesUnsubscribe):
			s.unsubscribe(ctx, sub, m.Params.URI, sessionOf(ctx))
		}
		return nil
	})
	hooks.AddOnUnregisterSession(func(ctx context.Context, cs mcpserver.ClientSession) {
		s.subs.mu.Lock()
		var uris []string
		for uri, ss := range s.subs.byURI {
			if _, ok := ss[cs.SessionID()]; ok {
				uris = append(uris, uri)
			}
		}
		s.subs.mu.Unlock()
		for _, uri := range uris {
			s.unsubscribe(context.WithoutCancel(ctx), sub, uri, cs.SessionID())
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
func (s *Server) subscribe(ctx context.Context, sub subscriber, uri string) error {
	sid := sessionOf(ctx)
	p := principalFrom(ctx)
	r, t, ok := s.catalog.LookupResource(uri)
	if sid == "" || p == nil || !ok {
		return errors.New("no such resource")
	}
	res := policyResource(uri, r, t)
	if !s.resourceAllowed(ctx, p, res) {
		return errors.New("no such resource")
	}
	s.subs.mu.Lock()
	first := len(s.subs.byURI[uri]) == 0
	if s.subs.byURI[uri] == nil {
		s.subs.byURI[uri] = map[string]string{}
	}
	s.subs.byURI[uri][sid] = res.Upstream
	s.subs.mu.Unlock()
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
		s.subs.mu.Lock()
		delete(s.subs.byURI[uri], sid)
		s.subs.mu.Unlock()
		return errors.New(ref.message)
	}
	return nil
}

// unsubscribe forgets sid's subscription to uri, and the upstream's when
// it was the last.
func (s *Server) unsubscribe(ctx context.Context, sub subscriber, uri, sid string) {
	s.subs.mu.Lock()
	upstream, ok := s.subs.byURI[uri][sid]
	delete(s.subs.byURI[uri], sid)
	last := ok && len(s.subs.byURI[uri]) == 0
	if last {
		delete(s.subs.byURI, uri)
	}
	s.subs.mu.Unlock()
	if !last {
		return
	}
	if err := sub.Subscribe(ctx, upstream, uri, nil, true); err != nil {
		s.log.WarnContext(ctx, "upstream unsubscribe failed", "err", err, "uri", uri)
	}
}

// resourceUpdated relays an upstream's notifications/resources/updated to
// the sessions subscribed to that URI at that upstream.
func (s *Server) resourceUpdated(upstream, uri string) {
	s.subs.mu.Lock()
	var sids []string
	for sid, up := range s.subs.byURI[uri] {
		if up == upstream {
			sids = append(sids, sid)
		}
	}
	s.subs.mu.Unlock()
	for _, sid := range sids {
		_ = s.mcp.SendNotificationToSpecificClient(sid, string(mcp.MethodNotificationResourceUpdated), map[string]any{"uri": uri})
	}
}
