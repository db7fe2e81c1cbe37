package sampleapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// whoAmI is the answer of GET /whoami, shaped like the FastAPI example's.
type whoAmI struct {
	AuthorizationPresent bool              `json:"authorization_present"`
	AuthorizationScheme  *string           `json:"authorization_scheme"`
	AssertionClaims      map[string]any    `json:"assertion_claims"`
	Verified             bool              `json:"verified"`
	Note                 string            `json:"note"`
	Traceparent          *string           `json:"traceparent"`
	Headers              map[string]string `json:"headers"`
}

// echoedClaims are the claims of the gateway's identity assertion that
// whoami shows. Anything else in the payload is left out.
var echoedClaims = []string{"iss", "sub", "aud", "act", "roles", "exp"}

// maxTokenBytes bounds the token whoami is willing to decode.
const maxTokenBytes = 16 << 10

const (
	whoamiNote = "claims decoded WITHOUT verifying the signature (this handler runs without the assertion check); " +
		"a real service verifies the assertion against the gateway's /.well-known/jwks.json"
	whoamiVerifiedNote = "assertion verified against the gateway's /.well-known/jwks.json: signature, iss, aud and exp checked"
)

// whoami echoes the identity the gateway asserted for this call.
//
// Started by [Start], the API verifies every assertion (see [Verification])
// before any handler runs: whoami then shows the verified claims and
// "verified": true. The bare [API.Handler] (tests) decodes the payload
// without checking it and says "verified": false. The raw token is never
// echoed, only the selected claims.
func (a *API) whoami(r *http.Request) (int, any, error) {
	out := whoAmI{Note: whoamiNote, Headers: map[string]string{}}
	if claims := verifiedClaims(r.Context()); claims != nil {
		out.AuthorizationPresent, out.Verified, out.Note = true, true, whoamiVerifiedNote
		scheme := "Bearer"
		out.AuthorizationScheme = &scheme
		out.AssertionClaims = map[string]any{}
		for _, k := range echoedClaims {
			if v, ok := claims[k]; ok {
				out.AssertionClaims[k] = v
			}
		}
	} else if authz, ok := r.Header["Authorization"]; ok && len(authz) > 0 {
		out.AuthorizationPresent = true
		scheme, token, _ := strings.Cut(authz[0], " ")
		out.AuthorizationScheme = &scheme
		if strings.EqualFold(scheme, "bearer") {
			out.AssertionClaims = unverifiedClaims(strings.TrimSpace(token))
		}
	}
	if tp := r.Header.Get("Traceparent"); tp != "" {
		out.Traceparent = &tp
		out.Headers["traceparent"] = tp
	}
	if id := r.Header.Get("X-Request-Id"); id != "" {
		out.Headers["x-request-id"] = id
	}
	return http.StatusOK, out, nil
}

// unverifiedClaims decodes the payload of a compact JWS and returns the
// echoedClaims it holds, or nil when token is not a three-part JWT with a
// JSON-object payload. It does NOT verify the signature.
func unverifiedClaims(token string) map[string]any {
	if token == "" || len(token) > maxTokenBytes {
		return nil
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var all map[string]any
	if err := dec.Decode(&all); err != nil || all == nil || dec.More() {
		return nil
	}
	claims := map[string]any{}
	for _, k := range echoedClaims {
		if v, ok := all[k]; ok {
			claims[k] = v
		}
	}
	return claims
}
