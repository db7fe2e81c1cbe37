package devissuer

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// RFC 8693 names used by the token-exchange grant.
const (
	GrantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// ExchangeTTL is the longest life of a token issued by token exchange.
const ExchangeTTL = 5 * time.Minute

// tokenExchange serves /token for grant_type=token-exchange (RFC 8693),
// as a company IdP would for a gateway in front of upstreams that trust only
// the IdP. DEVELOPMENT ONLY. The client must be a TokenExchange client and
// authenticate with its secret (client_secret_basic or client_secret_post).
// subject_token must be one of this issuer's own unexpired tokens (its own
// keys, its own iss). The answer is a new token: sub = the subject's sub,
// aud = the requested audience (default: the client id), act = {"sub":
// client_id}, the subject's roles, name and email copied, life at most
// ExchangeTTL and never past the subject token's.
func (i *Issuer) tokenExchange(w http.ResponseWriter, r *http.Request) {
	tokenErr := func(status int, code, desc string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	f := r.PostForm
	clientID, secret := clientCredentials(r)
	c, ok := i.lookupClient(clientID)
	if !ok || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		tokenErr(http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	if !c.TokenExchange {
		tokenErr(http.StatusBadRequest, "unauthorized_client", "this client may not use token exchange")
		return
	}
	if tt := f.Get("subject_token_type"); tt != TokenTypeAccessToken {
		tokenErr(http.StatusBadRequest, "invalid_request", "subject_token_type must be "+TokenTypeAccessToken)
		return
	}
	if rt := f.Get("requested_token_type"); rt != "" && rt != TokenTypeAccessToken {
		tokenErr(http.StatusBadRequest, "invalid_request", "requested_token_type must be "+TokenTypeAccessToken)
		return
	}
	if len(f["audience"]) > 1 {
		tokenErr(http.StatusBadRequest, "invalid_target", "one audience at most")
		return
	}
	sub, ok := i.verifyOwn(f.Get("subject_token"))
	if !ok {
		tokenErr(http.StatusBadRequest, "invalid_grant", "subject_token is not a valid, unexpired token of this issuer")
		return
	}
	subject, _ := sub["sub"].(string)
	if subject == "" {
		tokenErr(http.StatusBadRequest, "invalid_grant", "subject_token names no subject")
		return
	}
	now := i.now()
	ttl := ExchangeTTL
	if exp, ok := sub["exp"].(float64); ok {
		ttl = min(ttl, time.Unix(int64(exp), 0).Sub(now))
	}
	if ttl < time.Second {
		tokenErr(http.StatusBadRequest, "invalid_grant", "subject_token expires too soon")
		return
	}
	aud := f.Get("audience")
	if aud == "" {
		aud = c.ID
	}
	claims := map[string]any{"sub": subject, "aud": aud, "azp": c.ID, "act": map[string]any{"sub": c.ID}}
	for _, k := range []string{"roles", "name", "email"} {
		if v, ok := sub[k]; ok {
			claims[k] = v
		}
	}
	if sc := f.Get("scope"); sc != "" {
		claims["scope"] = sc
	}
	tok, err := i.Mint(claims, ttl)
	if err != nil {
		tokenErr(http.StatusInternalServerError, "server_error", "minting failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok, "issued_token_type": TokenTypeAccessToken, "token_type": "Bearer",
		"expires_in": int(ttl / time.Second),
	})
}

// verifyOwn returns the claims of raw when it is a token this issuer signed
// with one of its published keys, with its own iss, and within its
// nbf/exp window.
func (i *Issuer) verifyOwn(raw string) (map[string]any, bool) {
	if raw == "" || len(raw) > 16<<10 {
		return nil, false
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(i.alg)})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, false
	}
	kid := jws.Signatures[0].Header.KeyID
	set := i.JWKS()
	keys := set.Key(kid)
	if kid == "" {
		keys = set.Keys
	}
	var payload []byte
	for _, k := range keys {
		if p, err := jws.Verify(k.Key); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, false
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, false
	}
	if iss, _ := claims["iss"].(string); iss != i.URL() {
		return nil, false
	}
	now := i.now().Unix()
	exp, ok := claims["exp"].(float64)
	if !ok || int64(exp) <= now {
		return nil, false
	}
	if nbf, ok := claims["nbf"].(float64); ok && int64(nbf) > now+60 {
		return nil, false
	}
	return claims, true
}
