package oauth

import (
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/authn"
)

//go:embed assets/harness.css
var css []byte

//go:embed assets/pages.html
var pagesHTML string

var pages = template.Must(template.New("pages").Funcs(template.FuncMap{
	"when":     func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 MST") },
	"duration": humanDuration,
	"join":     strings.Join,
}).Parse(pagesHTML))

func serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(css)
}

// htmlHeaders are the headers of every page: a strict CSP (no script at
// all, styles from our own stylesheet only), no framing, no referrer.
// formTargets are the origins a form on the page may lead to: browsers
// apply form-action to the redirect that follows a submission too.
func htmlHeaders(w http.ResponseWriter, formTargets ...string) {
	fa := "'self'"
	for _, t := range formTargets {
		if t != "" {
			fa += " " + t
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action "+fa+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// origin is the CSP source of a redirect URI: scheme://host, or scheme:
// for a private-use scheme.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Host == "" {
		return u.Scheme + ":"
	}
	return u.Scheme + "://" + u.Host
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data map[string]any) {
	var b strings.Builder
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		s.log.ErrorContext(r.Context(), "oauth: rendering a page failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	htmlHeaders(w)
	s.render(w, r, status, "error", map[string]any{"Title": title, "Message": msg})
}

// toolGroup is the tools of one tag on a page.
type toolGroup struct {
	Tag   string
	Tools []ToolInfo
}

// groupTools groups tools by their tags (a tool with several tags is
// shown once, under all of them: "customers · orders").
func groupTools(ts []ToolInfo) []toolGroup {
	by := map[string][]ToolInfo{}
	for _, t := range ts {
		tag := strings.Join(t.Tags, " · ")
		if tag == "" {
			tag = "other"
		}
		by[tag] = append(by[tag], t)
	}
	out := make([]toolGroup, 0, len(by))
	for tag, list := range by {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		out = append(out, toolGroup{Tag: tag, Tools: list})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tag < out[j].Tag })
	return out
}

func (s *Server) tools(ctx context.Context, h Human, agent string, scopes []string) ([]ToolInfo, error) {
	if s.o.Tools == nil {
		return nil, nil
	}
	return s.o.Tools(ctx, h, agent, scopes)
}

// consentPage serves GET /oauth/consent?request=…: what the application
// asks, for the signed-in human to approve or deny.
func (s *Server) consentPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rid := r.URL.Query().Get("request")
	var ar authRequest
	ok, err := s.getJSON(ctx, "oauth:req:"+rid, &ar, false)
	if rid == "" || err != nil || !ok {
		s.errorPage(w, r, http.StatusBadRequest, "This request has expired", "Start again from your application. Nothing was shared.")
		return
	}
	ss, ok := s.currentSession(r)
	if !ok {
		s.startLogin(w, r, loginState{RequestID: rid}, "")
		return
	}
	if ss.RefreshSpent {
		// A session whose IdP refresh token went to an earlier grant signs
		// in again (seamless while the IdP session lives; the human is
		// named as the login_hint), so that this grant gets a refresh
		// token of its own: two grants never share a rotating IdP token.
		s.startLogin(w, r, loginState{RequestID: rid}, displayName(ss.Human.Email, ss.Human.Subject))
		return
	}
	ts, err := s.tools(ctx, ss.Human, ar.ClientID, ar.Scopes)
	if err != nil {
		s.log.WarnContext(ctx, "oauth: listing tools for consent failed", "err", err)
	}
	now := s.now()
	htmlHeaders(w, origin(ar.RedirectURI))
	s.render(w, r, http.StatusOK, "consent", map[string]any{
		"Title":        "Allow " + displayName(ar.ClientName, ar.ClientID) + "?",
		"Request":      rid,
		"CSRF":         ss.CSRF,
		"Human":        ss.Human,
		"ClientName":   displayName(ar.ClientName, ar.ClientID),
		"ClientID":     ar.ClientID,
		"SelfNamed":    ar.ClientKind == kindDynamic,
		"Document":     ar.ClientKind == kindDocument,
		"RedirectHost": redirectHost(ar.RedirectURI),
		"Scopes":       ar.Scopes,
		"Groups":       groupTools(ts),
		"ToolCount":    len(ts),
		"ListError":    err != nil,
		"AccessTTL":    s.accessTTL(),
		"RefreshTTL":   s.o.RefreshTTL,
		"RolesClaim":   s.o.Login.RolesClaim,
		"RolesHint":    authn.RolesClaimHint(s.o.Login.RolesClaim),
		"Until":        now.Add(s.o.RefreshTTL),
		"Resource":     ar.Resource,
	})
}

