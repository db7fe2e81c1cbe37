package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/authn"
)

// TestMRTRRequestStateSealed: an input_required requestState goes to the
// agent sealed; a retry's state opens only for the same principal, tool
// and arguments, and a forged or altered one is refused.
func TestMRTRRequestStateSealed(t *testing.T) {
	var m mrtrSeal
	alice := &authn.Principal{Issuer: "https://idp", Subject: "alice", Agent: "a1"}
	bob := &authn.Principal{Issuer: "https://idp", Subject: "bob", Agent: "a1"}
	args := map[string]any{"q": "x", "n": 1}
	sealed := m.seal(alice, "conf_tool", args, "upstream-state")
	if !strings.Contains(sealed, ".") {
		t.Fatalf("sealed state has no tag: %q", sealed)
	}
	got, err := m.open(alice, "conf_tool", map[string]any{"n": 1, "q": "x"}, sealed)
	if err != nil || got != "upstream-state" {
		t.Fatalf("open(own state) = %q, %v; want the upstream's state", got, err)
	}
	other := m.seal(alice, "conf_tool", args, "other-state")
	otherTag := other[strings.LastIndex(other, ".")+1:]
	forgedState := sealed[:strings.LastIndex(sealed, ".")]
	tests := []struct {
		name   string
		p      *authn.Principal
		tool   string
		args   map[string]any
		sealed string
	}{
		{"another principal", bob, "conf_tool", args, sealed},
		{"another tool", alice, "conf_other", args, sealed},
		{"other arguments", alice, "conf_tool", map[string]any{"q": "y", "n": 1}, sealed},
		{"raw upstream state", alice, "conf_tool", args, "upstream-state"},
		{"state swapped under another tag", alice, "conf_tool", args, forgedState + "." + otherTag},
		{"tag altered", alice, "conf_tool", args, sealed[:len(sealed)-2] + "AA"},
		{"empty", alice, "conf_tool", args, ""},
		{"prefix only", alice, "conf_tool", args, mrtrPrefix},
		// The MAC's fields are length-prefixed: a NUL inside one field
		// cannot shift bytes into the next (subject "alice\x00x" at
		// issuer "i" against subject "alice" at issuer "x\x00i").
		{"field boundary shifted", &authn.Principal{Issuer: "x\x00i", Subject: "alice", Agent: "a1"}, "conf_tool", args,
			m.seal(&authn.Principal{Issuer: "i", Subject: "alice\x00x", Agent: "a1"}, "conf_tool", args, "upstream-state")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.open(tt.p, tt.tool, tt.args, tt.sealed); !errors.Is(err, errBadState) {
				t.Fatalf("open = %v; want errBadState", err)
			}
		})
	}
}

// TestMRTRUpstreamRetry: only a state the gateway sealed (or answers
// without one) reach the upstream; a state not sealed for an upstream
// (the gateway's own approval round trip) leaves the upstream call fresh.
func TestMRTRUpstreamRetry(t *testing.T) {
	var m mrtrSeal
	p := &authn.Principal{Issuer: "https://idp", Subject: "alice"}
	args := map[string]any{"q": "x"}
	answers := mcp.InputResponses{"a": mcp.InputResponse{}}
	if r, err := m.upstreamRetry(p, "t", args, mcp.MultiRoundTripParams{}); r != nil || err != nil {
		t.Fatalf("first call: %+v, %v", r, err)
	}
	if r, err := m.upstreamRetry(p, "t", args, mcp.MultiRoundTripParams{RequestState: "approvalid.mac", InputResponses: answers}); r != nil || err != nil {
		t.Fatalf("approval retry: %+v, %v; want nothing passed on", r, err)
	}
	r, err := m.upstreamRetry(p, "t", args, mcp.MultiRoundTripParams{RequestState: m.seal(p, "t", args, "st"), InputResponses: answers})
	if err != nil || r == nil || r.RequestState != "st" || len(r.InputResponses) != 1 {
		t.Fatalf("sealed retry: %+v, %v", r, err)
	}
	if _, err := m.upstreamRetry(p, "t", args, mcp.MultiRoundTripParams{RequestState: mrtrPrefix + "c3Q.AAAA"}); !errors.Is(err, errBadState) {
		t.Fatalf("forged sealed-looking state: %v; want errBadState", err)
	}
}

func FuzzMRTROpen(f *testing.F) {
	var m mrtrSeal
	p := &authn.Principal{Issuer: "https://idp", Subject: "alice"}
	f.Add(m.seal(p, "t", nil, "s"))
	f.Add("")
	f.Add(".")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, sealed string) {
		state, err := m.open(p, "t", nil, sealed)
		if err != nil && (!errors.Is(err, errBadState) || state != "") {
			t.Fatalf("open = %q, %v; want errBadState and no state", state, err)
		}
	})
}
