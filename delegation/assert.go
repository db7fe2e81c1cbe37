package delegation

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MaxAssertionTTL is the longest life of an upstream identity assertion.
const MaxAssertionTTL = 60 * time.Second

// maxActors bounds the length of an act chain (current actor plus prior ones).
const maxActors = 8

// Assertion describes the identity the gateway asserts to an upstream on one
// call: the human (Subject), the agent acting for them (Actor) and the chain
// of earlier actors.
type Assertion struct {
	// Issuer is the gateway's public_url (iss).
	Issuer string
	// Audience is the upstream's name (aud).
	Audience string
	// Subject is the human (sub).
	Subject string
	// Actor is the agent making the call (act.sub); empty means no act claim.
	Actor string
	// Actors are the prior actors, outermost first, nested under Actor.
	Actors []string
	// Roles of the human (roles), omitted when empty.
	Roles []string
	// Email and Name of the human, omitted when empty.
	Email, Name string
	// DelegationID is the jti of the delegation token in use (delegation_id).
	DelegationID string
	// Scopes granted by that delegation (scope, space-separated).
	Scopes []string
	// TTL is the assertion's life: default and maximum 60s (larger values are
	// lowered to 60s).
	TTL time.Duration
}

// Assert signs a as a JWT (typ JWT, ES256) with claims iss, aud, sub,
// act {"sub": actor[, "act": {...prior}]}, roles, email, name,
// delegation_id, scope, iat, nbf, exp (≤ 60 s) and a random jti. The agent's
// own token never enters it.
func (k *Keys) Assert(ctx context.Context, a Assertion) (string, error) {
	switch {
	case a.Issuer == "":
		return "", errors.New("assert: empty issuer")
	case a.Audience == "":
		return "", errors.New("assert: empty audience")
	case a.Subject == "":
		return "", errors.New("assert: empty subject")
	case a.Actor == "" && len(a.Actors) > 0:
		return "", errors.New("assert: prior actors without an actor")
	case a.TTL < 0:
		return "", errors.New("assert: negative ttl")
	}
	ttl := a.TTL
	if ttl == 0 || ttl > MaxAssertionTTL {
		ttl = MaxAssertionTTL
	}
	jti, err := newID()
	if err != nil {
		return "", fmt.Errorf("assert: %w", err)
	}
	now := k.opts.Now()
	claims := map[string]any{
		"iss": a.Issuer,
		"aud": a.Audience,
		"sub": a.Subject,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"jti": jti,
	}
	if a.Actor != "" {
		act, err := actClaim(append([]string{a.Actor}, a.Actors...))
		if err != nil {
			return "", fmt.Errorf("assert: %w", err)
		}
		claims["act"] = act
	}
	if len(a.Roles) > 0 {
		claims["roles"] = append([]string(nil), a.Roles...)
	}
	if a.Email != "" {
		claims["email"] = a.Email
	}
	if a.Name != "" {
		claims["name"] = a.Name
	}
	if a.DelegationID != "" {
		claims["delegation_id"] = a.DelegationID
	}
	if len(a.Scopes) > 0 {
		claims["scope"] = strings.Join(a.Scopes, " ")
	}
	tok, err := k.sign(ctx, typJWT, claims)
	if err != nil {
		return "", fmt.Errorf("assert: %w", err)
	}
	return tok, nil
}

// actClaim builds the nested RFC 8693 act claim for a chain of actors,
// outermost (current) first.
func actClaim(chain []string) (map[string]any, error) {
	if len(chain) == 0 {
		return nil, errors.New("empty actor chain")
	}
	if len(chain) > maxActors {
		return nil, fmt.Errorf("actor chain longer than %d", maxActors)
	}
	var act map[string]any
	for i := len(chain) - 1; i >= 0; i-- {
		if chain[i] == "" {
			return nil, errors.New("empty actor in chain")
		}
		next := map[string]any{"sub": chain[i]}
		if act != nil {
			next["act"] = act
		}
		act = next
	}
	return act, nil
}

// parseAct reads a nested act claim into a chain of actors, outermost first.
func parseAct(v any) ([]string, error) {
	var chain []string
	for v != nil {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("act is not an object")
		}
		sub, _ := m["sub"].(string)
		if sub == "" {
			return nil, errors.New("act without sub")
		}
		chain = append(chain, sub)
		if len(chain) > maxActors {
			return nil, fmt.Errorf("act chain longer than %d", maxActors)
		}
		v = m["act"]
	}
	return chain, nil
}

// newID returns a random 128-bit identifier, base64url without padding.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
