package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// TestMain doubles as a stdio MCP server: a command upstream of these
// tests runs the test binary with HARNESS_TEST_STDIO_MCP set.
func TestMain(m *testing.M) {
	if os.Getenv("HARNESS_TEST_STDIO_MCP") != "" {
		srv := fixture(nil)
		if err := server.ServeStdio(srv); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fixture is a small MCP server: tools (one with an invalid schema),
// a resource, a template and a prompt. seen, when set, records the
// assertion each call carried (HTTP header or _meta).
func fixture(seen *sync.Map) *server.MCPServer {
	s := server.NewMCPServer("fixture", "1", server.WithToolCapabilities(true),
		server.WithResourceCapabilities(false, true), server.WithPromptCapabilities(true), server.WithLogging())
	ro := true
	echo := mcp.NewTool("echo", mcp.WithDescription("Echoes its text."), mcp.WithString("text", mcp.Required()),
		mcp.WithOutputSchema[map[string]any]())
	echo.Annotations.ReadOnlyHint = &ro
	s.AddTool(echo, func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if seen != nil {
			if m := req.Params.Meta; m != nil && m.AdditionalFields[AssertionMeta] != nil {
				seen.Store("meta", m.AdditionalFields[AssertionMeta])
			}
		}
		text := req.GetString("text", "")
		return &mcp.CallToolResult{
			Content:           []mcp.Content{mcp.NewTextContent(text), mcp.NewImageContent("iVBORw0KGgo=", "image/png")},
			StructuredContent: map[string]any{"text": text},
		}, nil
	})
	s.AddTool(mcp.NewToolWithRawSchema("bad_schema", "", json.RawMessage(`{"type":"string"}`)),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("no"), nil
		})
	s.AddTool(mcp.NewTool("hang", mcp.WithDescription("Never answers.")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	s.AddTool(mcp.NewTool("crash"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		os.Exit(3)
		return nil, nil
	})
	s.AddTool(mcp.NewTool("progress"), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
			for _, p := range []float64{50, 100} {
				_ = server.ServerFromContext(ctx).SendNotificationToClient(ctx, "notifications/progress",
					map[string]any{"progressToken": req.Params.Meta.ProgressToken, "progress": p, "total": 100})
			}
		}
		return mcp.NewToolResultText("done"), nil
	})
	s.AddResource(mcp.NewResource("test://static", "static", mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: "test://static", MIMEType: "text/plain", Text: "static text"}}, nil
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate("test://items/{id}", "item"),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, Text: "item"}}, nil
		})
	s.AddPrompt(mcp.NewPrompt("greet", mcp.WithArgument("name")), func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return mcp.NewGetPromptResult("greeting", []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Hello "+req.Params.Arguments["name"])),
		}), nil
	})
	return s
}

// httpFixture serves s over streamable HTTP on ln, recording the
// Authorization and Harness-Assertion headers of tools/call requests.
func httpFixture(t *testing.T, s *server.MCPServer, ln net.Listener, seen *sync.Map) *httptest.Server {
	t.Helper()
	h := server.NewStreamableHTTPServer(s)
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" && seen != nil {
			seen.Store("authorization", a)
		}
		if a := r.Header.Get("Harness-Assertion"); a != "" && seen != nil {
			seen.Store("harness-assertion", a)
		}
		h.ServeHTTP(w, r)
	}))
	if ln != nil {
		hs.Listener.Close()
		hs.Listener = ln
	}
	hs.Start()
	t.Cleanup(hs.Close)
	return hs
}

