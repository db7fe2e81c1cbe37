// Package devissuer is a small OpenID Connect issuer for development and tests.
//
// DEVELOPMENT ONLY — NOT FOR PRODUCTION. It keeps ephemeral private keys in
// memory, signs whatever claims it is handed, authenticates nobody and exposes
// its private key and a raw signing helper so tests can forge hostile tokens.
// Never point a production gateway at it.
//
// It serves real OIDC discovery (/.well-known/openid-configuration) and a real
// JWKS (/jwks) so that the gateway's verifier runs exactly the code paths it
// runs against a real identity provider: `gateway demo` and the integration
// tests use it instead of mocks.
package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Supported signing algorithms for Options.Algorithm.
const (
	ES256 = "ES256"
	RS256 = "RS256"
	EdDSA = "EdDSA"
)

// Paths served by Handler, relative to the issuer URL's path.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/jwks"
	TokenPath     = "/token"
	AuthorizePath = "/authorize"
)

// Options configures an Issuer. The zero value is usable: ES256 keys and an
// issuer URL taken from Start.
type Options struct {
	// Issuer is the issuer URL (the "iss" claim and the discovery base). When
	// empty, Start sets it to http://<listen address>.
	Issuer string
	// Algorithm is the signing algorithm of generated keys: ES256 (default),
	// RS256 or EdDSA.
	Algorithm string
	// Audience, when set, is the "aud" Mint fills in when the claims have none.
	Audience string
	// Now is the clock used for iat/nbf/exp; defaults to time.Now.
	Now func() time.Time
	// Users are the people who can "sign in" at /authorize (no password:
	// DEVELOPMENT ONLY). Without users and clients /authorize answers 501.
	Users []User
	// Clients are the relying parties allowed at /authorize and /token.
	Clients []Client
	// NoRefreshTokens hides offline_access from discovery and issues no
	// refresh tokens, like an IdP that offers none.
	NoRefreshTokens bool
}

// key is one signing key and its published identity.
type key struct {
	kid    string
	alg    string
	signer crypto.Signer
}

// Issuer is a development OIDC issuer. It is safe for concurrent use.
type Issuer struct {
	alg      string
	audience string
	now      func() time.Time

	mu      sync.RWMutex
	issuer  string
	keys    []*key // published keys; the last one signs
	srv     *http.Server
	started bool

	jwksRequests      atomic.Int64
	discoveryRequests atomic.Int64

	flow      authFlow
	noRefresh bool
}

// New returns an Issuer with one freshly generated signing key.
func New(opts Options) (*Issuer, error) {
	alg := opts.Algorithm
	if alg == "" {
		alg = ES256
	}
	switch alg {
	case ES256, RS256, EdDSA:
	default:
		return nil, fmt.Errorf("devissuer: unsupported algorithm %q", alg)
	}
	if opts.Issuer != "" {
		if _, err := parseIssuer(opts.Issuer); err != nil {
			return nil, err
		}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	i := &Issuer{alg: alg, audience: opts.Audience, now: now, issuer: strings.TrimSuffix(opts.Issuer, "/"), noRefresh: opts.NoRefreshTokens}
	i.flow.init()
	for _, u := range opts.Users {
		if err := i.AddUser(u); err != nil {
			return nil, err
		}
	}
	for _, c := range opts.Clients {
		if err := i.AddClient(c); err != nil {
			return nil, err
		}
	}
	if err := i.Rotate(); err != nil {
		return nil, err
	}
	return i, nil
}

func parseIssuer(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("devissuer: parsing issuer url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("devissuer: issuer %q is not an absolute http(s) url without query", raw)
	}
	return u, nil
}

func generate(alg string) (*key, error) {
	var (
		s   crypto.Signer
		err error
	)
	switch alg {
	case ES256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	case EdDSA:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: generating %s key: %w", alg, err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("devissuer: generating key id: %w", err)
	}
	return &key{kid: "dev-" + hex.EncodeToString(b[:]), alg: alg, signer: s}, nil
}

// Rotate generates a new signing key. Later tokens are signed with it; every
// earlier key stays published in the JWKS so tokens it signed still verify.
func (i *Issuer) Rotate() error {
	k, err := generate(i.alg)
	if err != nil {
		return err
	}
	i.mu.Lock()
	i.keys = append(i.keys, k)
	i.mu.Unlock()
	return nil
}

func (i *Issuer) current() *key {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.keys[len(i.keys)-1]
}

// URL returns the issuer URL ("" before Start when Options.Issuer was empty).
func (i *Issuer) URL() string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.issuer
}

// KeyID returns the kid of the current signing key.
func (i *Issuer) KeyID() string { return i.current().kid }

// Algorithm returns the signing algorithm of the issuer's keys.
func (i *Issuer) Algorithm() string { return i.alg }

// Signer returns the current private key. Tests use it to forge tokens; it
// is exposed because this package is for development only.
func (i *Issuer) Signer() crypto.Signer { return i.current().signer }

// PublicKeys returns every published public key, oldest first.
func (i *Issuer) PublicKeys() []crypto.PublicKey {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]crypto.PublicKey, 0, len(i.keys))
	for _, k := range i.keys {
		out = append(out, k.signer.Public())
	}
	return out
}

// JWKS returns the published key set.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	i.mu.RLock()
	defer i.mu.RUnlock()
	var set jose.JSONWebKeySet
	for _, k := range i.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.signer.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
	}
	return set
}

// JWKSRequests returns how many times the JWKS has been served.
func (i *Issuer) JWKSRequests() int64 { return i.jwksRequests.Load() }

// DiscoveryRequests returns how many times the discovery document has been served.
func (i *Issuer) DiscoveryRequests() int64 { return i.discoveryRequests.Load() }

