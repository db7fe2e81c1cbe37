package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
)

// Asserter signs the identity assertion an upstream receives.
type Asserter interface {
	Assert(ctx context.Context, a delegation.Assertion) (string, error)
}

// Exchanger obtains from the company identity provider, by RFC 8693 token
// exchange, a token it issues for the human toward one upstream (see
// internal/idpexchange). Errors never contain a token.
type Exchanger interface {
	Exchange(ctx context.Context, subjectToken, upstream string) (token string, expiresAt time.Time, err error)
}

// ErrDelegationNotExchangeable refuses a delegation token toward an upstream
// that accepts only the company IdP's tokens: the IdP did not issue it, so
// it cannot be exchanged there.
var ErrDelegationNotExchangeable = errors.New("a delegation token cannot be exchanged there")

// identityError refuses a call for want of an identity the upstream accepts;
// its message is safe to show the agent, the cause goes to the log.
type identityError struct {
	msg   string
	cause error
}

func (e *identityError) Error() string { return e.msg }
func (e *identityError) Unwrap() error { return e.cause }

// attachIdentity sets Authorization on the upstream request to a short-lived
// assertion signed by the gateway naming the human and the agent, or, for an
// upstream that trusts only the company IdP, to a token the IdP issued for
// the human by token exchange. The agent's own token is never forwarded.
func (s *Server) attachIdentity(ctx context.Context, h http.Header, p *authn.Principal, upstream string) error {
	e := s.envOf(ctx)
	if ex := e.exchangers[upstream]; ex != nil {
		return s.attachExchanged(ctx, h, ex, p, upstream)
	}
	if e.identity == nil {
		return nil
	}
	a := delegation.Assertion{
		Issuer:   e.issuer,
		Audience: upstream,
		Subject:  p.Subject,
		Actor:    p.Agent,
		Roles:    p.Roles,
		Email:    p.Email,
		Name:     p.Name,
	}
	if d := p.Delegation; d != nil {
		a.DelegationID, a.Scopes = d.ID, d.Scopes
		a.Actors = d.Actors // prior actors; p.Agent is the current one
	}
	key := tokenKeyFrom(ctx) + "|" + upstream
	tok, ok := e.assertions.get(key, time.Now())
	if !ok {
		var err error
		if tok, err = e.identity.Assert(ctx, a); err != nil {
			return err
		}
		if key != "|"+upstream { // never share an assertion between credentials
			e.assertions.put(key, tok, time.Now().Add(delegation.MaxAssertionTTL))
		}
	}
	h.Set("Authorization", "Bearer "+tok)
	return nil
}

// attachExchanged sets Authorization to a token the company IdP issued for
// the human toward upstream, exchanged for the token the caller presented.
// Only a token of a trusted IdP can be exchanged there; a delegation token
// (signed by the gateway) is refused. Every failure refuses the call: the
// upstream is never called without its token, nor with the caller's own.
func (s *Server) attachExchanged(ctx context.Context, h http.Header, ex Exchanger, p *authn.Principal, upstream string) error {
	onlyIdP := fmt.Sprintf("upstream %s accepts only tokens from the company IdP", upstream)
	if p.Delegation != nil {
		return &identityError{onlyIdP + "; " + ErrDelegationNotExchangeable.Error(), ErrDelegationNotExchangeable}
	}
	raw := rawTokenFrom(ctx)
	if raw == "" {
		return &identityError{onlyIdP + ", and no token of the caller is at hand to exchange", nil}
	}
	tok, _, err := ex.Exchange(ctx, raw, upstream)
	if err != nil {
		return &identityError{fmt.Sprintf("upstream %s: the company identity provider did not issue a token for this call", upstream), err}
	}
	if tok == "" || tok == raw {
		return &identityError{fmt.Sprintf("upstream %s: the identity provider returned no new token", upstream), nil}
	}
	h.Set("Authorization", "Bearer "+tok)
	return nil
}

// assertionCache keeps the assertion of one credential toward one upstream
// while more than half of its life remains, so a busy agent does not cost a
// signature per call. The assertion names the same human and agent either
// way; the call itself is identified by its traceparent and audit record.
type assertionCache struct {
	mu sync.Mutex
	m  map[string]cachedAssertion
}

type cachedAssertion struct {
	tok     string
	expires time.Time
}

const assertionCacheMax = 10000

func (c *assertionCache) get(key string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.expires.Sub(now) < delegation.MaxAssertionTTL/2 {
		return "", false
	}
	return e.tok, true
}

func (c *assertionCache) put(key, tok string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= assertionCacheMax {
		c.m = make(map[string]cachedAssertion) // bounded: start over rather than grow
	}
	c.m[key] = cachedAssertion{tok: tok, expires: expires}
}

