package oauth

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// exchangeCause names, in plain words for the human, why the code exchange
// at the login issuer failed.
func exchangeCause(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch {
		case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" || (re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized):
			return "Harness's client secret (or client id) at the identity provider is wrong — tell your administrator."
		case re.ErrorCode == "invalid_grant":
			return "The identity provider did not accept the sign-in code: it expired, was already used, or the clocks of Harness and the identity provider differ. Try again; if it keeps failing, tell your administrator."
		case re.Response != nil && re.Response.StatusCode >= 500:
			return "The identity provider failed while confirming the sign-in. Try again in a moment."
		}
		return "The identity provider refused to confirm the sign-in. Tell your administrator."
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection refused") {
		return "Harness could not reach the identity provider to confirm the sign-in. Try again in a moment."
	}
	return "The identity provider did not confirm the sign-in."
}

// idTokenCause names why the ID token was refused.
func idTokenCause(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "expired") || strings.Contains(msg, "before the nbf") || strings.Contains(msg, "in the future") || strings.Contains(msg, "issued at"):
		return "The identity token is not valid yet or no longer: the clocks of Harness and the identity provider differ. Tell your administrator."
	case strings.Contains(msg, "nonce"):
		return "The identity token belongs to another sign-in. Try again."
	case strings.Contains(msg, "audience") || strings.Contains(msg, "aud"):
		return "The identity token was issued to another application (check oauth.client_id) — tell your administrator."
	case strings.Contains(msg, "id token issued by a different provider") || strings.Contains(msg, "issuer"):
		return "The identity token comes from another issuer than oauth.login_issuer — tell your administrator."
	}
	return "The identity token from your identity provider could not be verified — tell your administrator."
}

// signInFailed ends a sign-in that the login issuer did not confirm: the
// detail is logged; the human gets a page naming the cause, the request
// id, a link to try again and, when an application is waiting, a link back
// to it carrying error=server_error (with state and iss), so it stops
// waiting. The page offers both rather than redirecting at once: the human
// reads the cause, and chooses between trying again and giving up.
func (s *Server) signInFailed(w http.ResponseWriter, r *http.Request, ls loginState, cause string, err error) {
	ctx := r.Context()
	rid := s.requestID(ctx)
	s.log.WarnContext(ctx, "oauth: sign-in at the login issuer failed", "issuer", s.o.Login.Issuer, "cause", cause, "err", err, "request_id", rid)
	data := map[string]any{"Title": "Sign-in could not be completed", "Cause": cause, "RequestID": rid}
	if ls.RequestID != "" {
		var ar authRequest
		if ok, _ := s.getJSON(ctx, "oauth:req:"+ls.RequestID, &ar, false); ok {
			data["Retry"] = "/oauth/consent?request=" + url.QueryEscape(ls.RequestID)
			data["ClientName"] = displayName(ar.ClientName, ar.ClientID)
			if u, perr := url.Parse(ar.RedirectURI); perr == nil {
				q := u.Query()
				q.Set("error", "server_error")
				q.Set("error_description", "sign-in at the identity provider failed (request id "+rid+")")
				if ar.State != "" {
					q.Set("state", ar.State)
				}
				q.Set("iss", s.o.Issuer)
				u.RawQuery = q.Encode()
				data["Return"] = u.String()
			}
		}
	} else {
		data["Retry"] = "/oauth/agents"
	}
	htmlHeaders(w)
	s.render(w, r, http.StatusBadGateway, "signin-failed", data)
}
