package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/authn"
)

// Multi round-trip requests (2026-07-28, SEP-2322) through the gateway: an
// upstream's input_required result goes to the agent with its
// requestState sealed by the gateway, bound to the principal and the call
// (tool and arguments); the agent's retry is a new tools/call, decided
// again, whose sealed requestState is opened (refused unless it is the
// gateway's for this principal and call) and passed on with the agent's
// inputResponses.

// mrtrPrefix starts every requestState the gateway seals for an upstream.
const mrtrPrefix = "hmrtr1."

// mrtrSeal holds the process's key for sealing request states.
type mrtrSeal struct {
	once sync.Once
	key  []byte
}

// errBadState refuses a requestState the gateway did not issue for this
// principal and call.
var errBadState = errors.New("requestState was not issued by the gateway for this caller and call")

func (m *mrtrSeal) mac(p *authn.Principal, tool string, args map[string]any, state string) []byte {
	m.once.Do(func() {
		m.key = make([]byte, 32)
		_, _ = rand.Read(m.key)
	})
	a, _ := json.Marshal(args) // map keys sorted: a canonical form
	digest := sha256.Sum256(a)
	h := hmac.New(sha256.New, m.key)
	// Each field length-prefixed: no byte of one (a NUL in a subject, say)
	// can pass for a boundary and shift the rest into the next field.
	var n [binary.MaxVarintLen64]byte
	for _, part := range []string{"harness-mrtr-v1", p.Subject, humanIssuer(p), p.Agent, tool, string(digest[:]), state} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write([]byte(part))
	}
	return h.Sum(nil)
}

// seal wraps an upstream's requestState for the agent.
func (m *mrtrSeal) seal(p *authn.Principal, tool string, args map[string]any, state string) string {
	enc := base64.RawURLEncoding
	return mrtrPrefix + enc.EncodeToString([]byte(state)) + "." + enc.EncodeToString(m.mac(p, tool, args, state))
}

// open returns the upstream's requestState of a sealed one, or errBadState.
func (m *mrtrSeal) open(p *authn.Principal, tool string, args map[string]any, sealed string) (string, error) {
	enc := base64.RawURLEncoding
	rest, ok := strings.CutPrefix(sealed, mrtrPrefix)
	if !ok {
		return "", errBadState
	}
	s, t, ok := strings.Cut(rest, ".")
	if !ok {
		return "", errBadState
	}
	state, err1 := enc.DecodeString(s)
	tag, err2 := enc.DecodeString(t)
	if err1 != nil || err2 != nil || !hmac.Equal(tag, m.mac(p, tool, args, string(state))) {
		return "", errBadState
	}
	return string(state), nil
}

// upstreamRetry is what of a request's multi round-trip params goes to the
// upstream: nil for a first call, and for a retry answering the gateway's
// own round trip (an approval's requestState, which is not sealed for an
// upstream); the upstream's opened state otherwise, or errBadState.
func (m *mrtrSeal) upstreamRetry(p *authn.Principal, what string, args map[string]any, rt mcp.MultiRoundTripParams) (*mcp.MultiRoundTripParams, error) {
	if rt.RequestState != "" && !strings.HasPrefix(rt.RequestState, mrtrPrefix) {
		return nil, nil
	}
	if rt.RequestState == "" && rt.InputResponses == nil {
		return nil, nil
	}
	if rt.RequestState != "" {
		state, err := m.open(p, what, args, rt.RequestState)
		if err != nil {
			return nil, err
		}
		rt.RequestState = state
	}
	return &rt, nil
}

// rpcErr is a JSON-RPC error answered to the agent as it is.
type rpcErr struct {
	code int
	msg  string
}

func (e rpcErr) Error() string { return e.msg }

func (e rpcErr) JSONRPCError() mcp.JSONRPCError {
	return mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, Error: mcp.JSONRPCErrorDetails{Code: e.code, Message: e.msg}}
}