func newTestCatalog(t *testing.T, ups ...Upstream) *Catalog {
	t.Helper()
	c := NewCatalog(ups, nil, nil)
	t.Cleanup(c.Close)
	return c
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMCPUpstreamHTTP(t *testing.T) {
	var seen sync.Map
	hs := httpFixture(t, fixture(nil), nil, &seen)
	c := newTestCatalog(t, Upstream{Name: "docs", MCP: hs.URL + "/mcp", Prefix: "docs_", Timeout: 5 * time.Second})
	err := c.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	echo, _, ok := c.Lookup("docs_echo")
	if !ok || echo.Kind != KindMCP || echo.Operation != "echo" || !echo.ReadOnly || echo.Digest == "" || echo.OutputSchema == nil {
		t.Fatalf("docs_echo = %+v", echo)
	}
	if echo.Annotations["readOnlyHint"] != true {
		t.Errorf("annotations = %v", echo.Annotations)
	}
	if _, _, ok := c.Lookup("docs_bad_schema"); ok {
		t.Error("a tool with an input schema that is not an object was served")
	}
	if len(c.Resources()) != 1 || len(c.ResourceTemplates()) != 1 || len(c.Prompts()) != 1 || c.Prompts()[0].Name != "docs_greet" {
		t.Errorf("resources %d templates %d prompts %v", len(c.Resources()), len(c.ResourceTemplates()), c.Prompts())
	}
	if r, tpl, ok := c.LookupResource("test://items/7"); !ok || r != nil || tpl.Upstream != "docs" {
		t.Errorf("template lookup: %v %v %v", r, tpl, ok)
	}
	if _, _, ok := c.LookupResource("test://elsewhere"); ok {
		t.Error("an unlisted URI was routed")
	}

	res, err := c.CallMCP(context.Background(), echo, map[string]any{"text": "hi"}, &MCPCall{Assertion: "assert-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Content) != 2 || res.Content[0].(mcp.TextContent).Text != "hi" {
		t.Errorf("result = %+v", res)
	}
	if _, ok := res.Content[1].(mcp.ImageContent); !ok {
		t.Errorf("image content lost: %T", res.Content[1])
	}
	if a, _ := seen.Load("authorization"); a != "Bearer assert-1" {
		t.Errorf("Authorization = %v", a)
	}
	rr, err := c.ReadResource(context.Background(), "docs", "test://static", nil)
	if err != nil || rr.Contents[0].(mcp.TextResourceContents).Text != "static text" {
		t.Errorf("read: %v %+v", err, rr)
	}
	p, _ := c.LookupPrompt("docs_greet")
	pr, err := c.GetPrompt(context.Background(), p, map[string]string{"name": "Ada"}, nil)
	if err != nil || pr.Messages[0].Content.(mcp.TextContent).Text != "Hello Ada" {
		t.Errorf("prompt: %v %+v", err, pr)
	}

	// Progress of the call is relayed with the agent's own token.
	var got []map[string]any
	var mu sync.Mutex
	prog, _, _ := c.Lookup("docs_progress")
	_, err = c.CallMCP(context.Background(), prog, nil, &MCPCall{ProgressToken: "agent-tok", Notify: func(method string, params map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		if method == "notifications/progress" {
			got = append(got, params)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "progress relayed", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	if got[0]["progressToken"] != "agent-tok" {
		t.Errorf("progress = %v", got)
	}
}

func TestMCPUpstreamAssertionHeaderWhenAuthorizationConfigured(t *testing.T) {
	var seen sync.Map
	hs := httpFixture(t, fixture(nil), nil, &seen)
	c := newTestCatalog(t, Upstream{Name: "docs", MCP: hs.URL + "/mcp", Headers: map[string]string{"Authorization": "Bearer static"}, Timeout: 5 * time.Second})
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	echo, _, _ := c.Lookup("echo")
	if _, err := c.CallMCP(context.Background(), echo, map[string]any{"text": "x"}, &MCPCall{Assertion: "assert-2"}); err != nil {
		t.Fatal(err)
	}
	a, _ := seen.Load("authorization")
	h, _ := seen.Load("harness-assertion")
	if a != "Bearer static" || h != "assert-2" {
		t.Errorf("Authorization %v, Harness-Assertion %v", a, h)
	}
}

func TestMCPUpstreamListChangedAndRestart(t *testing.T) {
	s := fixture(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	hs := httpFixture(t, s, ln, nil)
	c := newTestCatalog(t, Upstream{Name: "docs", MCP: hs.URL + "/mcp", Prefix: "d_", Timeout: 5 * time.Second})
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := c.Version()
	s.AddTool(mcp.NewTool("added"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("new"), nil
	})
	eventually(t, "the new tool is listed after list_changed", func() bool { _, _, ok := c.Lookup("d_added"); return ok })
	if c.Version() == v {
		t.Error("version did not change")
	}

	// The upstream restarts (a new process: sessions forgotten).
	hs.CloseClientConnections()
	hs.Close()
	eventually(t, "the catalogue reports the upstream down", func() bool { return c.Status()["docs"] != nil })
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	httpFixture(t, fixture(nil), ln2, nil)
	echo, _, _ := c.Lookup("d_echo")
	eventually(t, "calls work after the upstream restarted", func() bool {
		_, err := c.CallMCP(context.Background(), echo, map[string]any{"text": "again"}, nil)
		return err == nil && c.Status()["docs"] == nil
	})
}

func TestMCPUpstreamCommand(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCatalog(t, Upstream{Name: "files", Command: []string{exe}, Env: map[string]string{"HARNESS_TEST_STDIO_MCP": "1"}, Prefix: "f_", Timeout: 10 * time.Second})
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	echo, _, ok := c.Lookup("f_echo")
	if !ok {
		t.Fatal("no f_echo")
	}
	res, err := c.CallMCP(context.Background(), echo, map[string]any{"text": "stdio"}, &MCPCall{Assertion: "a3"})
	if err != nil || res.Content[0].(mcp.TextContent).Text != "stdio" {
		t.Fatalf("call: %v %+v", err, res)
	}
	// The server crashes: the call fails, the upstream is reported down,
	// then restarted and serving again.
	crash, _, _ := c.Lookup("f_crash")
	if _, err := c.CallMCP(context.Background(), crash, nil, nil); err == nil {
		t.Error("a call whose server crashed succeeded")
	}
	eventually(t, "the process is restarted and serves", func() bool {
		_, err := c.CallMCP(context.Background(), echo, map[string]any{"text": "back"}, nil)
		return err == nil
	})
}

func TestMCPUpstreamHostile(t *testing.T) {
	t.Run("huge tool list", func(t *testing.T) {
		s := server.NewMCPServer("huge", "1", server.WithToolCapabilities(false), server.WithPaginationLimit(500))
		for i := range MaxListItems + 10 {
			s.AddTool(mcp.NewTool(fmt.Sprintf("t%05d", i)), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return nil, nil })
		}
		hs := httpFixture(t, s, nil, nil)
		c := newTestCatalog(t, Upstream{Name: "huge", MCP: hs.URL + "/mcp", Timeout: 10 * time.Second})
		err := c.Refresh(context.Background())
		if err == nil || !strings.Contains(err.Error(), "more than 2000 items") {
			t.Errorf("err = %v", err)
		}
		if len(c.Tools()) != 0 || c.Status()["huge"] == nil {
			t.Errorf("tools %d status %v", len(c.Tools()), c.Status()["huge"])
		}
	})
	t.Run("not JSON-RPC", func(t *testing.T) {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`<html>hello</html>`))
		}))
		t.Cleanup(hs.Close)
		c := newTestCatalog(t, Upstream{Name: "junk", MCP: hs.URL, Timeout: 2 * time.Second})
		if err := c.Refresh(context.Background()); err == nil || c.Status()["junk"] == nil {
			t.Errorf("a server that does not speak JSON-RPC was accepted: %v", err)
		}
	})
	t.Run("never answers", func(t *testing.T) {
		hs := httpFixture(t, fixture(nil), nil, nil)
		c := newTestCatalog(t, Upstream{Name: "slow", MCP: hs.URL + "/mcp", Prefix: "slow_", Timeout: 500 * time.Millisecond})
		if err := c.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		hang, _, _ := c.Lookup("slow_hang")
		_, err := c.CallMCP(context.Background(), hang, nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want a deadline", err)
		}
	})
	t.Run("name clash", func(t *testing.T) {
		a := httpFixture(t, fixture(nil), nil, nil)
		b := httpFixture(t, fixture(nil), nil, nil)
		c := newTestCatalog(t,
			Upstream{Name: "one", MCP: a.URL + "/mcp", Timeout: 5 * time.Second},
			Upstream{Name: "two", MCP: b.URL + "/mcp", Timeout: 5 * time.Second})
		err := c.Refresh(context.Background())
		if !errors.Is(err, ErrNameClash) || !strings.Contains(err.Error(), `"echo" is also served by upstream "one"`) {
			t.Errorf("err = %v", err)
		}
	})
}
