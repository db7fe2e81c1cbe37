package sampleapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Verification says how the sample API checks the identity assertion the
// gateway sends with every call, the way examples/fastapi does: a JWT
// signed with a key of the gateway's JWKS, iss = the gateway's public_url,
// aud = this upstream's name, not expired. A request without a valid
// assertion gets 401, so the demo's data is reachable only through the
// gateway.
type Verification struct {
	// JWKSURL is the gateway's /.well-known/jwks.json.
	JWKSURL string
	// Issuer is the gateway's public_url, the iss of every assertion.
	Issuer string
	// Audience is this upstream's name in the gateway's config ("crm").
	Audience string
}

// errNoVerification is returned by Start without a complete Verification.
var errNoVerification = errors.New("the sample api needs the gateway's JWKS URL, issuer and audience to verify its assertions")

// openPaths carry no data and are served without an assertion: the
// gateway fetches the OpenAPI document before it makes any call.
var openPaths = map[string]bool{"/openapi.json": true, "/health": true}

type verifiedKey struct{}

// verifiedClaims returns the claims of the assertion the guard verified
// for this request, or nil.
func verifiedClaims(ctx context.Context) map[string]any {
	m, _ := ctx.Value(verifiedKey{}).(map[string]any)
	return m
}

// guard wraps h so that every request but openPaths must carry a valid
// gateway assertion as Authorization: Bearer. ctx bounds the JWKS fetches.
func (v Verification) guard(ctx context.Context, h http.Handler) (http.Handler, error) {
	if v.JWKSURL == "" || v.Issuer == "" || v.Audience == "" {
		return nil, errNoVerification
	}
	client := &http.Client{Timeout: 5 * time.Second}
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(ctx, client), v.JWKSURL)
	verifier := oidc.NewVerifier(v.Issuer, keys, &oidc.Config{
		ClientID:             v.Audience,
		SupportedSigningAlgs: []string{oidc.ES256},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPaths[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "bearer") || token == "" || len(token) > maxTokenBytes {
			unauthorized(w, "missing gateway assertion: call this API through the Harness gateway")
			return
		}
		idt, err := verifier.Verify(r.Context(), token)
		if err != nil {
			unauthorized(w, "invalid gateway assertion")
			return
		}
		var claims map[string]any
		if err := idt.Claims(&claims); err != nil {
			unauthorized(w, "invalid gateway assertion")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), verifiedKey{}, claims)))
	}), nil
}

// unauthorized answers 401 in FastAPI's shape, as harness_identity.py does.
func unauthorized(w http.ResponseWriter, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"detail": detail})
}
