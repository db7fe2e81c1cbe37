package mcpfixture

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Name and Version are what the fixture reports as its serverInfo.
const (
	Name    = "harness-mcpfixture"
	Version = "1.0.0"
)

// Option configures a Fixture.
type Option func(*Fixture)

// WithCrashTool adds the tool fixture_crash, which calls crash (the command
// exits the process) — for tests of an upstream that dies mid-call.
func WithCrashTool(crash func()) Option {
	return func(f *Fixture) { f.crash = crash }
}

// Fixture is the conformance server plus the hooks tests use to change it
// while it runs.
type Fixture struct {
	// Server is the mcp-go server; serve it with server.NewStreamableHTTPServer
	// (see NewHTTPHandler) or server.ServeStdio.
	Server *server.MCPServer

	crash    func()
	stateKey []byte

	mu      sync.Mutex
	dynamic int // test_trigger_*_change counter
}

// New builds the fixture server.
func New(opts ...Option) *Fixture {
	f := &Fixture{stateKey: make([]byte, 32)}
	if _, err := rand.Read(f.stateKey); err != nil {
		panic(fmt.Sprintf("mcpfixture: random state key: %v", err))
	}
	for _, o := range opts {
		o(f)
	}
	f.Server = server.NewMCPServer(Name, Version,
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(true, true),
		server.WithPromptCapabilities(true),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(completions{}),
		server.WithLogging(),
		server.WithElicitation(),
		server.WithRoots(),
	)
	f.Server.EnableSampling()
	f.addTools()
	f.addMRTRTools()
	f.addResources()
	f.addPrompts()
	if f.crash != nil {
		f.Server.AddTool(mcp.NewTool("fixture_crash", mcp.WithDescription("Crashes the fixture server (tests of a dying upstream)")),
			func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				f.crash()
				return mcp.NewToolResultError("crash hook returned"), nil
			})
	}
	return f
}

// SetDescription replaces the description of the tool name, as a server
// that changes a definition after it was trusted would, and tells every
// connected client with notifications/tools/list_changed.
func (f *Fixture) SetDescription(name, description string) error {
	t := f.Server.GetTool(name)
	if t == nil {
		return fmt.Errorf("set description: no tool %q", name)
	}
	tool := t.Tool
	tool.Description = description
	f.Server.AddTool(tool, t.Handler) // replaces it and sends list_changed
	return nil
}

// SetDescriptions applies SetDescription to every entry of descs.
func (f *Fixture) SetDescriptions(descs map[string]string) error {
	var errs []error
	for name, d := range descs {
		if t := f.Server.GetTool(name); t != nil && t.Tool.Description == d {
			continue
		}
		errs = append(errs, f.SetDescription(name, d))
	}
	return errors.Join(errs...)
}

// rpcError is a typed JSON-RPC error a handler may return (through
// server.NewHandlerError).
type rpcError struct {
	code int
	msg  string
	data any
}

func (e rpcError) Error() string { return e.msg }

func (e rpcError) JSONRPCError() mcp.JSONRPCError {
	return mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, Error: mcp.JSONRPCErrorDetails{Code: e.code, Message: e.msg, Data: e.data}}
}

// clientCaps returns the capabilities the client declared: per request in
// 2026-07-28, at initialize before.
func clientCaps(ctx context.Context) mcp.ClientCapabilities {
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern && info.ClientCapabilities != nil {
		return *info.ClientCapabilities
	}
	if s, ok := server.ClientSessionFromContext(ctx).(server.SessionWithClientInfo); ok {
		return s.GetClientCapabilities()
	}
	return mcp.ClientCapabilities{}
}

// sealState returns an integrity-protected requestState carrying v.
func (f *Fixture) sealState(v map[string]any) string {
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	v["nonce"] = base64.RawURLEncoding.EncodeToString(nonce)
	body, _ := json.Marshal(v)
	m := hmac.New(sha256.New, f.stateKey)
	m.Write(body)
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// errTamperedState is the answer to a requestState that fails its check.
var errTamperedState = server.NewHandlerError(rpcError{code: mcp.INVALID_PARAMS, msg: "requestState failed its integrity check"})

// openState checks and decodes a requestState made by sealState; "" is no
// state (nil, nil).
func (f *Fixture) openState(s string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	body64, mac64, ok := strings.Cut(s, ".")
	if !ok {
		return nil, errTamperedState
	}
	body, err1 := base64.RawURLEncoding.Strict().DecodeString(body64)
	mac, err2 := base64.RawURLEncoding.Strict().DecodeString(mac64)
	if err1 != nil || err2 != nil {
		return nil, errTamperedState
	}
	m := hmac.New(sha256.New, f.stateKey)
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return nil, errTamperedState
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, errTamperedState
	}
	return v, nil
}

// completions completes test_prompt_with_arguments' arguments.
type completions struct{}

func (completions) CompletePromptArgument(_ context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	values := []string{}
	if prompt == "test_prompt_with_arguments" {
		for _, v := range []string{"hello", "help", "world"} {
			if strings.HasPrefix(v, arg.Value) {
				values = append(values, v)
			}
		}
	}
	return &mcp.Completion{Values: values, Total: len(values)}, nil
}
