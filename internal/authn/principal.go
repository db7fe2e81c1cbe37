package authn

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// maxActDepth bounds the nesting of "act" claims.
const maxActDepth = 16

// decodeSegment decodes one unpadded base64url JWS segment holding a JSON object.
func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// principal checks the verified claims and builds the Principal.
func (is *issuer) principal(claims map[string]any, now time.Time, live func(string) bool) (*Principal, error) {
	if iss, _ := claims["iss"].(string); iss != is.cfg.Issuer {
		return nil, invalid("issuer mismatch")
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, invalid("missing subject")
	}
	auds := audiences(claims["aud"])
	configured := slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(is.cfg.Audiences, a) })
	if !configured && (live == nil || !slices.ContainsFunc(auds, live)) {
		return nil, invalid("token not issued for this audience")
	}
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return nil, invalid("missing or malformed exp")
	}
	if !now.Before(exp) {
		return nil, invalid("token expired")
	}
	for _, name := range []string{"nbf", "iat"} {
		v, present := claims[name]
		if !present {
			continue
		}
		t, ok := numericDate(v)
		if !ok {
			return nil, invalid("malformed " + name)
		}
		if t.After(now.Add(Leeway)) {
			return nil, invalid("token not yet valid")
		}
	}
	p := &Principal{
		Issuer:           is.cfg.Issuer,
		Subject:          sub,
		Claims:           claims,
		ExpiresAt:        exp,
		Roles:            roles(lookup(claims, is.roles)),
		Audiences:        auds,
		LiveAudienceOnly: !configured,
	}
	if iat, ok := numericDate(claims["iat"]); ok {
		p.IssuedAt = iat
	}
	p.Email, _ = claims["email"].(string)
	p.Name, _ = claims["name"].(string)
	if v, present := claims["jti"]; present {
		jti, ok := v.(string)
		if !ok {
			return nil, invalid("malformed jti")
		}
		p.TokenID = jti
	}
	if is.cfg.AgentClaim != "" {
		p.Agent, _ = claims[is.cfg.AgentClaim].(string)
	} else {
		p.Agent, _ = claims["azp"].(string)
		if p.Agent == "" {
			p.Agent, _ = claims["client_id"].(string)
		}
	}
	var prior []string
	if act, present := claims["act"]; present {
		current, chain, err := actors(act)
		if err != nil {
			return nil, err
		}
		p.Agent, prior = current, chain
	}
	if is.cfg.Delegation {
		if p.TokenID == "" {
			return nil, invalid("delegation token without jti")
		}
		if _, present := claims["act"]; !present {
			return nil, invalid("delegation token without act")
		}
		var scopes []string
		switch s := claims["scope"].(type) {
		case nil:
		case string:
			scopes = strings.Fields(s)
		default:
			return nil, invalid("malformed scope")
		}
		p.Delegation = &Delegation{ID: p.TokenID, Scopes: scopes, ExpiresAt: exp, Actors: prior}
	}
	return p, nil
}

// actors parses an RFC 8693 "act" claim: the outermost sub is the current
// actor, nested ones are returned as prior actors, nearest first.
func actors(v any) (string, []string, error) {
	var (
		current string
		prior   []string
	)
	for depth := 0; v != nil; depth++ {
		if depth >= maxActDepth {
			return "", nil, invalid("act claim nested too deeply")
		}
		m, ok := v.(map[string]any)
		if !ok {
			return "", nil, invalid("malformed act claim")
		}
		sub, _ := m["sub"].(string)
		if sub == "" {
			return "", nil, invalid("act claim without sub")
		}
		if depth == 0 {
			current = sub
		} else {
			prior = append(prior, sub)
		}
		v = m["act"]
	}
	return current, prior, nil
}

// audiences are the string values of an "aud" claim (a string or an
// array; other entries are ignored).
func audiences(aud any) []string {
	switch a := aud.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, e := range a {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// numericDate converts a JSON NumericDate (seconds, possibly fractional).
func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// ClaimRoles reads roles from claims exactly as a Principal's roles are
// read: the claim named path, else path as a dotted path; a string of
// space-separated roles or an array of strings.
func ClaimRoles(claims map[string]any, path string) []string {
	return roles(lookup(claims, path))
}

// HasClaim reports whether claims hold path (a name, or a dotted path
// through nested objects).
func HasClaim(claims map[string]any, path string) bool { return lookup(claims, path) != nil }

// RolesClaimHint says, for a roles claim missing from a token, what usually
// releases it at the identity provider.
func RolesClaimHint(claim string) string {
	switch claim {
	case "groups":
		return "request the groups scope (oauth.scopes at Dex and Okta; Okta also needs a groups claim filter), or add a groups claim at the IdP"
	case "realm_access.roles", "resource_access":
		return "Keycloak: the roles scope releases it; the realm roles mapper must have \"Add to ID token\" on"
	case "roles":
		return "Entra ID: define app roles on the sign-in client's app registration and assign them; elsewhere map the roles into the ID token"
	}
	return "map the claim into the ID token at the IdP, and request the scope that releases it (oauth.scopes)"
}

// lookup returns the claim named path, or follows path as a dotted path
// through nested objects when no claim has that exact name.
func lookup(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}

// roles accepts a space-separated string or an array of strings; other
// element types are ignored.
func roles(v any) []string {
	switch r := v.(type) {
	case string:
		return strings.Fields(r)
	case []any:
		out := make([]string, 0, len(r))
		for _, e := range r {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
