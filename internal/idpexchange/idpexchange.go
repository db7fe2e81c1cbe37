// Package idpexchange obtains, for an upstream that trusts only the company
// identity provider, a token that IdP issues for the human by RFC 8693 token
// exchange. The caller's own token is the subject token; it is sent only to
// the configured token endpoint and never logged or kept: the cache is keyed
// by a hash of it.
package idpexchange

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// RFC 8693 names.
const (
	GrantType       = "urn:ietf:params:oauth:grant-type:token-exchange"
	AccessTokenType = "urn:ietf:params:oauth:token-type:access_token"
)

// Defaults.
const (
	DefaultTimeout = 5 * time.Second
	// MaxResponse bounds the token endpoint's answer.
	MaxResponse = 64 << 10
	// cacheMax bounds the cache; past it, it starts over.
	cacheMax = 10000
	// earlyRenew is how long before expiry a cached token is no longer used.
	earlyRenew = 30 * time.Second
	// defaultTTL is assumed when the IdP names no expires_in.
	defaultTTL = 60 * time.Second
)

// ErrExchange is wrapped by every failure of an exchange.
var ErrExchange = errors.New("token exchange at the identity provider failed")

// Config is one upstream's exchange.
type Config struct {
	TokenURL     string
	ClientID     string
	ClientSecret string // never logged
	Audience     string
	Scope        string
	// Timeout bounds one exchange; default DefaultTimeout.
	Timeout time.Duration
	// Client makes the request; default a new http.Client.
	Client *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Exchanger exchanges subject tokens for one or more upstreams.
type Exchanger struct {
	cfg Config

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	tok     string
	expires time.Time
}

// New returns an Exchanger for cfg.
func New(cfg Config) (*Exchanger, error) {
	if cfg.TokenURL == "" || cfg.ClientID == "" {
		return nil, errors.New("idpexchange: token_url and client_id are required")
	}
	u, err := url.Parse(cfg.TokenURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("idpexchange: %q is not an absolute http(s) URL", cfg.TokenURL)
	}
	if u.User != nil {
		return nil, errors.New("idpexchange: the token URL must not carry credentials (use client_id and client_secret)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	// The request carries the human's token: a redirect must never send it
	// on to another address.
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.Client = &c
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Exchanger{cfg: cfg}, nil
}

// Exchange returns a token the IdP issued for the subject of subjectToken,
// for upstream, and when it expires. A token is reused, per subject token
// and upstream, until shortly before it expires. Errors never contain a
// token or the client secret.
func (e *Exchanger) Exchange(ctx context.Context, subjectToken, upstream string) (string, time.Time, error) {
	if subjectToken == "" {
		return "", time.Time{}, fmt.Errorf("%w: no subject token", ErrExchange)
	}
	sum := sha256.Sum256([]byte(subjectToken))
	key := hex.EncodeToString(sum[:]) + "|" + upstream
	now := e.cfg.Now()
	e.mu.Lock()
	c, ok := e.cache[key]
	e.mu.Unlock()
	if ok && c.expires.Sub(now) > earlyRenew {
		return c.tok, c.expires, nil
	}
	tok, exp, err := e.exchange(ctx, subjectToken)
	if err != nil {
		return "", time.Time{}, err
	}
	if exp.Sub(now) > earlyRenew {
		e.mu.Lock()
		if e.cache == nil || len(e.cache) >= cacheMax {
			e.cache = make(map[string]cached) // bounded: start over rather than grow
		}
		e.cache[key] = cached{tok: tok, expires: exp}
		e.mu.Unlock()
	}
	return tok, exp, nil
}

type tokenResponse struct {
	AccessToken     string      `json:"access_token"`
	IssuedTokenType string      `json:"issued_token_type"`
	TokenType       string      `json:"token_type"`
	ExpiresIn       json.Number `json:"expires_in"`
	Error           string      `json:"error"`
	ErrorDesc       string      `json:"error_description"`
}

func (e *Exchanger) exchange(ctx context.Context, subjectToken string) (string, time.Time, error) {
	form := url.Values{
		"grant_type":           {GrantType},
		"subject_token":        {subjectToken},
		"subject_token_type":   {AccessTokenType},
		"requested_token_type": {AccessTokenType},
	}
	if e.cfg.Audience != "" {
		form.Set("audience", e.cfg.Audience)
	}
	if e.cfg.Scope != "" {
		form.Set("scope", e.cfg.Scope)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %s", ErrExchange, "cannot build the request")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 2.3.1: client id and secret are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(e.cfg.ClientID), url.QueryEscape(e.cfg.ClientSecret))
	start := e.cfg.Now()
	resp, err := e.cfg.Client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return "", time.Time{}, fmt.Errorf("%w: %s timed out", ErrExchange, e.cfg.TokenURL)
		}
		return "", time.Time{}, fmt.Errorf("%w: %s unreachable", ErrExchange, e.cfg.TokenURL)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		if ctx.Err() != nil {
			return "", time.Time{}, fmt.Errorf("%w: %s timed out", ErrExchange, e.cfg.TokenURL)
		}
		return "", time.Time{}, fmt.Errorf("%w: reading the answer of %s failed", ErrExchange, e.cfg.TokenURL)
	}
	if len(body) > MaxResponse {
		return "", time.Time{}, fmt.Errorf("%w: the answer of %s is larger than %d bytes", ErrExchange, e.cfg.TokenURL, MaxResponse)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		if jsonErr == nil && tr.Error != "" {
			desc := ""
			if tr.ErrorDesc != "" {
				desc = ": " + safe(tr.ErrorDesc, 200, subjectToken, e.cfg.ClientSecret)
			}
			return "", time.Time{}, fmt.Errorf("%w: %s answered %d %s%s", ErrExchange, e.cfg.TokenURL, resp.StatusCode, safe(tr.Error, 64, subjectToken, e.cfg.ClientSecret), desc)
		}
		return "", time.Time{}, fmt.Errorf("%w: %s answered %d", ErrExchange, e.cfg.TokenURL, resp.StatusCode)
	}
	if jsonErr != nil || tr.AccessToken == "" {
		return "", time.Time{}, fmt.Errorf("%w: %s answered without an access_token", ErrExchange, e.cfg.TokenURL)
	}
	if tt := strings.ToLower(tr.TokenType); tt != "" && tt != "bearer" && tt != "n_a" {
		return "", time.Time{}, fmt.Errorf("%w: %s issued a token of type %s, not a bearer token", ErrExchange, e.cfg.TokenURL, safe(tr.TokenType, 32, subjectToken, e.cfg.ClientSecret))
	}
	ttl := defaultTTL
	if tr.ExpiresIn != "" {
		n, err := tr.ExpiresIn.Int64()
		if err != nil || n <= 0 {
			return "", time.Time{}, fmt.Errorf("%w: %s answered an invalid expires_in", ErrExchange, e.cfg.TokenURL)
		}
		ttl = time.Duration(n) * time.Second
	}
	return tr.AccessToken, start.Add(ttl), nil
}

// safe bounds and cleans text from the IdP before it enters an error: the
// secrets given are never echoed, and text that looks like it carries a
// token (a JWT) is dropped.
func safe(s string, max int, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			return "(withheld: it echoes a credential)"
		}
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if strings.Count(s, ".") >= 2 && strings.Contains(s, "eyJ") {
		return "(withheld: it looks like it holds a token)"
	}
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}
