package devissuer

import (
	"errors"
	"net/http"
	"slices"
)

// ScopeOfflineAccess asks for a refresh token (OpenID Connect Core §11).
const ScopeOfflineAccess = "offline_access"

// refreshGrant is what a refresh token of the development issuer stands for.
type refreshGrant struct {
	clientID, subject, scope string
}

// refreshGrant serves grant_type=refresh_token: the token is single use
// (rotated), bound to its client, and refused (invalid_grant) once its
// user is disabled or removed. The answer carries a fresh ID token with the
// user's current roles and claims.
func (i *Issuer) refreshGrant(w http.ResponseWriter, c Client, token string) {
	i.flow.mu.Lock()
	rg, ok := i.flow.refresh[token]
	delete(i.flow.refresh, token)
	var (
		u        User
		known    bool
		disabled bool
	)
	if ok {
		u, known = i.flow.users[rg.subject]
		disabled = i.flow.disabled[rg.subject]
	}
	i.flow.mu.Unlock()
	switch {
	case !ok || rg.clientID != c.ID:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "refresh token unknown, used or issued to another client"})
		return
	case !known || disabled:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "the user is disabled"})
		return
	}
	i.answerTokens(w, c, u, "", rg.scope)
}

// DisableUser disables (or, with disabled false, enables again) the user
// sub: a disabled user cannot sign in, and their refresh tokens are refused
// with invalid_grant. For tests of what a gateway does when the company
// disables someone.
func (i *Issuer) DisableUser(sub string, disabled bool) error {
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	if _, ok := i.flow.users[sub]; !ok {
		return errors.New("devissuer: no user " + sub)
	}
	i.flow.disabled[sub] = disabled
	return nil
}

// SetRoles replaces the roles of user sub: later ID tokens, including those
// issued on refresh, carry the new roles.
func (i *Issuer) SetRoles(sub string, roles []string) error {
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	u, ok := i.flow.users[sub]
	if !ok {
		return errors.New("devissuer: no user " + sub)
	}
	u.Roles = slices.Clone(roles)
	i.flow.users[sub] = u
	return nil
}

// RevokeRefreshTokens forgets every refresh token of user sub (a session
// revoked at the IdP).
func (i *Issuer) RevokeRefreshTokens(sub string) {
	i.flow.mu.Lock()
	defer i.flow.mu.Unlock()
	for k, rg := range i.flow.refresh {
		if rg.subject == sub {
			delete(i.flow.refresh, k)
		}
	}
}