func displayName(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// postedForm reads a form posted from a Harness page: it needs a signed-in
// session and the session's CSRF token, and answers the error page itself
// (with signedOut or csrfFailed) when either is missing.
func (s *Server) postedForm(w http.ResponseWriter, r *http.Request, signedOut, csrfFailed string) (*session, bool) {
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid form", "The form could not be read.")
		return nil, false
	}
	ss, ok := s.currentSession(r)
	if !ok {
		s.errorPage(w, r, http.StatusForbidden, "You are signed out", signedOut)
		return nil, false
	}
	if !s.checkCSRF(r, ss) {
		s.log.WarnContext(r.Context(), "oauth: form refused: CSRF check failed", "path", r.URL.Path, "subject", ss.Human.Subject)
		s.errorPage(w, r, http.StatusForbidden, "This form has expired", csrfFailed)
		return nil, false
	}
	return ss, true
}

// consentDecision serves POST /oauth/consent: approve or deny, with the
// session's CSRF token. The pending request is used once.
func (s *Server) consentDecision(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ss, ok := s.postedForm(w, r, "Start again from your application. Nothing was shared.",
		"The approval did not come from the Harness page (CSRF check failed). Nothing was shared.")
	if !ok {
		return
	}
	rid := r.PostForm.Get("request")
	var ar authRequest
	ok, err := s.getJSON(ctx, "oauth:req:"+rid, &ar, true)
	if rid == "" || err != nil || !ok {
		s.errorPage(w, r, http.StatusBadRequest, "This request has expired", "Start again from your application. Nothing was shared.")
		return
	}
	switch r.PostForm.Get("decision") {
	case "approve":
	case "deny":
		s.log.InfoContext(ctx, "oauth: consent denied", "subject", ss.Human.Subject, "client_id", ar.ClientID)
		s.errorRedirect(w, r, ar.RedirectURI, ar.State, "access_denied", "the human denied the request")
		return
	default:
		s.errorPage(w, r, http.StatusBadRequest, "Invalid form", "Choose Allow or Deny.")
		return
	}
	code := randomString(32)
	cr := codeRecord{
		Human: ss.Human, ClientID: ar.ClientID, ClientName: ar.ClientName, RedirectURI: ar.RedirectURI,
		Challenge: ar.Challenge, Resource: ar.Resource, Scopes: ar.Scopes, ConsentAt: s.now().UTC(),
		IdPRefresh: s.spendRefresh(r, ss), CheckedAt: ss.Created,
	}
	if err := s.putJSON(ctx, "oauth:code:"+hashKey(code), cr, codeTTL); err != nil {
		s.log.ErrorContext(ctx, "oauth: storing a code failed", "err", err)
		s.errorRedirect(w, r, ar.RedirectURI, ar.State, "temporarily_unavailable", "the authorization server cannot store the code")
		return
	}
	s.log.InfoContext(ctx, "oauth: consent given", "subject", ss.Human.Subject, "client_id", ar.ClientID, "scope", strings.Join(ar.Scopes, " "))
	s.redirectToClient(w, r, ar.RedirectURI, url.Values{"code": {code}}, ar.State)
}

