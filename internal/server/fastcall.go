package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/tools"
)

// The tools/call fast path (issue 20). mcp-go v1.6.0 serves a 2026-07-28
// tools/call by decoding the body three times, starting a notification
// goroutine per POST, and encoding the result through layers of
// json.RawMessage that re-compact the (already compact) upstream body at
// every level. For the one request shape that dominates a gateway's
// traffic — a single 2026-07-28 tools/call of an OpenAPI tool, with
// nothing in _meta but the protocol's own three keys — fastCall decodes
// the request once, runs the very handler mcp-go would run (the pipeline,
// s.callTool, found through mcp-go's own tool table) with the context
// values the pipeline reads, and writes the response bytes directly.
//
// It takes a request only when every check mcp-go applies is known to
// pass; anything else — another method or era, a batch, a notification,
// wrong or missing headers, _meta with a progress token or other keys, a
// multi round-trip retry, a tool it does not know or an MCP upstream's
// tool, a Host the DNS-rebinding guard might refuse — goes to mcp-go
// untouched, with the body re-supplied. The answer is then the one mcp-go
// would give (compared by TestFastCallDifferential and
// FuzzFastCallEquivalence).

// fastEnvelope is one JSON-RPC tools/call request, decoded once.
type fastEnvelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  *fastParams     `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// fastParams is the params of mcp.CallToolParams.UnmarshalJSON, decoded
// in the same pass as the envelope; callParams makes them the
// mcp.CallToolParams that method would have made, arguments decoded as it
// decodes them.
type fastParams struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Meta      *mcp.Meta       `json:"_meta,omitempty"`
	Task      *mcp.TaskParams `json:"task,omitempty"`
	mcp.MultiRoundTripParams
}

func (p *fastParams) callParams() (mcp.CallToolParams, error) {
	out := mcp.CallToolParams{Name: p.Name, Meta: p.Meta, Task: p.Task, MultiRoundTripParams: p.MultiRoundTripParams}
	if len(p.Arguments) == 0 {
		return out, nil
	}
	out.RawArguments = p.Arguments
	return out, json.Unmarshal(p.Arguments, &out.Arguments)
}

// fastIDPattern is the ids the fast path echoes verbatim: integers mcp-go
// turns into the same number (|n| < 2^53, no sign on zero, no exponent or
// fraction). Any other number goes to mcp-go.
var fastIDPattern = regexp.MustCompile(`^(?:0|-?[1-9][0-9]{0,14})$`)

// fastMetaKeys is what a fast-path request's _meta may hold: the protocol
// version, client info and capabilities, which mcp-go reads into
// RequestProtocolInfo and nothing else.
var fastMetaKeys = []string{mcp.MetaKeyProtocolVersion, mcp.MetaKeyClientInfo, mcp.MetaKeyClientCapabilities}

// fastCall answers r, a POST whose body the edge has read (and found not
// to be a batch), when it is a request the fast path takes, and reports
// whether it did; nothing is written when it did not. It runs before the
// edge's own decoding, whose work — the message id for error rewrites,
// the _meta fix of notifications, the session-era checks — concerns no
// request the fast path takes (it sets the id itself).
func (s *Server) fastCall(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if s.fastCallOff.Load() || r.Header.Get(mcp.HeaderProtocolVersion) != mcp.ProtocolVersion20260728 {
		return false
	}
	// mcp-go's DNS-rebinding guard is on unless newMCP turned it off;
	// while it is on, only loopback Host headers (which it always lets
	// through) take the fast path.
	if s.rebindGuard && !mcpLoopbackHost(r.Host) {
		return false
	}
	return s.serveFastCall(w, r, body)
}

// fastPlan is a request the fast path has taken: everything needed to run
// the handler and answer.
type fastPlan struct {
	id      json.RawMessage
	req     mcp.CallToolRequest
	info    *mcpserver.RequestProtocolInfo
	handler mcpserver.ToolHandlerFunc
	e       *env
}

// serveFastCall answers r when it is a request the fast path takes, and
// reports whether it did. Nothing is written when it returns false.
func (s *Server) serveFastCall(w http.ResponseWriter, r *http.Request, body []byte) bool {
	plan, ok := s.planFastCall(r, body)
	if !ok {
		return false
	}
	s.fastServed.Add(1)
	if st := rpcStateFrom(r.Context()); st != nil {
		st.id = plan.id // as the edge would have set it
	}
	ctx := mcpserver.WithSupportedProtocolVersions(r.Context(), mcpserver.FilterSupportedVersions(plan.e.http))
	ctx = mcpserver.WithRequestProtocolInfo(ctx, plan.info)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A notifications/cancelled of the same principal naming this id ends
	// the call, as it ends a call mcp-go serves (cancel.go).
	if key, ok := s.cancelKeyOf(r, mustRequestKey(plan.id)); ok {
		call := &inflightCall{cancel: cancel}
		s.inflight.add(key, call)
		defer s.inflight.remove(key, call)
	}
	res, err := recoverCall(ctx, plan.handler, plan.req)
	if r.Context().Err() != nil {
		return true // the client is gone: mcp-go writes nothing either
	}
	if err != nil {
		s.writeFastError(w, plan.id, err)
		return true
	}
	if res == nil {
		s.writeFastJSON(w, http.StatusOK, mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: fastRequestID(plan.id),
			Error: mcp.NewJSONRPCErrorDetails(mcp.INTERNAL_ERROR, "tool '"+plan.req.Params.Name+"' handler returned no result", nil)})
		return true
	}
	s.writeFastResult(w, plan.id, res)
	return true
}

// planFastCall decides whether r takes the fast path: every check of
// mcp-go's handlePost, validateModernRequest, HandleMessage and
// handleToolCall that could refuse or divert it must be known to pass.
func (s *Server) planFastCall(r *http.Request, body []byte) (fastPlan, bool) {
	var plan fastPlan
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return plan, false
		}
	}
	if r.Header.Get(mcp.HeaderLastEventID) != "" {
		return plan, false
	}
	if validateMemberNames(body) != nil {
		return plan, false
	}
	var msg fastEnvelope
	if json.Unmarshal(body, &msg) != nil || msg.JSONRPC != mcp.JSONRPC_VERSION || msg.Method != string(mcp.MethodToolsCall) ||
		len(msg.Result) > 0 || len(msg.Error) > 0 || msg.Params == nil {
		return plan, false
	}
	switch {
	case len(msg.ID) >= 2 && msg.ID[0] == '"':
	case fastIDPattern.Match(msg.ID):
	default: // absent, null, or a number mcp-go might re-shape
		return plan, false
	}
	p := msg.Params
	if p.Task != nil || p.RequestState != "" || p.InputResponses != nil || p.Meta == nil || p.Meta.ProgressToken != nil {
		return plan, false
	}
	for k := range p.Meta.AdditionalFields {
		if !slices.Contains(fastMetaKeys, k) {
			return plan, false
		}
	}
	version := p.Meta.ProtocolVersion()
	caps := p.Meta.ClientCapabilities()
	if version != r.Header.Get(mcp.HeaderProtocolVersion) || caps == nil {
		return plan, false
	}
	if mcp.ValidateStandardHeadersFunc(r.Header.Get, version, mcp.MethodToolsCall, func() (string, bool) { return p.Name, true }) != nil {
		return plan, false
	}
	// mcp-go's table as it is (no sync first): a tool it does not hold yet
	// is mcp-go's to refuse; one the catalogue no longer has, mcp-go's to
	// run into the pipeline's "no such tool".
	e := s.envOf(r.Context())
	st := e.mcp.GetTool(p.Name)
	if st == nil || st.Handler == nil || st.Tool.Execution != nil || bytes.Contains(st.Tool.RawInputSchema, []byte("x-mcp-header")) {
		return plan, false
	}
	t, _, ok := e.catalog.Lookup(p.Name)
	if !ok || t.Kind == tools.KindMCP { // an MCP upstream's tool may relay notifications
		return plan, false
	}
	params, err := p.callParams()
	if err != nil { // cannot happen: the arguments were decoded as JSON above
		return plan, false
	}
	plan.id, plan.e, plan.handler = msg.ID, e, st.Handler
	plan.req = mcp.CallToolRequest{Header: r.Header, Params: params}
	plan.req.Method = string(mcp.MethodToolsCall)
	plan.info = &mcpserver.RequestProtocolInfo{
		Modern: true, ProtocolVersion: version, ClientInfo: p.Meta.ClientInfo(), LogLevel: p.Meta.LogLevel(), ClientCapabilities: caps,
	}
	return plan, true
}

// recoverCall runs h as mcp-go's WithRecovery middleware does.
func recoverCall(ctx context.Context, h mcpserver.ToolHandlerFunc, req mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic recovered in %s tool handler: %v", req.Params.Name, v)
		}
	}()
	return h(ctx, req)
}

// fastRequestID is the id value mcp-go would echo for raw.
func fastRequestID(raw json.RawMessage) mcp.RequestId {
	var id mcp.RequestId
	_ = json.Unmarshal(raw, &id)
	return id
}

// writeFastError answers a handler error as mcp-go's handlerError does
// for a 2026-07-28 request: a URL elicitation (asked through a multi
// round trip in this revision, not -32042) and any error not marked with
// mcpserver.NewHandlerError are -32603 with the error's text; a marked one
// keeps its own code, message and data. The pipeline returns none of them
// for an OpenAPI tool; this is for a panic, and should that ever change.
func (s *Server) writeFastError(w http.ResponseWriter, id json.RawMessage, err error) {
	details := mcp.NewJSONRPCErrorDetails(mcp.INTERNAL_ERROR, err.Error(), nil)
	var required mcp.URLElicitationRequiredError
	var requiredPtr *mcp.URLElicitationRequiredError
	if !errors.As(err, &required) && !(errors.As(err, &requiredPtr) && requiredPtr != nil) {
		if p, ok := exposedProvider(err); ok {
			d := p.JSONRPCError().Error
			details = mcp.NewJSONRPCErrorDetails(d.Code, d.Message, d.Data)
		}
	}
	status := http.StatusOK
	switch details.Code {
	case mcp.METHOD_NOT_FOUND:
		status = http.StatusNotFound
	case mcp.HEADER_MISMATCH, mcp.MISSING_REQUIRED_CLIENT_CAPABILITY, mcp.UNSUPPORTED_PROTOCOL_VERSION,
		mcp.INVALID_REQUEST, mcp.INVALID_PARAMS, mcp.PARSE_ERROR:
		status = http.StatusBadRequest
	}
	s.writeFastJSON(w, status, mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: fastRequestID(id), Error: details})
}

// exposedType is the (unexported) type of mcpserver.NewHandlerError's
// errors, which mcp-go answers with their own code.
var exposedType = reflect.TypeOf(mcpserver.NewHandlerError(rpcErr{code: mcp.INTERNAL_ERROR, msg: "probe"}))

// exposedProvider finds, in errors.As order (depth first), the first
// error of exposedType in err's tree and returns the provider it wraps.
func exposedProvider(err error) (mcpserver.JSONRPCErrorProvider, bool) {
	for err != nil {
		if reflect.TypeOf(err) == exposedType {
			p, ok := errors.Unwrap(err).(mcpserver.JSONRPCErrorProvider)
			return p, ok
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if p, ok := exposedProvider(e); ok {
					return p, true
				}
			}
			return nil, false
		default:
			return nil, false
		}
	}
	return nil, false
}

// writeFastJSON writes msg as mcp-go's handlePost does.
func (s *Server) writeFastJSON(w http.ResponseWriter, status int, msg any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(msg); err != nil {
		s.log.Error("tools/call fast path: cannot write the response", "err", err)
	}
}

// serverInfoMeta is the "_meta" member mcp-go stamps on every 2026-07-28
// result: the server's implementation.
func (s *Server) serverInfoMeta() []byte {
	s.fastMetaOnce.Do(func() {
		m := &mcp.Meta{}
		m.SetServerInfo(mcp.Implementation{Name: "harness", Version: s.version})
		b, err := json.Marshal(m)
		if err != nil { // an Implementation always encodes
			panic(err)
		}
		s.fastMeta = b
	})
	return s.fastMeta
}

// writeFastResult writes the response to a tools/call that returned res,
// as mcp-go would after decorating it for 2026-07-28 (resultType
// "complete", serverInfo in _meta). A result of the pipeline's usual shape
// (text content, structured content as compact JSON bytes) is written
// directly, its bytes copied once; any other shape (input_required, …) is
// decorated and encoded as mcp-go encodes it.
func (s *Server) writeFastResult(w http.ResponseWriter, id json.RawMessage, res *mcp.CallToolResult) {
	raw, plain := fastStructured(res)
	if plain {
		for _, c := range res.Content {
			if tc, ok := c.(mcp.TextContent); !ok || tc.Annotations != nil || tc.Meta != nil || tc.Type != mcp.ContentTypeText {
				plain = false
				break
			}
		}
	}
	if !plain || res.Meta != nil || res.ResultType != "" || len(res.InputRequests) > 0 || res.RequestState != "" {
		d := *res
		if d.GetResultType() == "" {
			d.SetResultType(mcp.ResultTypeComplete)
		}
		if m := d.EnsureResultMeta(); m != nil && m.ServerInfo() == nil {
			m.SetServerInfo(mcp.Implementation{Name: "harness", Version: s.version})
		}
		s.writeFastJSON(w, http.StatusOK, mcp.NewJSONRPCResultResponse(fastRequestID(id), &d))
		return
	}
	size := 128 + len(id) + len(raw)
	for _, c := range res.Content {
		size += len(c.(mcp.TextContent).Text) * 11 / 10
	}
	b := make([]byte, 0, size)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":{"_meta":`...)
	b = append(b, s.serverInfoMeta()...)
	b = append(b, `,"resultType":"complete","content":[`...)
	for i, c := range res.Content {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"text","text":`...)
		b = appendJSONString(b, c.(mcp.TextContent).Text)
		b = append(b, '}')
	}
	b = append(b, ']')
	if raw != nil {
		b = append(b, `,"structuredContent":`...)
		b = append(b, raw...)
	}
	if res.IsError {
		b = append(b, `,"isError":true`...)
	}
	b = append(b, "}}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// fastStructured returns the structured content of res to write as it is
// (nil when there is none), and whether it can be: valid JSON bytes,
// written as they are (encoding/json would compact them and escape HTML
// characters: the same JSON value). Invalid bytes, which encoding/json
// refuses, take the general encoder, which refuses them the same way.
func fastStructured(res *mcp.CallToolResult) (json.RawMessage, bool) {
	if len(bytes.TrimSpace(res.RawStructuredContent)) > 0 {
		return nil, false
	}
	switch v := res.StructuredContent.(type) {
	case nil:
		return nil, true
	case json.RawMessage:
		if len(v) == 0 || !json.Valid(v) {
			return nil, false
		}
		return v, true
	default:
		return nil, false
	}
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML-safe: <, > and & as \u escapes; U+2028 and U+2029
// escaped; invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// mcpLoopbackHost is mcp-go's isLoopbackHost (http_localhost.go, MIT):
// whether addr, a host or host:port, is one its DNS-rebinding guard
// always lets through.
func mcpLoopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.IsLoopback()
}
