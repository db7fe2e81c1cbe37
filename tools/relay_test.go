package tools

import (
	"context"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// TestUnattributedRelayNeedsASoleCall: an upstream message or request that
// names no call reaches a client only while exactly one call is in flight
// on that connection; with two agents' calls in flight it is dropped or
// refused, never handed to the newer call's client.
func TestUnattributedRelayNeedsASoleCall(t *testing.T) {
	m := &mcpConn{progress: map[string]*MCPCall{}}
	if m.soleCall() != nil {
		t.Fatal("a call with none in flight")
	}
	var gotA, gotB int
	a := &MCPCall{Notify: func(string, map[string]any) { gotA++ }}
	b := &MCPCall{Notify: func(string, map[string]any) { gotB++ }}
	_, endA := m.begin(a)
	if m.soleCall() != a {
		t.Fatal("the only call in flight is not chosen")
	}
	_, endB := m.begin(b)
	if m.soleCall() != nil {
		t.Fatal("with two calls in flight one was chosen")
	}
	n := mcp.JSONRPCNotification{}
	n.Method = "notifications/message"
	n.Params.AdditionalFields = map[string]any{"level": "info", "data": "secret of a"}
	m.notification(n)
	if gotA+gotB != 0 {
		t.Fatalf("an unattributed log message was relayed with two calls in flight (a %d, b %d)", gotA, gotB)
	}
	if _, err := (relayHandler{m}).CreateMessage(context.Background(), mcp.CreateMessageRequest{}); err == nil {
		t.Fatal("an unattributed sampling request was relayed with two calls in flight")
	}
	endA()
	m.notification(n)
	if gotB != 1 || gotA != 0 {
		t.Fatalf("with one call left the message should reach it (a %d, b %d)", gotA, gotB)
	}
	endB()
}
