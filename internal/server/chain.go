package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
)

// The middleware order, outermost first. Every request to /mcp passes, in
// this order:
//
//	recoverer      a panic becomes a 500 and a log line, never a dead process
//	requestID      every request gets an id (echoed as X-Request-Id, logged)
//	accessLog      one line per request: method, path, status, duration
//	limitBody      bodies over maxBodyBytes are refused with 413 before parsing
//	routeEnv       /mcp is production, /env/{name}/mcp a live preview (404
//	               unknown, 401 "environment retired"); the environment
//	               rides in the context for everything below
//	authenticate   bearer token → Principal, or 401 with WWW-Authenticate;
//	               the token must be for the request's environment
//	bindSession    a legacy Mcp-Session-Id must belong to that Principal
//	mcp-go         JSON-RPC; tools/call runs the pipeline in pipeline.go
//
// Health, readiness and metrics skip the access log, authentication and the
// body limit (they have no body); the well-known documents skip
// authentication.
type middleware func(http.Handler) http.Handler

func chain(h http.Handler, m ...middleware) http.Handler {
	for i := len(m) - 1; i >= 0; i-- {
		h = m[i](h)
	}
	return h
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	principalKey
	tokenHashKey
	sessionKey
)

// RequestID returns the id of the request ctx belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, r, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newID()
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (sw *statusWriter) WriteHeader(code int) {
	if sw.status == 0 {
		sw.status = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	return sw.ResponseWriter.Write(b)
}

// Flush keeps streaming (SSE) responses working through the wrapper.
func (sw *statusWriter) Flush() {
	if f, ok := sw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.status),
			slog.Duration("duration", time.Since(start)),
			slog.String("request_id", RequestID(r.Context())),
		}
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "request", attrs...)
	})
}

// maxBodyBytes bounds an MCP request body. Tool arguments are small; a
// larger body is refused before anything parses it.
const maxBodyBytes = 1 << 20

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxBodyBytes))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// writeError writes a small JSON error with the request id; msg must be
// safe to show to the caller.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q,"request_id":%q}`+"\n", msg, RequestID(r.Context()))
}

// bearer extracts a bearer token from the Authorization header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// readDeadline bounds the time to read a whole request body
// (server.read_timeout, counted from when the handler starts; the headers
// are bounded by http.Server.ReadHeaderTimeout). http.Server.ReadTimeout
// cannot be used: it would also end the long-lived legacy GET /mcp event
// stream, whose connection the server keeps reading to notice the client
// leaving. So the deadline is set per request, only on requests with a
// body, and lifted once the body is read to its end. A client still
// sending when it passes gets 408 and the connection is closed.
func (s *Server) readDeadline(next http.Handler) http.Handler {
	d := s.cfg.Server.ReadTimeout.D()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d <= 0 || r.Body == nil || r.Body == http.NoBody || (r.Method == http.MethodGet && isMCPPath(r.URL.Path)) {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			next.ServeHTTP(w, r) // not a real connection (tests)
			return
		}
		tw := &timeoutWriter{ResponseWriter: w, r: r}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, tw: tw}
		next.ServeHTTP(tw, r)
	})
}

// deadlineBody lifts the read deadline once the body is read to its end,
// and marks the response as timed out when the deadline passed.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	tw   *timeoutWriter
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.tw.timedOut.Store(true)
	}
	return n, err
}

// timeoutWriter answers 408 in place of whatever the handler answers once
// the body's read deadline passed.
type timeoutWriter struct {
	http.ResponseWriter
	r        *http.Request
	timedOut atomic.Bool
	wrote    bool
	replaced bool
}

func (tw *timeoutWriter) WriteHeader(code int) {
	if tw.wrote {
		return
	}
	tw.wrote = true
	if tw.timedOut.Load() {
		tw.replaced = true
		h := tw.ResponseWriter.Header()
		for k := range h {
			if k != "X-Request-Id" {
				delete(h, k)
			}
		}
		h.Set("Connection", "close")
		writeError(tw.ResponseWriter, tw.r, http.StatusRequestTimeout, "the request body was not received in time")
		return
	}
	tw.ResponseWriter.WriteHeader(code)
}

func (tw *timeoutWriter) Write(b []byte) (int, error) {
	if !tw.wrote {
		tw.WriteHeader(http.StatusOK)
	}
	if tw.replaced {
		return len(b), nil
	}
	return tw.ResponseWriter.Write(b)
}

// Flush keeps streaming responses working through the wrapper.
func (tw *timeoutWriter) Flush() {
	if f, ok := tw.ResponseWriter.(http.Flusher); ok && !tw.replaced {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (tw *timeoutWriter) Unwrap() http.ResponseWriter { return tw.ResponseWriter }

// isMCPPath reports whether path is an MCP endpoint (production's or a
// preview's), whose GET is a long-lived event stream.
func isMCPPath(path string) bool {
	if path == "/mcp" {
		return true
	}
	_, ok := parseEnvPath(path, "")
	return ok
}
