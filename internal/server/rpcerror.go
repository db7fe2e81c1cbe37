package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// JSON-RPC error codes of the /mcp endpoint's transport errors. -32001 is
// the code the MCP SDKs use for "session not found".
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcInternalError  = -32603
	rpcServerError    = -32000
	rpcNoSession      = -32001
)

// rpcState carries, for one /mcp request, the JSON-RPC id of the message
// once the edge has read it, so a transport error can name it.
type rpcState struct{ id json.RawMessage }

type rpcStateKey struct{}

func rpcStateFrom(ctx context.Context) *rpcState {
	st, _ := ctx.Value(rpcStateKey{}).(*rpcState)
	return st
}

// rpcErrors gives every error answer of /mcp one shape, whichever layer
// wrote it (authentication, session binding, mcp-go's plain-text errors
// such as "Invalid session ID"): a JSON-RPC error object whose
// error.data.request_id is the request id, with the HTTP status and the
// headers (WWW-Authenticate…) kept. Successful answers and streams pass
// through untouched.
func rpcErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &rpcState{}
		ew := &rpcErrorWriter{ResponseWriter: w}
		next.ServeHTTP(ew, r.WithContext(context.WithValue(r.Context(), rpcStateKey{}, st)))
		if ew.capturing {
			ew.rewrite(RequestID(r.Context()), st.id)
		}
	})
}

// maxErrorBody bounds what is kept of an error body to rewrite.
const maxErrorBody = 64 << 10

type rpcErrorWriter struct {
	http.ResponseWriter
	wrote     bool
	capturing bool
	status    int
	buf       bytes.Buffer
}

func (w *rpcErrorWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	if code >= 400 {
		w.capturing, w.status = true, code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *rpcErrorWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.capturing {
		if room := maxErrorBody - w.buf.Len(); room > 0 {
			w.buf.Write(b[:min(len(b), room)])
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush keeps streams flowing; an error being rewritten is not flushed.
func (w *rpcErrorWriter) Flush() {
	if w.capturing {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *rpcErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *rpcErrorWriter) rewrite(requestID string, id json.RawMessage) {
	body := rpcErrorBody(w.status, w.buf.Bytes(), requestID, id)
	h := w.Header()
	h.Del("Content-Length")
	h.Del("X-Content-Type-Options")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(body)
}

// rpcError is a JSON-RPC 2.0 error response.
type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcErrorObject  `json:"error"`
}

type rpcErrorObject struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

// rpcErrorBody turns an error body of any layer into a JSON-RPC error: a
// JSON-RPC error keeps its code and message and gains data.request_id; the
// gateway's {"error": …} JSON and plain text become the message.
func rpcErrorBody(status int, body []byte, requestID string, id json.RawMessage) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	out := rpcError{JSONRPC: "2.0", ID: id, Error: rpcErrorObject{Code: codeForStatus(status)}}
	var parsed struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   json.RawMessage `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &parsed) == nil {
		var obj struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		}
		var str string
		switch {
		case parsed.JSONRPC == "2.0" && json.Unmarshal(parsed.Error, &obj) == nil:
			out.Error.Code, msg = obj.Code, obj.Message
			if len(parsed.ID) > 0 {
				out.ID = parsed.ID
			}
			var data map[string]any
			if len(obj.Data) > 0 && json.Unmarshal(obj.Data, &data) != nil {
				data = map[string]any{"detail": json.RawMessage(obj.Data)}
			}
			out.Error.Data = data
		case json.Unmarshal(parsed.Error, &str) == nil:
			msg = str
		}
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	out.Error.Message = msg
	if out.Error.Data == nil {
		out.Error.Data = map[string]any{}
	}
	out.Error.Data["request_id"] = requestID
	out.Error.Data["status"] = status
	b, err := json.Marshal(out)
	if err != nil { // the id came from the client and is valid JSON; never reached
		return []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error","data":{"request_id":` + strconv.Quote(requestID) + `}}}`)
	}
	return append(b, '\n')
}

func codeForStatus(status int) int {
	switch {
	case status == http.StatusNotFound:
		return rpcNoSession
	case status >= 500:
		return rpcInternalError
	case status == http.StatusBadRequest, status == http.StatusRequestEntityTooLarge, status == http.StatusUnsupportedMediaType:
		return rpcInvalidRequest
	default:
		return rpcServerError
	}
}
