package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/telemetry"
)

// Authenticator turns a bearer token into a Principal.
type Authenticator interface {
	Authenticate(ctx context.Context, raw string) (*authn.Principal, error)
	Ready(ctx context.Context) error
}

func principalFrom(ctx context.Context) *authn.Principal {
	p, _ := ctx.Value(principalKey).(*authn.Principal)
	return p
}

// tokenKeyFrom is a hash of the caller's token: the cache key for what one
// credential may see. The token itself is never kept.
func tokenKeyFrom(ctx context.Context) string {
	k, _ := ctx.Value(tokenHashKey).(string)
	return k
}

// rawTokenKey holds the caller's bearer token for the life of one request,
// for the one use that needs it: token exchange at the company IdP toward an
// upstream that trusts only the IdP. It is never logged nor kept.
type rawTokenKey struct{}

// rawTokenFrom is the caller's bearer token, or "".
func rawTokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(rawTokenKey{}).(string)
	return t
}

// metadataURL is the RFC 9728 document of e's resource.
func (s *Server) metadataURL(e *env) string {
	return s.cfg.PublicURL + "/.well-known/oauth-protected-resource" + e.path()
}

// challenge answers 401 with the RFC 9728 pointer of the request's
// environment. invalid is true when a token was presented and refused;
// desc is a safe description.
func (s *Server) challenge(w http.ResponseWriter, r *http.Request, invalid bool, desc string) {
	s.challengeAt(w, r, s.metadataURL(s.envOf(r.Context())), invalid, desc)
}

// challengeAt is challenge naming the metadata document at metadata.
func (s *Server) challengeAt(w http.ResponseWriter, r *http.Request, metadata string, invalid bool, desc string) {
	v := fmt.Sprintf(`Bearer resource_metadata=%q`, metadata)
	if invalid {
		v += fmt.Sprintf(`, error="invalid_token", error_description=%q`, sanitizeHeader(desc))
	}
	w.Header().Set("WWW-Authenticate", v)
	msg := "a bearer token is required"
	if invalid {
		msg = "invalid token: " + desc
	}
	writeError(w, r, http.StatusUnauthorized, msg)
}

func sanitizeHeader(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// authenticate verifies the bearer token on every request to /mcp, in both
// protocol eras. Nothing past it runs without a Principal.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r)
		if !ok {
			s.challenge(w, r, false, "")
			return
		}
		ctx := r.Context()
		actx, end := s.stage(ctx, telemetry.StageAuthn)
		p, err := s.authn.Authenticate(actx, raw)
		e := s.envOf(ctx)
		if err == nil {
			err = checkEnvironment(e, p)
		}
		if err == nil {
			err = s.checkRevoked(actx, p)
		}
		if err == nil && p.Agent == "" {
			// A token naming no agent could only be audited as nobody's:
			// typically an ID token issued to the gateway's own sign-in
			// client (aud = its client id, no azp). Refused, never "unknown".
			err = fmt.Errorf("%w: %s", authn.ErrInvalidToken, errNoAgent)
		}
		end()
		if err != nil {
			if errors.Is(err, authn.ErrUnavailable) {
				s.log.WarnContext(ctx, "token refused: verification unavailable", "err", err, "request_id", RequestID(ctx))
				w.Header().Set("Retry-After", "5")
				writeError(w, r, http.StatusServiceUnavailable, "the token cannot be verified right now (identity provider or revocation store unreachable); try again shortly")
				return
			}
			s.log.InfoContext(ctx, "token refused", "reason", err.Error(), "request_id", RequestID(ctx))
			if s.security != nil {
				s.security.TokenRefused(safeReason(err), claimedIssuer(raw), clientIP(r))
			}
			s.challenge(w, r, true, safeReason(err))
			return
		}
		sum := sha256.Sum256([]byte(raw))
		ctx = context.WithValue(ctx, principalKey, p)
		ctx = context.WithValue(ctx, tokenHashKey, hex.EncodeToString(sum[:16]))
		if p.Delegation == nil && len(e.exchangers) > 0 {
			// Only a trusted IdP's own token can be exchanged, and only
			// upstreams with token_exchange need it.
			ctx = context.WithValue(ctx, rawTokenKey{}, raw)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// errNoAgent is why a token that names no agent is refused at /mcp.
const errNoAgent = "the token names no agent (no azp or client_id claim, nor the issuer's agent_claim): get a token issued to the agent's own client, or set auth.issuers[].agent_claim"

// safeReason is the part of a verification error a caller may see. authn
// errors never contain the token; the prefix is dropped for brevity.
func safeReason(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, authn.ErrInvalidToken.Error()+": ")
	return msg
}

// claimedIssuer returns the unverified iss claim of a JWT, for grouping
// refused tokens; "" when raw is not a JWT. It is a label, never trusted.
func claimedIssuer(raw string) string {
	parts := strings.SplitN(raw, ".", 4)
	if len(parts) != 3 || len(parts[1]) > 8192 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil || len(c.Iss) > 200 {
		return ""
	}
	return sanitizeHeader(c.Iss)
}

// clientIP is the address of the peer (proxy headers are not trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
