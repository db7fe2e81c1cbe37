package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// maxBatch bounds the messages of one JSON-RPC batch.
const maxBatch = 64

// batchRevision is the one protocol revision with JSON-RPC batches; a
// session-era request without MCP-Protocol-Version is assumed to speak it
// (2025-06-18, "Protocol Version Header").
const batchRevision = "2025-03-26"

// serveBatch serves a JSON-RPC batch of a 2025-03-26 session: each message
// goes through the same handler as a single one (so each tools/call runs
// the whole pipeline and gets its own audit record), in order, and the
// answers are assembled into one array. Notifications and responses get no
// entry; a batch of only those is answered 202. mcp-go has no batch
// handling, hence this edge.
func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request, body []byte, version string, hasSession bool, next http.Handler) {
	if version != "" && version != batchRevision {
		writeRPCError(w, r, http.StatusBadRequest, nil, rpcInvalidRequest,
			"JSON-RPC batches are not supported in protocol version "+version+": send one message per request (only "+batchRevision+" has batches)")
		return
	}
	var msgs []json.RawMessage
	if err := json.Unmarshal(body, &msgs); err != nil {
		writeRPCError(w, r, http.StatusBadRequest, nil, rpcParseError, "the batch is not a valid JSON array")
		return
	}
	switch {
	case len(msgs) == 0:
		writeRPCError(w, r, http.StatusBadRequest, nil, rpcInvalidRequest, "empty batch")
		return
	case len(msgs) > maxBatch:
		writeRPCError(w, r, http.StatusBadRequest, nil, rpcInvalidRequest, "a batch holds at most 64 messages")
		return
	case !hasSession:
		writeRPCError(w, r, http.StatusBadRequest, nil, rpcInvalidRequest,
			"Bad Request: Mcp-Session-Id header is required; send initialize first (it must not be part of a batch)")
		return
	}
	envs := make([]batchEnvelope, len(msgs))
	for i, m := range msgs {
		envs[i].ok = json.Unmarshal(m, &envs[i]) == nil
		if envs[i].ok && envs[i].Method == string(mcp.MethodInitialize) {
			writeRPCError(w, r, http.StatusBadRequest, nil, rpcInvalidRequest, "initialize must not be part of a JSON-RPC batch")
			return
		}
	}
	answers := make([]json.RawMessage, 0, len(msgs))
	for i, m := range msgs {
		answers = append(answers, s.batchOne(r, m, envs[i], next)...)
	}
	if len(answers) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	out, err := json.Marshal(answers)
	if err != nil {
		writeRPCError(w, r, http.StatusInternalServerError, nil, rpcInternalError, "cannot encode the batch answer")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// batchEnvelope is what serveBatch reads of each message of a batch, once.
type batchEnvelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	ok     bool            // the message decoded
}

// batchOne serves one message of a batch, env its envelope, and returns
// its answers (none for a notification).
func (s *Server) batchOne(r *http.Request, msg json.RawMessage, env batchEnvelope, next http.Handler) []json.RawMessage {
	if !env.ok {
		return []json.RawMessage{rpcErrorBody(http.StatusBadRequest, []byte("invalid JSON-RPC message in batch"), RequestID(r.Context()), nil)}
	}
	sub := r.Clone(r.Context())
	sub.Body = io.NopCloser(bytes.NewReader(msg))
	sub.ContentLength = int64(len(msg))
	rec := &captureWriter{header: http.Header{}}
	next.ServeHTTP(rec, sub)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if len(env.ID) == 0 || string(env.ID) == "null" {
		return nil // a notification or a response: nothing to answer
	}
	if rec.status >= 400 {
		return []json.RawMessage{bytes.TrimSpace(rpcErrorBody(rec.status, rec.body.Bytes(), RequestID(r.Context()), env.ID))}
	}
	var found []json.RawMessage
	for _, m := range messagesOf(rec.header.Get("Content-Type"), rec.body.Bytes()) {
		var probe batchEnvelope
		if json.Unmarshal(m, &probe) == nil && probe.Method == "" && bytes.Equal(probe.ID, env.ID) {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		return []json.RawMessage{bytes.TrimSpace(rpcErrorBody(http.StatusInternalServerError, []byte("no answer to this message"), RequestID(r.Context()), env.ID))}
	}
	return found[:1]
}

// messagesOf extracts the JSON-RPC messages of an answer: a JSON body or
// the data of an event stream.
func messagesOf(contentType string, body []byte) []json.RawMessage {
	var out []json.RawMessage
	if strings.HasPrefix(contentType, "text/event-stream") {
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 0, 64<<10), maxBodyBytes*4)
		var data bytes.Buffer
		flush := func() {
			if data.Len() > 0 && json.Valid(data.Bytes()) {
				out = append(out, json.RawMessage(bytes.Clone(data.Bytes())))
			}
			data.Reset()
		}
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				flush()
			case strings.HasPrefix(line, "data:"):
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			}
		}
		flush()
		return out
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var m json.RawMessage
		if dec.Decode(&m) != nil {
			return out
		}
		out = append(out, m)
	}
}

// captureWriter records one answer of a batch. It cannot stream: mcp-go
// then answers in one piece.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}
