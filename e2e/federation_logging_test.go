package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// TestFederationLogLevelPerSession: logging/setLevel of one agent's
// session filters only the upstream log messages relayed to that session;
// the upstream stays at debug, so another agent's level is untouched.
func TestFederationLogLevelPerSession(t *testing.T) {
	proxy := conformanceGateway(t, startFixture(t, buildFixture(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type agent struct {
		c    *client.Client
		mu   sync.Mutex
		msgs []any
	}
	connect := func(level mcp.LoggingLevel) *agent {
		t.Helper()
		tr, err := transport.NewStreamableHTTP(proxy + "/mcp")
		if err != nil {
			t.Fatal(err)
		}
		a := &agent{c: client.NewClient(tr, client.WithProtocolVersion("2025-11-25"))}
		if err := a.c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.c.Close() })
		a.c.OnNotification(func(n mcp.JSONRPCNotification) {
			if n.Method == "notifications/message" {
				a.mu.Lock()
				a.msgs = append(a.msgs, n.Params.AdditionalFields["data"])
				a.mu.Unlock()
			}
		})
		init := mcp.InitializeRequest{}
		init.Params.ProtocolVersion = "2025-11-25"
		res, err := a.c.Initialize(ctx, init)
		if err != nil {
			t.Fatal(err)
		}
		if res.Capabilities.Logging == nil {
			t.Fatal("the gateway does not declare logging")
		}
		req := mcp.SetLevelRequest{}
		req.Params.Level = level
		//lint:ignore SA1019 a 2025-11-25 session sets its level so
		if err := a.c.SetLevel(ctx, req); err != nil {
			t.Fatalf("logging/setLevel %s: %v", level, err)
		}
		return a
	}
	quiet := connect(mcp.LoggingLevelError) // the fixture logs at info
	chatty := connect(mcp.LoggingLevelDebug)
	call := func(a *agent) {
		t.Helper()
		req := mcp.CallToolRequest{}
		req.Params.Name = "test_tool_with_logging"
		res, err := a.c.CallTool(ctx, req)
		if err != nil || res.IsError {
			t.Fatalf("test_tool_with_logging: %v %+v", err, res)
		}
	}
	call(quiet)
	call(chatty)
	deadline := time.Now().Add(10 * time.Second)
	for {
		chatty.mu.Lock()
		n := len(chatty.msgs)
		chatty.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the debug session got %d of the 3 info messages", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	quiet.mu.Lock()
	defer quiet.mu.Unlock()
	if len(quiet.msgs) != 0 {
		t.Errorf("the error-level session got info messages: %v", quiet.msgs)
	}
}
