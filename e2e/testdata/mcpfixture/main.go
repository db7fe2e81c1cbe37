// Command mcpfixture is an MCP server for the federation tests: over
// streamable HTTP (-http ADDR) or stdio. It counts the calls it serves
// (GET /count?name=X over HTTP) and lets a test change a tool's
// description (POST /describe?text=…) to exercise pinning.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

var (
	mu     sync.Mutex
	counts = map[string]int{}
)

func count(name string) {
	mu.Lock()
	counts[name]++
	mu.Unlock()
}

func echoTool(desc string) mcp.Tool {
	ro := true
	t := mcp.NewTool("echo", mcp.WithDescription(desc), mcp.WithString("text", mcp.Required()))
	t.Annotations.ReadOnlyHint = &ro
	return t
}

func echo(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	count("echo")
	text := req.GetString("text", "")
	who := ""
	if m := req.Params.Meta; m != nil && m.AdditionalFields["harness/assertion"] != nil {
		who = " (assertion in _meta)"
	}
	if h := server.ClientSessionFromContext(ctx); h != nil {
		_ = h
	}
	return &mcp.CallToolResult{Content: []mcp.Content{
		mcp.NewTextContent("echo: " + text + who),
		mcp.NewImageContent("iVBORw0KGgo=", "image/png"),
		mcp.NewResourceLink("docs://public", "public", "", "text/plain"),
	}, StructuredContent: map[string]any{"text": text, "card_number": "4111 1111 1111 1111"}}, nil
}

func build(scheme string) *server.MCPServer {
	s := server.NewMCPServer("mcpfixture", "1", server.WithToolCapabilities(true),
		server.WithResourceCapabilities(false, true), server.WithPromptCapabilities(true), server.WithLogging())
	s.AddTool(echoTool("Echoes its text."), echo)
	s.AddTool(mcp.NewTool("secret_tool", mcp.WithDescription("The policy denies this one.")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			count("secret_tool")
			return mcp.NewToolResultText("secret"), nil
		})
	s.AddTool(mcp.NewTool("progress"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		count("progress")
		if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
			for _, p := range []float64{0, 50, 100} {
				_ = server.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress",
					map[string]any{"progressToken": req.Params.Meta.ProgressToken, "progress": p, "total": 100})
			}
			// mcp-go's stdio server writes notifications from another
			// goroutine than results: let them leave first, as a server
			// still working would.
			time.Sleep(300 * time.Millisecond)
		}
		return mcp.NewToolResultText("progressed"), nil
	})
	s.AddTool(mcp.NewTool("sample", mcp.WithString("prompt")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		count("sample")
		res, err := server.ServerFromContext(ctx).RequestSampling(ctx, mcp.CreateMessageRequest{CreateMessageParams: mcp.CreateMessageParams{
			Messages:  []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(req.GetString("prompt", ""))}},
			MaxTokens: 100,
		}})
		if err != nil {
			return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
		}
		text := ""
		if tc, ok := res.Content.(mcp.TextContent); ok {
			text = tc.Text
		}
		return mcp.NewToolResultText("LLM response: " + text), nil
	})
	s.AddTool(mcp.NewTool("hang"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		count("hang")
		select {
		case <-ctx.Done():
			count("hang_cancelled")
		case <-time.After(time.Minute):
		}
		return mcp.NewToolResultText("late"), nil
	})
	s.AddTool(mcp.NewTool("crash"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		os.Exit(3)
		return nil, nil
	})
	for _, name := range []string{"public", "secret"} {
		uri := scheme + "://" + name
		s.AddResource(mcp.NewResource(uri, name, mcp.WithMIMEType("text/plain")),
			func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
				count(uri)
				return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "text/plain", Text: "content of " + uri + " card 4111 1111 1111 1111"}}, nil
			})
	}
	for _, name := range []string{"greet", "secret_prompt"} {
		s.AddPrompt(mcp.NewPrompt(name, mcp.WithArgument("name")), func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			count(name)
			return mcp.NewGetPromptResult(name, []mcp.PromptMessage{
				mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Hello "+req.Params.Arguments["name"])),
			}), nil
		})
	}
	return s
}

func main() {
	addr := flag.String("http", "", "serve streamable HTTP on this address (default: stdio)")
	scheme := flag.String("scheme", "docs", "the URI scheme of the resources")
	flag.Parse()
	s := build(*scheme)
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "mcpfixture: serving stdio")
		if err := server.ServeStdio(s); err != nil {
			log.Fatal(err)
		}
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(s))
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, counts[r.URL.Query().Get("name")])
	})
	mux.HandleFunc("POST /describe", func(w http.ResponseWriter, r *http.Request) {
		s.AddTool(echoTool(r.URL.Query().Get("text")), echo) // tools/list_changed
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
