// Package samplemcp is the demo's built-in MCP server, federated next to
// the sample API: a small handbook of Acme's support policies with a
// search tool, the handbook pages as resources and a reply prompt. It is
// served over streamable HTTP on loopback only.
package samplemcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// pages is the handbook: URI path → text.
var pages = map[string]string{
	"refunds":  "Refunds: orders under 100 EUR are refunded by support without approval; above, an admin approves.",
	"shipping": "Shipping: parcels leave within two working days; express within one.",
	"escalate": "Escalation: a ticket open for more than three days goes to the on-call admin.",
}

// New returns the handbook MCP server.
func New() *server.MCPServer {
	s := server.NewMCPServer("acme-handbook", "1.0.0", server.WithToolCapabilities(true),
		server.WithResourceCapabilities(false, true), server.WithPromptCapabilities(true))
	ro, destructive := true, false
	search := mcp.NewTool("search_handbook",
		mcp.WithDescription("Search Acme's support handbook; returns the matching pages."),
		mcp.WithString("query", mcp.Required(), mcp.Description("words to look for")))
	search.Annotations.ReadOnlyHint, search.Annotations.DestructiveHint = &ro, &destructive
	s.AddTool(search, func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		q := strings.ToLower(req.GetString("query", ""))
		var hits []string
		for _, name := range sortedPages() {
			if q == "" || strings.Contains(strings.ToLower(pages[name]), q) {
				hits = append(hits, pages[name])
			}
		}
		if len(hits) == 0 {
			return mcp.NewToolResultText("no page matches " + q), nil
		}
		return mcp.NewToolResultText(strings.Join(hits, "\n")), nil
	})
	for _, name := range sortedPages() {
		uri := "handbook://" + name
		s.AddResource(mcp.NewResource(uri, name, mcp.WithMIMEType("text/plain"), mcp.WithResourceDescription("Handbook page "+name)),
			func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
				return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "text/plain", Text: pages[name]}}, nil
			})
	}
	s.AddPrompt(mcp.NewPrompt("reply_to_customer", mcp.WithPromptDescription("Draft a reply to a customer following the handbook."),
		mcp.WithArgument("topic", mcp.RequiredArgument(), mcp.ArgumentDescription("refunds, shipping or escalate"))),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			topic := req.Params.Arguments["topic"]
			page, ok := pages[topic]
			if !ok {
				return nil, fmt.Errorf("no handbook page %q", topic)
			}
			return mcp.NewGetPromptResult("Reply following the handbook", []mcp.PromptMessage{
				mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Write a short, friendly reply to the customer. Follow this policy:\n"+page)),
			}), nil
		})
	return s
}

func sortedPages() []string {
	names := make([]string, 0, len(pages))
	for n := range pages {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var errNotLoopback = errors.New("the sample MCP server listens on loopback only")

// Start serves the handbook on addr (loopback) at /mcp until ctx ends or
// stop is called; it returns the MCP URL.
func Start(ctx context.Context, addr string) (url string, stop func(context.Context) error, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("sample mcp address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("sample mcp address %q: %w", addr, errNotLoopback)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen for sample mcp: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(New()))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	unhook := context.AfterFunc(ctx, func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/mcp", func(ctx context.Context) error {
		unhook()
		return srv.Shutdown(ctx)
	}, nil
}
