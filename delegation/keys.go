package delegation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	defaultMaxTokenTTL     = 15 * time.Minute
	defaultPublishWindow   = time.Hour
	defaultRefreshInterval = 2 * time.Second
	// maxJWTLen bounds the size of a token this package will parse.
	maxJWTLen = 16 << 10
	// typJWT and typAccessToken are the JWS "typ" header values of identity
	// assertions and of delegation tokens (RFC 9068) respectively.
	typJWT         = "JWT"
	typAccessToken = "at+jwt"
)

// ErrUnknownKey reports a token signed with a key id that neither this
// replica nor the key store knows.
var ErrUnknownKey = errors.New("unknown signing key")

// KeyStore publishes the public signing keys of every replica. Implementations
// live elsewhere (memory, Redis); [NewMemoryKeyStore] serves one replica and tests.
type KeyStore interface {
	// PublishKey publishes the public JWK jwk under kid until the given time.
	// Publishing a kid again extends its publication.
	PublishKey(ctx context.Context, kid string, jwk []byte, until time.Time) error
	// PublishedKeys returns every public JWK whose publication has not ended.
	PublishedKeys(ctx context.Context) ([][]byte, error)
}

// MemoryKeyStore is an in-process [KeyStore] for a single replica and tests.
type MemoryKeyStore struct {
	mu   sync.Mutex
	keys map[string]memoryKey
	now  func() time.Time
}

type memoryKey struct {
	jwk   []byte
	until time.Time
}

// NewMemoryKeyStore returns an empty in-process key store.
func NewMemoryKeyStore() *MemoryKeyStore {
	return &MemoryKeyStore{keys: map[string]memoryKey{}, now: time.Now}
}

// PublishKey implements [KeyStore]. The publication of a kid only ever grows.
func (s *MemoryKeyStore) PublishKey(_ context.Context, kid string, jwk []byte, until time.Time) error {
	if kid == "" || len(jwk) == 0 {
		return errors.New("publish key: empty kid or jwk")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.keys[kid]; ok && old.until.After(until) {
		until = old.until
	}
	s.keys[kid] = memoryKey{jwk: append([]byte(nil), jwk...), until: until}
	return nil
}

// PublishedKeys implements [KeyStore]; expired keys are dropped.
func (s *MemoryKeyStore) PublishedKeys(context.Context) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	kids := make([]string, 0, len(s.keys))
	for kid, k := range s.keys {
		if !k.until.After(now) {
			delete(s.keys, kid)
			continue
		}
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	out := make([][]byte, 0, len(kids))
	for _, kid := range kids {
		out = append(out, append([]byte(nil), s.keys[kid].jwk...))
	}
	return out, nil
}

// KeyOptions configures [NewKeys].
type KeyOptions struct {
	// MaxTokenTTL is the longest lifetime of any token these keys sign
	// (delegation tokens and assertions). Default 15m. [Keys.Sign] refuses
	// an exp further away than this.
	MaxTokenTTL time.Duration
	// PublishWindow is how far ahead the public key's publication is
	// extended at a time while the process signs. Default 1h. A dead
	// replica's key stays published for at most PublishWindow + MaxTokenTTL.
	PublishWindow time.Duration
	// RefreshInterval is the least time between two reads of the key store
	// caused by tokens with an unknown kid. Default 2s.
	RefreshInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives key lifecycle events; default discards.
	Logger *slog.Logger
}

// Keys holds this replica's ES256 signing key and a cache of the public keys
// of every replica. It is safe for concurrent use.
//
// *Keys has the method set of go-oidc's oidc.KeySet (VerifySignature), so it
// can back an oidc.IDTokenVerifier for the gateway's own tokens (set
// SupportedSigningAlgs to ES256 there).
type Keys struct {
	store  KeyStore
	opts   KeyOptions
	log    *slog.Logger
	kid    string
	pub    *ecdsa.PublicKey
	jwk    []byte // own public JWK
	signer map[string]jose.Signer

	pubMu          sync.Mutex
	publishedUntil time.Time

	refreshMu   sync.Mutex // serialises store reads
	cacheMu     sync.RWMutex
	cache       map[string]cachedKey
	lastRefresh time.Time
}

type cachedKey struct {
	pub *ecdsa.PublicKey
	jwk []byte
}

// NewKeys makes a new ES256 key (kid = its RFC 7638 thumbprint) and publishes
// its public half to store until now + PublishWindow + MaxTokenTTL, so that
// keys of earlier starts stay published until the tokens they signed expire.
func NewKeys(ctx context.Context, store KeyStore, opts KeyOptions) (*Keys, error) {
	if store == nil {
		return nil, errors.New("new keys: nil key store")
	}
	if opts.MaxTokenTTL <= 0 {
		opts.MaxTokenTTL = defaultMaxTokenTTL
	}
	if opts.PublishWindow <= 0 {
		opts.PublishWindow = defaultPublishWindow
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = defaultRefreshInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new keys: generate key: %w", err)
	}
	pubJWK := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pubJWK.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("new keys: thumbprint: %w", err)
	}
	pubJWK.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	raw, err := pubJWK.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("new keys: marshal jwk: %w", err)
	}
	k := &Keys{
		store:  store,
		opts:   opts,
		log:    log,
		kid:    pubJWK.KeyID,
		pub:    &priv.PublicKey,
		jwk:    raw,
		signer: map[string]jose.Signer{},
		cache:  map[string]cachedKey{},
	}
	for _, typ := range []string{typJWT, typAccessToken, typTxnToken} {
		s, err := jose.NewSigner(
			jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: k.kid}},
			(&jose.SignerOptions{}).WithType(jose.ContentType(typ)),
		)
		if err != nil {
			return nil, fmt.Errorf("new keys: signer: %w", err)
		}
		k.signer[typ] = s
	}
	k.cache[k.kid] = cachedKey{pub: k.pub, jwk: k.jwk}
	if err := k.publish(ctx, opts.Now()); err != nil {
		return nil, fmt.Errorf("new keys: %w", err)
	}
	log.InfoContext(ctx, "signing key created", "kid", k.kid)
	return k, nil
}

