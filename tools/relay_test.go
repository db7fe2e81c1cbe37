package tools

import (
	"context"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
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

// TestUnattributedRelayCountsEveryCall: a call with nothing to relay (an
// agent's resources/subscribe, a catalogue listing) is still a call in
// flight: while it runs beside an agent's call, a message that names no
// call may have come from it and must not reach the other agent's client.
func TestUnattributedRelayCountsEveryCall(t *testing.T) {
	m := &mcpConn{progress: map[string]*MCPCall{}, cli: &client.Client{}, up: Upstream{Name: "u", Timeout: 5 * time.Second}}
	var gotA int
	a := &MCPCall{Notify: func(string, map[string]any) { gotA++ }}
	n := mcp.JSONRPCNotification{}
	n.Method = "notifications/message"
	n.Params.AdditionalFields = map[string]any{"level": "info", "data": "from b's call"}
	err := m.do(context.Background(), a, func(ctx context.Context, _ *client.Client, _ string) error {
		return m.do(ctx, &MCPCall{Assertion: "agent-b"}, func(context.Context, *client.Client, string) error {
			if c := m.soleCall(); c != nil {
				t.Errorf("with two calls in flight soleCall chose %p (a is %p)", c, a)
			}
			m.notification(n)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if gotA != 0 {
		t.Fatalf("a message during another call reached agent a's client (%d)", gotA)
	}
	if len(m.calls) != 0 {
		t.Fatalf("calls left registered: %d", len(m.calls))
	}
}