// agentView is one grant on the "my agents" page.
type agentView struct {
	*Grant
	Groups    []toolGroup
	ToolCount int
	Active    int
}

// agentsPage serves GET /oauth/agents: every agent acting for the human.
func (s *Server) agentsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ss, ok := s.currentSession(r)
	if !ok {
		s.startLogin(w, r, loginState{Return: "agents"}, r.URL.Query().Get("login_hint"))
		return
	}
	gs, err := s.grantsOf(ctx, ss.Human)
	if err != nil {
		s.log.ErrorContext(ctx, "oauth: listing grants failed", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Harness cannot reach its state store.")
		return
	}
	now := s.now()
	views := make([]agentView, 0, len(gs))
	for _, g := range gs {
		ts, _ := s.tools(ctx, ss.Human, g.ClientID, g.Scopes)
		active := 0
		for _, t := range g.Tokens {
			if t.Exp.After(now) {
				active++
			}
		}
		views = append(views, agentView{Grant: g, Groups: groupTools(ts), ToolCount: len(ts), Active: active})
	}
	htmlHeaders(w)
	s.render(w, r, http.StatusOK, "agents", map[string]any{
		"Title":   "Agents acting for you",
		"Human":   ss.Human,
		"CSRF":    ss.CSRF,
		"Agents":  views,
		"Revoked": r.URL.Query().Get("revoked") != "",
	})
}

// agentsRevoke serves POST /oauth/agents/revoke: the human ends a grant.
func (s *Server) agentsRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ss, ok := s.postedForm(w, r, "Sign in again to manage your agents.",
		"The request did not come from the Harness page (CSRF check failed). Nothing was changed.")
	if !ok {
		return
	}
	gid := r.PostForm.Get("grant")
	gs, err := s.grantsOf(ctx, ss.Human)
	if err != nil {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Harness cannot reach its state store.")
		return
	}
	if !slices.ContainsFunc(gs, func(g *Grant) bool { return g.ID == gid }) {
		s.errorPage(w, r, http.StatusNotFound, "No such agent", "This agent is not acting for you (any more).")
		return
	}
	if err := s.revokeGrant(ctx, gid, "revoked by the human"); err != nil {
		s.log.ErrorContext(ctx, "oauth: revoking a grant failed", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Not revoked — try again", "Harness could not record the revocation. The agent may still have access.")
		return
	}
	http.Redirect(w, r, "/oauth/agents?revoked=1", http.StatusSeeOther)
}

// humanDuration writes 1h as "1 hour", 24h as "24 hours", 90m as "1 hour 30 minutes".
func humanDuration(d time.Duration) string {
	if d <= 0 {
		return "0 seconds"
	}
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	switch {
	case d%(24*time.Hour) == 0 && d >= 48*time.Hour:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		s := unit(int64(d/time.Hour), "hour")
		if m := int64(d%time.Hour) / int64(time.Minute); m > 0 {
			s += " " + unit(m, "minute")
		}
		return s
	case d >= time.Minute:
		return unit(int64(d/time.Minute), "minute")
	}
	return unit(int64(d/time.Second), "second")
}

// logout serves POST /oauth/logout: the browser's session ends (the grants
// it approved do not).
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid form", "The form could not be read.")
		return
	}
	ss, ok := s.currentSession(r)
	if ok && !s.checkCSRF(r, ss) {
		s.errorPage(w, r, http.StatusForbidden, "This form has expired", "The request did not come from the Harness page (CSRF check failed).")
		return
	}
	if c, err := r.Cookie(s.cookieName(sessionCookie)); err == nil && c.Value != "" {
		_ = s.o.KV.Delete(r.Context(), "oauth:session:"+hashKey(c.Value))
	}
	s.clearCookie(w, sessionCookie)
	s.errorPage(w, r, http.StatusOK, "Signed out", "You are signed out of Harness. The agents you allowed keep their access until they expire or you revoke them.")
}
