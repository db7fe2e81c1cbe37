package tools

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// ErrNotMCP reports an MCP operation asked of an upstream that is not an
// MCP server.
var ErrNotMCP = errors.New("not an MCP upstream")

// Resources returns every resource of the MCP upstreams, sorted by URI.
func (c *Catalog) Resources() []*Resource { return slices.Clone(c.snap.Load().resources) }

// ResourceTemplates returns every resource template of the MCP upstreams.
func (c *Catalog) ResourceTemplates() []*ResourceTemplate {
	return slices.Clone(c.snap.Load().templates)
}

// Prompts returns every prompt of the MCP upstreams, sorted by name.
func (c *Catalog) Prompts() []*Prompt { return slices.Clone(c.snap.Load().prompts) }

// LookupPrompt finds a prompt by the gateway's name for it.
func (c *Catalog) LookupPrompt(name string) (*Prompt, bool) {
	p, ok := c.snap.Load().byPrompt[name]
	return p, ok
}

// LookupResource finds what serves uri: a listed resource, or else the
// first template (in upstream order) that matches it. Only an upstream
// that listed the URI or a matching template is ever asked for it.
func (c *Catalog) LookupResource(uri string) (*Resource, *ResourceTemplate, bool) {
	s := c.snap.Load()
	if r, ok := s.resByURI[uri]; ok {
		return r, nil, true
	}
	if len(uri) > maxURI {
		return nil, nil, false
	}
	for _, t := range s.templates {
		if t.URITemplate.Regexp().MatchString(uri) {
			return nil, t, true
		}
	}
	return nil, nil, false
}

func (c *Catalog) conn(upstream string) (*mcpConn, error) {
	m := c.conns[upstream]
	if m == nil {
		return nil, fmt.Errorf("upstream %q: %w", upstream, ErrNotMCP)
	}
	return m, nil
}

// CallMCP calls tool t of an MCP upstream with args. A JSON-RPC error of
// the upstream, or a transport failure, is an error naming the upstream;
// a tool error is a result with IsError.
func (c *Catalog) CallMCP(ctx context.Context, t *Tool, args map[string]any, call *MCPCall) (*mcp.CallToolResult, error) {
	m, err := c.conn(t.Upstream)
	if err != nil {
		return nil, err
	}
	return m.callTool(ctx, t, args, call)
}

// ReadResource reads uri at the named MCP upstream.
func (c *Catalog) ReadResource(ctx context.Context, upstream, uri string, call *MCPCall) (*mcp.ReadResourceResult, error) {
	m, err := c.conn(upstream)
	if err != nil {
		return nil, err
	}
	return m.readResource(ctx, uri, call)
}

// GetPrompt renders prompt p at its upstream with args.
func (c *Catalog) GetPrompt(ctx context.Context, p *Prompt, args map[string]string, call *MCPCall) (*mcp.GetPromptResult, error) {
	m, err := c.conn(p.Upstream)
	if err != nil {
		return nil, err
	}
	return m.getPrompt(ctx, p, args, call)
}

// Complete asks the named upstream for completions of params, whose
// reference already names the server's own prompt or template.
func (c *Catalog) Complete(ctx context.Context, upstream string, params mcp.CompleteParams, call *MCPCall) (*mcp.CompleteResult, error) {
	m, err := c.conn(upstream)
	if err != nil {
		return nil, err
	}
	return m.complete(ctx, params, call)
}

// ErrNoSubscribe reports a resources/subscribe for an upstream that does
// not offer subscriptions.
var ErrNoSubscribe = errors.New("the upstream does not offer resource subscriptions")

// OnResourceUpdated sets f to receive every notifications/resources/updated
// of the MCP upstreams (from any goroutine).
func (c *Catalog) OnResourceUpdated(f func(upstream, uri string)) { c.onUpdated.Store(&f) }

func (c *Catalog) resourceUpdated(upstream, uri string) {
	if f := c.onUpdated.Load(); f != nil {
		(*f)(upstream, uri)
	}
}

// Subscribe asks the named upstream for notifications/resources/updated
// of uri (over its 2025-11-25 connection: later revisions have no
// resources/subscribe); unsubscribe ends that.
func (c *Catalog) Subscribe(ctx context.Context, upstream, uri string, call *MCPCall, unsubscribe bool) error {
	m, err := c.conn(upstream)
	if err != nil {
		return err
	}
	if call == nil {
		call = &MCPCall{}
	}
	call.Legacy = true
	return m.do(ctx, call, func(ctx context.Context, cli *client.Client, _ string) error {
		if caps := cli.GetServerCapabilities(); caps.Resources == nil || !caps.Resources.Subscribe {
			return ErrNoSubscribe
		}
		if unsubscribe {
			req := mcp.UnsubscribeRequest{}
			req.Params.URI = uri
			//lint:ignore SA1019 a 2025-11-25 connection unsubscribes by request
			return cli.Unsubscribe(ctx, req)
		}
		req := mcp.SubscribeRequest{}
		req.Params.URI = uri
		//lint:ignore SA1019 a 2025-11-25 connection subscribes by request
		return cli.Subscribe(ctx, req)
	})
}
