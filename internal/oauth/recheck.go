package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/agentharness/harness/internal/authn"
)

// scopeOfflineAccess asks the login issuer for a refresh token.
const scopeOfflineAccess = "offline_access"

// recheck confirms g's human at the login issuer with the refresh token
// kept with the grant, and on success renews g.Human (roles, claims, email,
// name), g.IdPRefresh (rotated) and g.CheckedAt.
//
// why is non-empty when the human is no longer confirmed: the issuer
// refused (user disabled, session revoked: invalid_grant), the grant holds
// no refresh token of the issuer, or its answer is not about this human.
// The caller revokes the grant. err (a 503 temporarily_unavailable) is set
// when the issuer could not be asked: the caller issues nothing and keeps
// the grant for a later try.
func (s *Server) recheck(ctx context.Context, g *Grant) (why string, err error) {
	if g.IdPRefresh == "" {
		return "the identity provider gave Harness no refresh token: sign in again", nil
	}
	rt, err := s.sealer.open(g.IdPRefresh, refreshAD(g.Human))
	if err != nil {
		s.log.WarnContext(ctx, "oauth: the IdP refresh token of a grant cannot be opened (oauth.state_key differs from the one that sealed it)", "grant", g.ID)
		return "the identity provider's refresh token cannot be read (oauth.state_key changed): sign in again", nil
	}
	p, err := s.loginProvider(ctx)
	if err != nil {
		return "", idpUnavailable(err)
	}
	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, s.o.HTTPClient), 15*time.Second)
	defer cancel()
	tok, err := p.config.TokenSource(xctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 &&
			re.Response.StatusCode != http.StatusUnauthorized && re.ErrorCode != "invalid_client" && re.ErrorCode != "unauthorized_client" {
			code := re.ErrorCode
			if code == "" {
				code = re.Response.Status
			}
			return "the identity provider refused to confirm the human (" + code + "): sign in again", nil
		}
		if errors.As(err, &re) && re.Response != nil {
			s.log.ErrorContext(ctx, "oauth: the login issuer refused the gateway's own credentials on refresh (oauth.client_id / oauth.client_secret)", "status", re.Response.StatusCode, "error", re.ErrorCode)
		}
		return "", idpUnavailable(err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return "the identity provider's refresh answer holds no ID token, so roles cannot be renewed: sign in again", nil
	}
	idt, err := p.verifier.Verify(xctx, rawID)
	if err != nil {
		s.log.WarnContext(ctx, "oauth: the ID token from a refresh at the login issuer was refused", "grant", g.ID, "err", err)
		return "", idpUnavailable(err)
	}
	if idt.Subject != g.Human.Subject || idt.Issuer != g.Human.Issuer {
		return "the identity provider answered for another human", nil
	}
	h, err := s.humanFrom(ctx, idt)
	if err != nil {
		return "", idpUnavailable(err)
	}
	before := g.Human.Roles
	g.Human = h
	g.CheckedAt = s.now().UTC()
	if tok.RefreshToken != "" {
		g.IdPRefresh = s.sealer.seal(tok.RefreshToken, refreshAD(h))
	}
	s.log.InfoContext(ctx, "oauth: human re-checked at the identity provider", "grant", g.ID, "subject", h.Subject, "email", h.Email,
		"roles", h.Roles, "roles_changed", !slices.Equal(before, h.Roles))
	return "", nil
}

func idpUnavailable(cause error) *tokenError {
	return &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
		desc: "the identity provider cannot confirm the human right now; try again later", cause: cause}
}

// humanFrom builds the human from a verified ID token of the login issuer,
// warning when the token lacks the roles claim.
func (s *Server) humanFrom(ctx context.Context, idt *oidc.IDToken) (Human, error) {
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Human{}, err
	}
	h := Human{Issuer: idt.Issuer, Subject: idt.Subject, Roles: authn.ClaimRoles(claims, s.o.Login.RolesClaim), Claims: claims}
	h.Email, _ = claims["email"].(string)
	h.Name, _ = claims["name"].(string)
	if !authn.HasClaim(claims, s.o.Login.RolesClaim) {
		h.NoRolesClaim = true
		s.log.WarnContext(ctx, "oauth: the ID token has no roles claim: the human gets no roles", "roles_claim", s.o.Login.RolesClaim,
			"subject", h.Subject, "email", h.Email, "hint", authn.RolesClaimHint(s.o.Login.RolesClaim))
	}
	return h, nil
}