// KeyID returns the kid of this replica's signing key.
func (k *Keys) KeyID() string { return k.kid }

// publish (re)publishes the own key until now + PublishWindow + MaxTokenTTL.
func (k *Keys) publish(ctx context.Context, now time.Time) error {
	k.pubMu.Lock()
	defer k.pubMu.Unlock()
	return k.publishLocked(ctx, now)
}

func (k *Keys) publishLocked(ctx context.Context, now time.Time) error {
	until := now.Add(k.opts.PublishWindow + k.opts.MaxTokenTTL)
	if err := k.store.PublishKey(ctx, k.kid, k.jwk, until); err != nil {
		return fmt.Errorf("publish key: %w", err)
	}
	if until.After(k.publishedUntil) {
		k.publishedUntil = until
	}
	return nil
}

// Maintain republishes the own key every interval until ctx ends, so a
// shared store that lost its data (a Redis restart or failover) has the key
// back within one interval, and replicas started meanwhile verify what this
// one signs.
func (k *Keys) Maintain(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.publish(ctx, k.opts.Now()); err != nil {
				k.log.WarnContext(ctx, "republishing the signing key failed; will retry", "kid", k.kid, "error", err)
			}
		}
	}
}

// ensurePublished makes sure the own key stays published at least until exp.
// The publication is extended once exp comes within MaxTokenTTL of its end;
// a failed extension is only an error when exp is past the current end.
func (k *Keys) ensurePublished(ctx context.Context, now, exp time.Time) error {
	k.pubMu.Lock()
	defer k.pubMu.Unlock()
	if exp.Add(k.opts.MaxTokenTTL).Before(k.publishedUntil) {
		return nil
	}
	err := k.publishLocked(ctx, now)
	if err != nil && !exp.After(k.publishedUntil) {
		k.log.WarnContext(ctx, "extending the signing key's publication failed; will retry", "kid", k.kid, "error", err)
		return nil
	}
	return err
}