// reset drops every assertion.
func (c *assertionCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// Revocations records revoked delegations, shared by every replica.
type Revocations interface {
	IsRevoked(ctx context.Context, id string) (bool, error)
}

// errRevoked is the safe reason given for a revoked delegation.
var errRevoked = errors.New("the delegation was revoked")

// checkRevoked refuses a delegation that was revoked, or narrowed from one
// that was. It runs on every request, after the token cache: a revocation
// takes effect at once. A store failure refuses too (fail closed).
func (s *Server) checkRevoked(ctx context.Context, p *authn.Principal) error {
	d := p.Delegation
	if d == nil {
		return nil
	}
	if s.revoked == nil {
		return errors.New("delegation tokens are not accepted: no revocation store")
	}
	ids := append(delegationChain(p), d.ID)
	for _, id := range ids {
		r, err := s.revoked.IsRevoked(ctx, id)
		if err != nil {
			return fmt.Errorf("%w: revocation store: %w", authn.ErrUnavailable, err)
		}
		if r {
			return errRevoked
		}
	}
	return nil
}

// delegationChain is the ids of the grants p's delegation was narrowed from.
func delegationChain(p *authn.Principal) []string {
	raw, _ := p.Claims["delegation_chain"].([]any)
	out := make([]string, 0, len(raw))
	for _, v := range raw {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// humanIssuer is the identity provider that vouched for the human: for a
// delegation token, the original issuer it records.
func humanIssuer(p *authn.Principal) string {
	if p.Delegation != nil {
		if iss, ok := p.Claims["sub_iss"].(string); ok && iss != "" {
			return iss
		}
	}
	return p.Issuer
}

// VerifyToken implements delegation.TokenVerifier for token exchange: the
// same verification as /mcp (trusted issuers, our own delegation tokens,
// revocation).
func (s *Server) VerifyToken(ctx context.Context, raw string) (*delegation.Subject, error) {
	p, err := s.authn.Authenticate(ctx, raw)
	if err != nil {
		return nil, err
	}
	if err := s.checkRevoked(ctx, p); err != nil {
		return nil, err
	}
	resource := ""
	if p.LiveAudienceOnly { // a preview's token: confined to that preview
		e := s.envForAudiences(p.Audiences)
		if e == nil {
			return nil, fmt.Errorf("%w: %s", authn.ErrInvalidToken, errEnvRetired)
		}
		if err := checkEnvironment(e, p); err != nil {
			return nil, fmt.Errorf("%w: %w", authn.ErrInvalidToken, err)
		}
		resource = e.resource
	}
	sub := &delegation.Subject{
		Issuer: humanIssuer(p), Subject: p.Subject, Email: p.Email, Name: p.Name,
		Roles: p.Roles, Agent: p.Agent, Claims: p.Claims, Resource: resource,
	}
	if d := p.Delegation; d != nil {
		sub.Delegation = &delegation.Grant{
			ID: d.ID, Scopes: d.Scopes, ExpiresAt: d.ExpiresAt,
			Actors: append([]string{p.Agent}, d.Actors...),
			Chain:  delegationChain(p),
		}
	}
	return sub, nil
}

// RecordGrant writes the audit record of a delegation issued (token exchange
// or OAuth consent), so "who granted this agent that permission?" has an
// answer in the trail. It is the delegation.Exchange OnIssue hook: when the
// record cannot be written and audit.on_error is deny, the grant is withheld.
func (s *Server) RecordGrant(ctx context.Context, iss delegation.Issued) error {
	reason := fmt.Sprintf("delegated %s to %s until %s", strings.Join(iss.Scopes, " "), iss.Agent, iss.ExpiresAt.UTC().Format(time.RFC3339))
	if iss.ParentID != "" {
		reason += " (narrowed from " + iss.ParentID + ")"
	}
	rec := &audit.Record{
		Kind: audit.KindGrant, Action: "delegate", Decision: decAllow, Reason: reason,
		Subject: iss.Subject, Email: iss.Email, Name: iss.Name, Issuer: iss.SubjectIssuer, Agent: iss.Agent,
		Delegation: iss.ID, Environment: s.cfg.Environment,
	}
	if iss.Resource != "" {
		rec.Environment = s.envLabel(iss.Resource)
	}
	err := s.audit.Write(ctx, rec)
	s.setAuditErr(err)
	if err != nil {
		s.log.ErrorContext(ctx, "audit record of a delegation not written", "err", err, "delegation", iss.ID)
		if s.cfg.Audit.OnError != "allow" {
			return err
		}
	}
	return nil
}
