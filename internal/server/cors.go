package server

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/agentharness/harness/internal/config"
)

// The CORS answer for /mcp: what the TypeScript SDK's browser transport
// sends and reads, in both protocol eras.
const (
	corsAllowMethods  = "GET, POST, DELETE, OPTIONS"
	corsAllowHeaders  = "Content-Type, Accept, Authorization, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID"
	corsExposeHeaders = "Mcp-Session-Id, WWW-Authenticate, Mcp-Protocol-Version, X-Request-Id"
	corsMaxAge        = "600"
	// The metadata documents are fetched with these during discovery.
	metadataAllowHeaders = "Content-Type, Authorization, Mcp-Protocol-Version"
)

// corsMCP answers preflights for /mcp before authentication and marks the
// answers of allowed origins readable. A request whose Origin is neither
// public_url's own nor one of cors.allowed_origins is refused with 403
// (the MCP transport's Origin rule against DNS rebinding); requests without
// an Origin (native clients) pass. A foreign Host is refused first, as
// mcp-go would (DNS rebinding), but before authentication.
func (s *Server) corsMCP(next http.Handler) http.Handler {
	own := originOf(s.cfg.PublicURL)
	allowed := s.cfg.CORS.AllowedOrigins
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions
		if s.foreignHost(r) {
			writeError(w, r, http.StatusForbidden, "forbidden: invalid Host header")
			return
		}
		h := w.Header()
		if origin != "" {
			h.Add("Vary", "Origin")
			if origin != own && !slices.Contains(allowed, origin) {
				if s.loopbackOrigin(origin) && !preflight {
					// A page on this machine is no DNS-rebinding attacker
					// (that one's Origin names its own domain): served like
					// mcp-go serves it, but without CORS headers, so a
					// browser still cannot read the answer.
					next.ServeHTTP(w, r)
					return
				}
				s.log.InfoContext(r.Context(), "request from a foreign origin refused", "origin", sanitizeHeader(origin), "request_id", RequestID(r.Context()))
				writeError(w, r, http.StatusForbidden, "forbidden: origin "+sanitizeHeader(origin)+" is not allowed (cors.allowed_origins)")
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		if preflight {
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			h.Set("Allow", corsAllowMethods)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// foreignHost mirrors mcp-go's DNS-rebinding rule, also for the requests
// that never reach it (preflights, refusals at the edge): with a loopback
// public_url, a loopback listener refuses a Host that is not loopback.
func (s *Server) foreignHost(r *http.Request) bool {
	if !s.rebindGuard {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if config.IsLoopbackHost(strings.Trim(host, "[]")) {
		return false
	}
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || la == nil {
		return false
	}
	lh, _, err := net.SplitHostPort(la.String())
	return err == nil && config.IsLoopbackHost(strings.Trim(lh, "[]"))
}

// corsPublic serves a public document (RFC 9728 metadata) to any origin:
// it carries no credential. Preflights get 204 with the headers the
// TypeScript SDK sends during discovery (Mcp-Protocol-Version).
func corsPublic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := func(h http.Header) {
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
			h.Set("Access-Control-Allow-Headers", metadataAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
		}
		switch r.Method {
		case http.MethodOptions:
			set(w.Header())
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet, http.MethodHead:
			next.ServeHTTP(&headerFixer{ResponseWriter: w, fix: set}, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, OPTIONS")
			writeError(w, r, http.StatusMethodNotAllowed, "method not allowed")
		}
	})
}

// headerFixer applies fix to the headers just before they are written, over
// whatever the wrapped handler set.
type headerFixer struct {
	http.ResponseWriter
	fix  func(http.Header)
	done bool
}

func (f *headerFixer) WriteHeader(code int) {
	if !f.done {
		f.done = true
		f.fix(f.Header())
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f *headerFixer) Write(b []byte) (int, error) {
	if !f.done {
		f.WriteHeader(http.StatusOK)
	}
	return f.ResponseWriter.Write(b)
}

// loopbackOrigin reports whether origin names a loopback host while the
// gateway's public_url is loopback too (a local development setup).
func (s *Server) loopbackOrigin(origin string) bool {
	if !s.rebindGuard {
		return false
	}
	ou, err := url.Parse(origin)
	return err == nil && (ou.Scheme == "http" || ou.Scheme == "https") && config.IsLoopbackHost(ou.Hostname())
}

// originOf is the web origin of an absolute URL (scheme://host[:port]).
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
}