// Sign signs claims as a compact JWS (typ JWT, alg ES256, kid). claims must
// hold a numeric "exp" no further than MaxTokenTTL from now; this keeps the
// key published for as long as the token can be verified.
func (k *Keys) Sign(ctx context.Context, claims map[string]any) (string, error) {
	return k.sign(ctx, typJWT, claims)
}

func (k *Keys) sign(ctx context.Context, typ string, claims map[string]any) (string, error) {
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return "", errors.New("sign: claims need a numeric exp")
	}
	now := k.opts.Now()
	if exp.After(now.Add(k.opts.MaxTokenTTL + time.Second)) {
		return "", fmt.Errorf("sign: exp is more than %s away", k.opts.MaxTokenTTL)
	}
	if err := k.ensurePublished(ctx, now, exp); err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: marshal claims: %w", err)
	}
	jws, err := k.signer[typ].Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("sign: serialize: %w", err)
	}
	return out, nil
}

// VerifySignature checks that jwt is a compact ES256 JWS signed by a key of
// this gateway (this replica's or one published by another replica) and
// returns its payload. It checks no claims. An unknown kid causes a
// throttled re-read of the key store. The method matches go-oidc's
// oidc.KeySet.
func (k *Keys) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, _, err := k.verify(ctx, jwt)
	return payload, err
}

// AccessTokenKeySet is the key set for verifying delegation tokens where a
// bearer token is expected (/mcp): like Keys, but a token of another type
// signed with the same keys — an upstream assertion, a transaction token —
// is refused whatever its audience.
func (k *Keys) AccessTokenKeySet() AccessTokenKeySet { return AccessTokenKeySet{k} }

// AccessTokenKeySet verifies only delegation tokens (typ at+jwt).
type AccessTokenKeySet struct{ k *Keys }

// VerifySignature has the shape of go-oidc's KeySet.
func (a AccessTokenKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, typ, err := a.k.verify(ctx, jwt)
	if err != nil {
		return nil, err
	}
	if typ != typAccessToken {
		return nil, fmt.Errorf("verify: a %q token is not a delegation token", typ)
	}
	return payload, nil
}

