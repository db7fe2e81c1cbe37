package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentharness/harness/internal/store"
)

// Client is a registered (or self-described) OAuth client. Only public
// clients exist: they authenticate with PKCE, not a secret.
type Client struct {
	ID           string    `json:"client_id"`
	Name         string    `json:"client_name,omitempty"`
	URI          string    `json:"client_uri,omitempty"`
	RedirectURIs []string  `json:"redirect_uris"`
	Kind         string    `json:"kind"` // "dynamic" or "metadata_document"
	Created      time.Time `json:"created"`
}

const (
	kindDynamic  = "dynamic"
	kindDocument = "metadata_document"
)

// DisplayName is the client's name as it calls itself, else its id.
func (c *Client) DisplayName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

var (
	errUnknownClient = errors.New("unknown client")
	privateScheme    = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)
	// forbiddenSchemes can never be redirect targets.
	forbiddenSchemes = []string{"javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss", "mailto", "tel"}
)

// validRedirectURI accepts https URLs, http URLs on loopback (native apps,
// RFC 8252 §7.3) and private-use schemes of native apps (cursor://…,
// RFC 8252 §7.1). Fragments and credentials are refused.
func validRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("redirect URI %q is not an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q must not have a fragment", raw)
	}
	if u.User != nil {
		return fmt.Errorf("redirect URI %q must not carry credentials", raw)
	}
	switch s := strings.ToLower(u.Scheme); {
	case s == "https":
		if u.Host == "" {
			return fmt.Errorf("redirect URI %q has no host", raw)
		}
	case s == "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("redirect URI %q: plain http only on loopback (127.0.0.1, [::1], localhost)", raw)
		}
	case !privateScheme.MatchString(u.Scheme) || slices.Contains(forbiddenSchemes, s):
		return fmt.Errorf("redirect URI %q: scheme %q not allowed", raw, u.Scheme)
	}
	return nil
}

// redirectMatches reports whether requested is one of the registered
// redirect URIs: an exact match, or, for http on a loopback host, a match in
// everything but the port (OAuth 2.1 §2.3.1, RFC 8252 §7.3: native apps get
// an ephemeral port).
func redirectMatches(registered []string, requested string) bool {
	if requested == "" {
		return false
	}
	if slices.Contains(registered, requested) {
		return true
	}
	ru, err := url.Parse(requested)
	if err != nil || ru.Scheme != "http" || !isLoopbackHost(ru.Hostname()) || ru.Fragment != "" || ru.User != nil {
		return false
	}
	for _, reg := range registered {
		gu, err := url.Parse(reg)
		if err != nil || gu.Scheme != "http" || !isLoopbackHost(gu.Hostname()) {
			continue
		}
		if gu.Hostname() == ru.Hostname() && gu.EscapedPath() == ru.EscapedPath() && gu.RawQuery == ru.RawQuery {
			return true
		}
	}
	return false
}

// registration is the RFC 7591 request body (the fields we read).
type registration struct {
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name"`
	ClientURI               string   `json:"client_uri"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope"`
}

func regError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

// register serves RFC 7591 dynamic registration of public clients.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		regError(w, "invalid_client_metadata", "the body must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			regError(w, "invalid_client_metadata", fmt.Sprintf("the registration request is larger than %d bytes", maxRegistrationBytes))
			return
		}
		regError(w, "invalid_client_metadata", "the registration request could not be read")
		return
	}
	var req registration
	if err := json.Unmarshal(body, &req); err != nil {
		regError(w, "invalid_client_metadata", "the body is not a JSON client metadata object")
		return
	}
	c, merr := checkMetadata(req)
	if merr != nil {
		regError(w, merr.code, merr.desc)
		return
	}
	c.ID = "hc_" + randomString(18)
	c.Kind = kindDynamic
	c.Created = s.now().UTC()
	// Until a human completes a sign-in with it, the client lives a day in
	// its own bounded namespace (promoteClient moves it out).
	if err := s.putJSON(r.Context(), "oauth:client:"+c.ID, c, newClientTTL); err != nil {
		w.Header().Set("Cache-Control", "no-store")
		if errors.Is(err, store.ErrFull) {
			s.log.WarnContext(r.Context(), "oauth: registration refused: too many clients waiting for their first sign-in", "err", err)
			w.Header().Set("Retry-After", "3600")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
				"error_description": "too many new clients are waiting for their first sign-in; try again later"})
			return
		}
		s.log.ErrorContext(r.Context(), "oauth: storing a client failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	s.log.InfoContext(r.Context(), "oauth: client registered", "client_id", c.ID, "client_name", c.Name, "redirect_uris", c.RedirectURIs)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, registrationResponse(c))
}

// registrationResponse is the RFC 7591 §3.2.1 answer for c. Optional
// fields the client did not send are omitted, never sent empty: the
// TypeScript SDKs refuse `"client_uri": ""` as an invalid URL.
func registrationResponse(c *Client) map[string]any {
	out := map[string]any{
		"client_id":                  c.ID,
		"client_id_issued_at":        c.Created.Unix(),
		"redirect_uris":              c.RedirectURIs,
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
	}
	if c.Name != "" {
		out["client_name"] = c.Name
	}
	if c.URI != "" {
		out["client_uri"] = c.URI
	}
	return out
}

type metaErr struct{ code, desc string }