// Handler serves discovery, the JWKS and the authorization-code flow
// (/authorize, /token: see [Options.Users]) under the issuer URL's path. It answers 503 until the issuer URL
// is known (Options.Issuer or Start).
func (i *Issuer) Handler() http.Handler {
	return http.HandlerFunc(i.serveHTTP)
}

func (i *Issuer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	iss := i.URL()
	if iss == "" {
		http.Error(w, "issuer url not configured", http.StatusServiceUnavailable)
		return
	}
	u, err := parseIssuer(iss)
	if err != nil {
		http.Error(w, "bad issuer url", http.StatusInternalServerError)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, strings.TrimSuffix(u.Path, "/"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch rest {
	case DiscoveryPath:
		i.discoveryRequests.Add(1)
		scopes, grants := []string{"openid", "profile", "email"}, []string{"authorization_code", GrantTokenExchange}
		if !i.noRefresh {
			scopes, grants = append(scopes, ScopeOfflineAccess), append(grants, "refresh_token")
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              iss + JWKSPath,
			"authorization_endpoint":                iss + AuthorizePath,
			"token_endpoint":                        iss + TokenPath,
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{i.alg},
			"grant_types_supported":                 grants,
			"code_challenge_methods_supported":      []string{"S256"},
			"scopes_supported":                      scopes,
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		})
	case JWKSPath:
		i.jwksRequests.Add(1)
		writeJSON(w, http.StatusOK, i.JWKS())
	case TokenPath:
		i.token(w, r)
	case AuthorizePath:
		i.authorize(w, r)
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Start listens on addr (for example "127.0.0.1:0") and serves Handler in a
// goroutine. Without Options.Issuer the issuer URL becomes http://<address>.
// An Issuer starts at most once.
func (i *Issuer) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("devissuer: listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: i.Handler(), ReadHeaderTimeout: 10 * time.Second}
	i.mu.Lock()
	if i.started {
		i.mu.Unlock()
		_ = ln.Close()
		return errors.New("devissuer: already started (an issuer starts at most once)")
	}
	if i.issuer == "" {
		i.issuer = "http://" + ln.Addr().String()
	}
	i.srv, i.started = srv, true
	i.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Close stops the server started by Start. It is safe to call more than once
// and without Start.
func (i *Issuer) Close() error {
	i.mu.Lock()
	srv := i.srv
	i.srv = nil
	i.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("devissuer: closing server: %w", err)
	}
	return nil
}

// Mint signs claims with the current key. It fills iss, iat, nbf, exp
// (now+ttl), jti and, with Options.Audience, aud, unless the claims already
// hold them. The header is {"alg", "kid", "typ": "JWT"}.
func (i *Issuer) Mint(claims map[string]any, ttl time.Duration) (string, error) {
	iss := i.URL()
	if iss == "" {
		return "", errors.New("devissuer: issuer url unknown: set Options.Issuer or call Start")
	}
	c := maps.Clone(claims)
	if c == nil {
		c = map[string]any{}
	}
	now := i.now()
	setDefault(c, "iss", iss)
	setDefault(c, "iat", now.Unix())
	setDefault(c, "nbf", now.Unix())
	setDefault(c, "exp", now.Add(ttl).Unix())
	if i.audience != "" {
		setDefault(c, "aud", i.audience)
	}
	if _, ok := c["jti"]; !ok {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("devissuer: generating jti: %w", err)
		}
		c["jti"] = hex.EncodeToString(b[:])
	}
	return i.SignRaw(nil, c)
}

func setDefault(m map[string]any, k string, v any) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// SignRaw signs claims exactly as given (nothing is filled in) under a header
// built from header: "alg" defaults to the issuer's algorithm, "kid" to the
// current key id and "typ" to "JWT"; a key present with a nil value is
// omitted. The signature is made with the current key when "alg" suits it;
// "alg": "none" yields an unsigned token. Other algorithms (HS256, ...) are an
// error: build those with Encode and sign the result yourself.
func (i *Issuer) SignRaw(header, claims map[string]any) (string, error) {
	k := i.current()
	h := maps.Clone(header)
	if h == nil {
		h = map[string]any{}
	}
	setDefault(h, "alg", k.alg)
	setDefault(h, "kid", k.kid)
	setDefault(h, "typ", "JWT")
	for name, v := range h {
		if v == nil {
			delete(h, name)
		}
	}
	input, err := Encode(h, claims)
	if err != nil {
		return "", err
	}
	alg, _ := h["alg"].(string)
	sig, err := sign(k.signer, alg, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Encode returns the JWS signing input base64url(header) "." base64url(claims).
func Encode(header, claims map[string]any) (string, error) {
	hb, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("devissuer: encoding header: %w", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devissuer: encoding claims: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb), nil
}

func sign(s crypto.Signer, alg string, input []byte) ([]byte, error) {
	if alg == "none" {
		return nil, nil
	}
	digest := sha256.Sum256(input)
	switch k := s.(type) {
	case *ecdsa.PrivateKey:
		if alg != ES256 {
			break
		}
		r, sv, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return nil, fmt.Errorf("devissuer: signing: %w", err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		sv.FillBytes(out[32:])
		return out, nil
	case *rsa.PrivateKey:
		switch alg {
		case RS256:
			sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
			if err != nil {
				return nil, fmt.Errorf("devissuer: signing: %w", err)
			}
			return sig, nil
		case "PS256":
			sig, err := rsa.SignPSS(rand.Reader, k, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			if err != nil {
				return nil, fmt.Errorf("devissuer: signing: %w", err)
			}
			return sig, nil
		}
	case ed25519.PrivateKey:
		if alg == EdDSA {
			return ed25519.Sign(k, input), nil
		}
	}
	return nil, fmt.Errorf("devissuer: cannot sign alg %q with a %T key", alg, s)
}
