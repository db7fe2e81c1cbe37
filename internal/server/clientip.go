package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/ratelimit"
)

// clientAddr finds the address of the client that sent a request: the TCP
// peer, or, only when the peer is one of the trusted proxies, the rightmost
// address in X-Forwarded-For that is not a trusted proxy (every hop to its
// right was appended by a proxy we trust; what is to its left is whatever
// the client chose to send).
type clientAddr struct {
	trusted []netip.Prefix
}

func (c clientAddr) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// of returns the client address of r; the zero Addr when even the peer
// cannot be parsed.
func (c clientAddr) of(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if len(c.trusted) == 0 || !c.isTrusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" && i == 0 && len(hops) == 1 {
			break // no header
		}
		hop, err := netip.ParseAddr(h)
		if err != nil {
			// Garbage a trusted proxy passed on: the last address we
			// trust is the best we know.
			return addr
		}
		addr = hop.Unmap()
		if !c.isTrusted(addr) {
			return addr
		}
	}
	return addr
}

// bucketOf is the rate-limit bucket of a client address: the address for
// IPv4, its /64 for IPv6 (one subscriber usually holds a whole /64).
func bucketOf(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// limitUnauthenticated charges every request to an endpoint that needs no
// token to its client address's bucket (server.unauthenticated_rate), so
// that no address can flood registration, authorization, sign-in, token
// or metadata endpoints. Beyond it: 429 with Retry-After. A limiter that
// cannot answer follows ratelimit.on_error.
func (s *Server) limitUnauthenticated(next http.Handler) http.Handler {
	rate := s.cfg.Server.UnauthenticatedRate
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ip := s.clientAddr.of(r)
		lim := ratelimit.Limit{Key: ratelimit.Key("ip|"+bucketOf(ip), "unauthenticated"), Requests: rate.Requests, Per: rate.Per.D()}
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := s.publicLimiter.Allow(lctx, []ratelimit.Limit{lim})
		cancel()
		switch {
		case err != nil && s.cfg.RateLimit.OnError != "allow":
			s.log.ErrorContext(ctx, "rate limiter unavailable: unauthenticated request refused", "path", r.URL.Path, "err", err)
			writeOAuthError(w, r, http.StatusServiceUnavailable, "temporarily_unavailable", "the rate limiter is unavailable; try again shortly")
			return
		case err != nil:
			s.log.WarnContext(ctx, "rate limiter unavailable: unauthenticated request allowed by ratelimit.on_error", "err", err)
		case !res.Allowed:
			secs := int(math.Ceil(res.RetryAfter.Seconds()))
			s.log.InfoContext(ctx, "unauthenticated request rate limited", "client", ip.String(), "path", r.URL.Path, "retry_after", secs)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeOAuthError(w, r, http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("too many requests from this address; retry after %d s", max(secs, 1)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeOAuthError writes an error the OAuth clients and browsers both
// understand: {"error", "error_description", "request_id"}.
func writeOAuthError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc, "request_id": RequestID(r.Context())})
}
