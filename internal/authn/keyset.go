package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// maxJWKSSize bounds a fetched key set document.
const maxJWKSSize = 1 << 20

// fetchReportKey carries a *fetchReport through go-oidc, which flattens the
// errors of KeySet.VerifySignature into text.
type fetchReportKey struct{}

// fetchReport lets the key set tell Authenticate that keys were unavailable.
type fetchReport struct{ err error }

func report(ctx context.Context, err error) {
	if r, ok := ctx.Value(fetchReportKey{}).(*fetchReport); ok {
		r.err = err
	}
}

// errNoKey means no published key verified the signature.
var errNoKey = errors.New("no published key verifies the token")

// flight is one in-progress fetch that concurrent callers wait on.
type flight struct {
	done chan struct{}
	err  error
}

// remoteKeySet is an oidc.KeySet backed by discovery and the issuer's JWKS.
// Fetches are lazy, coalesced, at most one per minRefresh once keys are
// loaded, and backed off exponentially (up to maxBackoff) while the issuer is
// unreachable.
type remoteKeySet struct {
	issuer     string
	client     *http.Client
	minRefresh time.Duration
	now        func() time.Time
	log        *slog.Logger

	mu       sync.Mutex
	jwksURL  string
	keys     []jose.JSONWebKey
	loaded   bool
	nextTry  time.Time
	failures int
	inflight *flight
}

var _ oidc.KeySet = (*remoteKeySet)(nil)

func newRemoteKeySet(issuer string, client *http.Client, minRefresh time.Duration, now func() time.Time, log *slog.Logger) *remoteKeySet {
	return &remoteKeySet{issuer: issuer, client: client, minRefresh: minRefresh, now: now, log: log}
}

// VerifySignature implements oidc.KeySet. The algorithm allow-list is
// enforced again here; an unknown kid or a failed check triggers at most one
// (rate-limited) refetch.
func (r *remoteKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, allowedJOSE)
	if err != nil {
		return nil, fmt.Errorf("parsing token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must carry exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if err := r.ensure(ctx); err != nil {
		report(ctx, err)
		return nil, err
	}
	if payload, ok := verifyWith(jws, r.snapshot(), h.KeyID, h.Algorithm); ok {
		return payload, nil
	}
	fetched, err := r.refresh(ctx)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			report(ctx, err)
		}
		return nil, err
	}
	if fetched {
		if payload, ok := verifyWith(jws, r.snapshot(), h.KeyID, h.Algorithm); ok {
			return payload, nil
		}
	}
	return nil, errNoKey
}

var allowedJOSE = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, 0, len(supportedAlgs))
	for _, a := range supportedAlgs {
		out = append(out, jose.SignatureAlgorithm(a))
	}
	return out
}()

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid, alg string) ([]byte, bool) {
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, true
		}
	}
	return nil, false
}

func (r *remoteKeySet) snapshot() []jose.JSONWebKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys
}

// ensure loads the keys once; it returns an error wrapping ErrUnavailable
// while they cannot be fetched.
func (r *remoteKeySet) ensure(ctx context.Context) error {
	r.mu.Lock()
	loaded := r.loaded
	r.mu.Unlock()
	if loaded {
		return nil
	}
	_, err := r.refresh(ctx)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		return r.unavailable()
	}
	return err
}

func (r *remoteKeySet) unavailable() error {
	return fmt.Errorf("%w: keys of issuer %s cannot be fetched; retrying", ErrUnavailable, r.issuer)
}

// errThrottled means a refetch was skipped because the last one was recent.
var errThrottled = errors.New("key set refetch throttled")

// refresh fetches the key set unless a fetch is in flight (then it waits for
// it) or the last attempt was too recent. fetched reports whether the keys
// may have changed.
func (r *remoteKeySet) refresh(ctx context.Context) (fetched bool, err error) {
	r.mu.Lock()
	if f := r.inflight; f != nil {
		r.mu.Unlock()
		select {
		case <-f.done:
			return true, f.err
		case <-ctx.Done():
			return false, r.unavailable()
		}
	}
	if r.now().Before(r.nextTry) {
		loaded := r.loaded
		r.mu.Unlock()
		if !loaded {
			return false, r.unavailable()
		}
		return false, errThrottled
	}
	f := &flight{done: make(chan struct{})}
	r.inflight = f
	jwksURL := r.jwksURL
	r.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	keys, jwksURL, ferr := r.fetch(fctx, jwksURL)
	cancel()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight = nil
	now := r.now()
	if ferr != nil {
		r.failures++
		wait := time.Second << min(r.failures-1, 6)
		wait = min(wait, maxBackoff)
		if r.loaded {
			wait = max(wait, r.minRefresh)
		}
		r.nextTry = now.Add(wait)
		r.log.WarnContext(ctx, "fetching issuer keys failed", "error", ferr, "retry_in", wait)
		f.err = r.unavailable()
	} else {
		r.jwksURL, r.keys, r.loaded, r.failures = jwksURL, keys, true, 0
		r.nextTry = now.Add(r.minRefresh)
		r.log.DebugContext(ctx, "fetched issuer keys", "keys", len(keys))
	}
	close(f.done)
	return true, f.err
}

// fetch runs discovery (when jwksURL is still unknown) and fetches the JWKS.
func (r *remoteKeySet) fetch(ctx context.Context, jwksURL string) ([]jose.JSONWebKey, string, error) {
	if jwksURL == "" {
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, r.client), r.issuer)
		if err != nil {
			return nil, "", fmt.Errorf("discovery: %w", err)
		}
		var meta struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
			return nil, "", errors.New("discovery: no jwks_uri")
		}
		jwksURL = meta.JWKSURI
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, "", fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("jwks: reading body: %w", err)
	}
	if len(body) > maxJWKSSize {
		return nil, "", errors.New("jwks: document too large")
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, "", err
	}
	return keys, jwksURL, nil
}

// parseJWKS keeps the usable public signing keys of a JWKS document.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("jwks: decoding: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, rk := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(rk); err != nil {
			continue // unsupported key types are skipped, not fatal
		}
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		switch pub := k.Key.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable signing keys")
	}
	return keys, nil
}