// verify returns the payload and the "typ" header of a token signed by us.
func (k *Keys) verify(ctx context.Context, raw string) ([]byte, string, error) {
	if len(raw) > maxJWTLen {
		return nil, "", errors.New("verify: token too large")
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, "", fmt.Errorf("verify: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, "", errors.New("verify: want exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if h.KeyID == "" {
		return nil, "", errors.New("verify: token has no kid")
	}
	if h.JSONWebKey != nil {
		return nil, "", errors.New("verify: embedded jwk not accepted")
	}
	pub, err := k.lookup(ctx, h.KeyID)
	if err != nil {
		return nil, "", fmt.Errorf("verify: %w", err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, "", fmt.Errorf("verify: %w", err)
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	return payload, typ, nil
}

// lookup finds the public key for kid, re-reading the store (at most once
// per RefreshInterval) when the kid is unknown.
func (k *Keys) lookup(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	k.cacheMu.RLock()
	c, ok := k.cache[kid]
	k.cacheMu.RUnlock()
	if ok {
		return c.pub, nil
	}
	if err := k.refresh(ctx, false); err != nil {
		return nil, err
	}
	k.cacheMu.RLock()
	c, ok = k.cache[kid]
	k.cacheMu.RUnlock()
	if !ok {
		return nil, ErrUnknownKey
	}
	return c.pub, nil
}

// refresh re-reads the store unless it was read within RefreshInterval (or
// force is set). Concurrent callers wait for one read.
func (k *Keys) refresh(ctx context.Context, force bool) error {
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	now := k.opts.Now()
	k.cacheMu.RLock()
	recent := !k.lastRefresh.IsZero() && now.Sub(k.lastRefresh) < k.opts.RefreshInterval
	k.cacheMu.RUnlock()
	if recent && !force {
		return nil
	}
	raws, err := k.store.PublishedKeys(ctx)
	if err != nil {
		return fmt.Errorf("read key store: %w", err)
	}
	next := map[string]cachedKey{k.kid: {pub: k.pub, jwk: k.jwk}}
	ownFound := false
	for _, raw := range raws {
		kid, pub, err := parsePublicJWK(raw)
		if err != nil {
			k.log.WarnContext(ctx, "ignoring bad published key", "error", err)
			continue
		}
		ownFound = ownFound || kid == k.kid
		next[kid] = cachedKey{pub: pub, jwk: append([]byte(nil), raw...)}
	}
	if !ownFound {
		// The store lost the own key (emptied or failed over): publish it
		// again so other replicas can verify what this one signs.
		if err := k.publish(ctx, now); err != nil {
			k.log.WarnContext(ctx, "republishing the signing key failed", "kid", k.kid, "error", err)
		} else {
			k.log.InfoContext(ctx, "signing key republished: the key store had lost it", "kid", k.kid)
		}
	}
	k.cacheMu.Lock()
	k.cache = next
	k.lastRefresh = now
	k.cacheMu.Unlock()
	return nil
}

// parsePublicJWK accepts only public P-256 keys whose kid is their RFC 7638
// thumbprint.
func parsePublicJWK(raw []byte) (string, *ecdsa.PublicKey, error) {
	var j jose.JSONWebKey
	if err := j.UnmarshalJSON(raw); err != nil {
		return "", nil, fmt.Errorf("parse jwk: %w", err)
	}
	pub, ok := j.Key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || !j.Valid() {
		return "", nil, errors.New("parse jwk: not a public P-256 key")
	}
	if j.Algorithm != "" && j.Algorithm != string(jose.ES256) {
		return "", nil, fmt.Errorf("parse jwk: algorithm %q", j.Algorithm)
	}
	if j.Use != "" && j.Use != "sig" {
		return "", nil, fmt.Errorf("parse jwk: use %q", j.Use)
	}
	tp, err := j.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", nil, fmt.Errorf("parse jwk: %w", err)
	}
	if j.KeyID == "" || j.KeyID != base64.RawURLEncoding.EncodeToString(tp) {
		return "", nil, errors.New("parse jwk: kid is not the key thumbprint")
	}
	return j.KeyID, pub, nil
}

// JWKS returns the JSON Web Key Set {"keys":[...]} of every public key that
// may verify a live token: this replica's and the store's unexpired ones.
func (k *Keys) JWKS(ctx context.Context) ([]byte, error) {
	if err := k.refresh(ctx, false); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	k.cacheMu.RLock()
	kids := make([]string, 0, len(k.cache))
	for kid := range k.cache {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	keys := make([]json.RawMessage, 0, len(kids))
	for _, kid := range kids {
		keys = append(keys, k.cache[kid].jwk)
	}
	k.cacheMu.RUnlock()
	out, err := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{keys})
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return out, nil
}

// Handler serves [Keys.JWKS] (GET or HEAD) with a short Cache-Control, for
// /.well-known/jwks.json. A key-store failure is a 503.
func (k *Keys) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := k.JWKS(r.Context())
		if err != nil {
			k.log.ErrorContext(r.Context(), "serving jwks", "error", err)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "signing keys unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(body)
	})
}

// numericDate reads a JWT NumericDate as decoded from JSON or set by Go code.
func numericDate(v any) (time.Time, bool) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case int64:
		return time.Unix(n, 0), true
	case int:
		return time.Unix(int64(n), 0), true
	case json.Number:
		x, err := n.Float64()
		if err != nil {
			return time.Time{}, false
		}
		f = x
	default:
		return time.Time{}, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