func checkMetadata(req registration) (*Client, *metaErr) {
	bad := func(code, f string, a ...any) (*Client, *metaErr) {
		return nil, &metaErr{code, fmt.Sprintf(f, a...)}
	}
	if len(req.RedirectURIs) == 0 || len(req.RedirectURIs) > maxRedirectURIs {
		return bad("invalid_redirect_uri", "1 to %d redirect_uris are required", maxRedirectURIs)
	}
	for _, u := range req.RedirectURIs {
		if len(u) > 2000 {
			return bad("invalid_redirect_uri", "redirect URI too long")
		}
		if err := validRedirectURI(u); err != nil {
			return bad("invalid_redirect_uri", "%v", err)
		}
	}
	if m := req.TokenEndpointAuthMethod; m != "" && m != "none" {
		return bad("invalid_client_metadata", "only public clients (token_endpoint_auth_method none) can register; they use PKCE")
	}
	for _, g := range req.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return bad("invalid_client_metadata", "grant type %q not supported", g)
		}
	}
	for _, rt := range req.ResponseTypes {
		if rt != "code" {
			return bad("invalid_client_metadata", "response type %q not supported", rt)
		}
	}
	if utf8.RuneCountInString(req.ClientName) > maxClientName {
		return bad("invalid_client_metadata", "client_name is longer than %d characters", maxClientName)
	}
	if len(req.ClientURI) > 2000 {
		return bad("invalid_client_metadata", "client_uri is longer than 2000 characters")
	}
	if req.ClientURI != "" {
		if u, err := url.Parse(req.ClientURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return bad("invalid_client_metadata", "client_uri must be an http(s) URL")
		}
	}
	return &Client{Name: strings.TrimSpace(req.ClientName), URI: req.ClientURI, RedirectURIs: req.RedirectURIs}, nil
}

// isMetadataClientID reports whether id names a Client ID Metadata Document.
func (s *Server) isMetadataClientID(id string) bool {
	u, err := url.Parse(id)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "https":
		return u.Host != ""
	case "http":
		return s.o.AllowLoopbackHTTPClientIDs && isLoopbackHost(u.Hostname())
	}
	return false
}

// client returns the client id names: a registered one, or the metadata
// document at the URL id (fetched, checked and cached).
func (s *Server) client(ctx context.Context, id string) (*Client, error) {
	if id == "" || len(id) > 2000 {
		return nil, errUnknownClient
	}
	if strings.Contains(id, "://") {
		if !s.isMetadataClientID(id) {
			return nil, fmt.Errorf("%w: a URL client_id must be https", errUnknownClient)
		}
		key := "oauth:cimd:" + hashKey(id)
		var c Client
		if ok, err := s.getJSON(ctx, key, &c, false); err != nil {
			return nil, err
		} else if ok {
			return &c, nil
		}
		cp, err := s.fetchMetadata(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata document: %w", errUnknownClient, err)
		}
		if err := s.putJSON(ctx, key, cp, cimdCacheTTL); err != nil {
			s.log.WarnContext(ctx, "oauth: caching a client metadata document failed", "err", err)
		}
		return cp, nil
	}
	var c Client
	key := "oauth:client:" + id
	ok, err := s.getJSONIn(ctx, s.o.KV, key, &c, false) // signed in with at least once
	if err == nil && !ok && s.o.Clients != s.o.KV {
		ok, err = s.getJSONIn(ctx, s.o.Clients, key, &c, false) // registered, never used
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errUnknownClient
	}
	return &c, nil
}

// promoteClient gives a registered client its full life (clientTTL in KV)
// each time a human completes a sign-in with it; until the first one it
// lives newClientTTL in the bounded Clients namespace. Failing to promote
// is logged, never fatal: the client only has to register again.
func (s *Server) promoteClient(ctx context.Context, id string) {
	if strings.Contains(id, "://") {
		return // a metadata document client is fetched, not stored
	}
	key := "oauth:client:" + id
	from := s.o.Clients
	b, ok, err := from.Get(ctx, key)
	if err == nil && !ok && from != s.o.KV {
		from = s.o.KV // promoted before: extend
		b, ok, err = from.Get(ctx, key)
	}
	if err != nil || !ok {
		return
	}
	if err := s.o.KV.Put(ctx, key, b, clientTTL); err != nil {
		s.log.WarnContext(ctx, "oauth: extending a client's life failed", "client_id", id, "err", err)
		return
	}
	if from != s.o.KV {
		_ = s.o.Clients.Delete(ctx, key)
	}
}

// fetchMetadata fetches and checks a Client ID Metadata Document: at most
// 64 KiB, within 5 s, no redirects, JSON whose client_id is the URL itself.
func (s *Server) fetchMetadata(ctx context.Context, id string) (*Client, error) {
	u, err := url.Parse(id)
	if err != nil || u.Fragment != "" || u.User != nil || u.Path == "" || u.Path == "/" {
		return nil, errors.New("the client_id URL must have a path and no fragment or credentials")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.cimd.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxClientBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxClientBytes {
		return nil, errors.New("document larger than 64 KiB")
	}
	var doc struct {
		registration
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("not a JSON object")
	}
	if doc.ClientID != id {
		return nil, errors.New("its client_id is not the URL it was fetched from")
	}
	c, merr := checkMetadata(doc.registration)
	if merr != nil {
		return nil, errors.New(merr.desc)
	}
	c.ID, c.Kind, c.Created = id, kindDocument, s.now().UTC()
	return c, nil
}

// newMetadataClient fetches metadata documents. It never follows redirects,
// ignores proxies and refuses to connect to any special-purpose address
// (server-side request forgery; see blockedAddr), checked on the address
// actually dialled, except loopback when allowed. resolver nil: the
// system's.
func newMetadataClient(allowLoopback bool, resolver *net.Resolver) *http.Client {
	dialer := &net.Dialer{
		Timeout:  5 * time.Second,
		Resolver: resolver,
		Control:  dialControl(allowLoopback),
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
