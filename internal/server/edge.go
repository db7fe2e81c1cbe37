package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// edge fixes, before mcp-go sees a request, what mcp-go v1.6.0 gets wrong
// for real clients (upstream: mark3labs/mcp-go has no JSON-RPC batch
// handling, and requires _meta on 2026-07-28 notifications):
//
//   - a JSON-RPC batch is served message by message (batch.go) in
//     2025-03-26 sessions, the one revision that has batches, and refused
//     with a JSON-RPC error in every other;
//   - a 2026-07-28 notification without params._meta (the Go SDK's
//     notifications/cancelled) gets the protocol version of its header;
//     _meta is required of requests only;
//   - in the 2026-07-28 era, a notifications/cancelled cancels only the
//     requests of the same principal (cancel.go): mcp-go keys its table of
//     requests without a session by the request id alone;
//   - in the session era, a message other than initialize without
//     Mcp-Session-Id gets 400 (404 would tell the client its session
//     expired), and so does a GET or DELETE without one: the gateway opens
//     no stream that no session owns.
func (s *Server) edge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		version := r.Header.Get(mcp.HeaderProtocolVersion)
		hasSession := r.Header.Get(mcpserver.HeaderKeySessionID) != ""
		switch r.Method {
		case http.MethodPost:
		case http.MethodGet, http.MethodDelete:
			if !hasSession && !mcp.IsModernProtocol(version) {
				writeRPCError(w, r, http.StatusBadRequest, nil, rpcInvalidRequest,
					"Bad Request: "+r.Method+" /mcp needs the Mcp-Session-Id header of a session opened by initialize (or MCP-Protocol-Version 2026-07-28, which has no sessions)")
				return
			}
			next.ServeHTTP(w, r)
			return
		case http.MethodHead:
			next.ServeHTTP(w, r)
			return
		default:
			w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
			writeRPCError(w, r, http.StatusMethodNotAllowed, nil, rpcInvalidRequest, "method "+r.Method+" not allowed on /mcp")
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeRPCError(w, r, http.StatusRequestEntityTooLarge, nil, rpcInvalidRequest, "request body larger than "+strconv.Itoa(maxBodyBytes)+" bytes")
				return
			}
			writeRPCError(w, r, http.StatusBadRequest, nil, rpcParseError, "cannot read the request body")
			return
		}
		if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '[' {
			s.serveBatch(w, r, body, version, hasSession, next)
			return
		}
		if s.fastCall(w, r, body) { // a 2026-07-28 tools/call it can answer (fastcall.go)
			return
		}
		var msg struct {
			edgeMessage
			Params struct {
				Meta map[string]json.RawMessage `json:"_meta"`
			} `json:"params"`
		}
		var read *edgeMessage // what trackModern needs, when read here
		if json.Unmarshal(body, &msg) == nil {
			read = &msg.edgeMessage
			if st := rpcStateFrom(r.Context()); st != nil && len(msg.ID) > 0 {
				st.id = msg.ID
			}
			var metaVersion string
			_ = json.Unmarshal(msg.Params.Meta[mcp.MetaKeyProtocolVersion], &metaVersion)
			modern := mcp.IsModernProtocol(version) || mcp.IsModernProtocol(metaVersion)
			switch {
			case modern && msg.Method != "" && len(msg.ID) == 0 && metaVersion == "" && version != "":
				if fixed, ok := withMetaVersion(body, version); ok {
					body = fixed
				}
			case !modern && !hasSession && msg.Method != string(mcp.MethodInitialize):
				writeRPCError(w, r, http.StatusBadRequest, msg.ID, rpcInvalidRequest,
					"Bad Request: Mcp-Session-Id header is required; send initialize first (or use MCP-Protocol-Version 2026-07-28, which has no sessions)")
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		if mcp.IsModernProtocol(version) { // cancellation scoped to the principal (cancel.go)
			s.trackModern(w, r, body, read, next)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withMetaVersion adds params._meta["io.modelcontextprotocol/protocolVersion"]
// = version to a notification that has none.
func withMetaVersion(body []byte, version string) ([]byte, bool) {
	var msg map[string]json.RawMessage
	if json.Unmarshal(body, &msg) != nil {
		return nil, false
	}
	params := map[string]json.RawMessage{}
	if raw, ok := msg["params"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &params) != nil {
			return nil, false
		}
	}
	meta := map[string]json.RawMessage{}
	if raw, ok := params["_meta"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &meta) != nil {
			return nil, false
		}
	}
	v, _ := json.Marshal(version)
	meta[mcp.MetaKeyProtocolVersion] = v
	var err error
	if params["_meta"], err = json.Marshal(meta); err != nil {
		return nil, false
	}
	if msg["params"], err = json.Marshal(params); err != nil {
		return nil, false
	}
	out, err := json.Marshal(msg)
	return out, err == nil
}

// writeRPCError answers a JSON-RPC error for the message id (null when
// unknown) with the request id in error.data.
func writeRPCError(w http.ResponseWriter, r *http.Request, status int, id json.RawMessage, code int, msg string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, err := json.Marshal(rpcError{JSONRPC: "2.0", ID: id, Error: rpcErrorObject{Code: code, Message: msg,
		Data: map[string]any{"request_id": RequestID(r.Context()), "status": status}}})
	if err != nil {
		b = []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
