package delegation

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TxnTokenHeader is the HTTP header that carries a transaction token
// (draft-ietf-oauth-transaction-tokens); never Authorization.
const TxnTokenHeader = "Txn-Token"

// typTxnToken is the JWS typ of transaction tokens.
const typTxnToken = "txntoken+jwt"

// TxnToken describes a transaction token (draft-ietf-oauth-transaction-tokens-10)
// for one call inside the gateway's trust domain: an alternative to, or
// companion of, the identity [Assertion].
type TxnToken struct {
	// Issuer is the gateway's public_url (iss), optional.
	Issuer string
	// TrustDomain identifies the trust domain (aud); required.
	TrustDomain string
	// Transaction is the unique transaction id (txn); a random one when empty.
	Transaction string
	// Subject is the human (sub); required.
	Subject string
	// Scope is the purpose of the transaction (scope), e.g. the tool name; required.
	Scope string
	// RequestingWorkload identifies the gateway (req_wl); required.
	RequestingWorkload string
	// Context is the immutable authorization context (tctx), e.g. the agent,
	// the delegation id and the roles. It must never hold a token.
	Context map[string]any
	// RequestContext describes the request environment (rctx).
	RequestContext map[string]any
	// TTL is the token's life: default and maximum 60s.
	TTL time.Duration
}

// TxnToken signs t as a transaction token (typ txntoken+jwt, ES256) with
// claims iat, exp (≤ 60 s), aud, txn, sub, scope, req_wl and, when set, iss,
// tctx and rctx. Send it in the [TxnTokenHeader] header.
func (k *Keys) TxnToken(ctx context.Context, t TxnToken) (string, error) {
	switch {
	case t.TrustDomain == "":
		return "", errors.New("txn token: empty trust domain")
	case t.Subject == "":
		return "", errors.New("txn token: empty subject")
	case t.Scope == "":
		return "", errors.New("txn token: empty scope")
	case t.RequestingWorkload == "":
		return "", errors.New("txn token: empty requesting workload")
	case t.TTL < 0:
		return "", errors.New("txn token: negative ttl")
	}
	ttl := t.TTL
	if ttl == 0 || ttl > MaxAssertionTTL {
		ttl = MaxAssertionTTL
	}
	txn := t.Transaction
	if txn == "" {
		var err error
		if txn, err = newID(); err != nil {
			return "", fmt.Errorf("txn token: %w", err)
		}
	}
	now := k.opts.Now()
	claims := map[string]any{
		"iat":    now.Unix(),
		"exp":    now.Add(ttl).Unix(),
		"aud":    t.TrustDomain,
		"txn":    txn,
		"sub":    t.Subject,
		"scope":  t.Scope,
		"req_wl": t.RequestingWorkload,
	}
	if t.Issuer != "" {
		claims["iss"] = t.Issuer
	}
	if len(t.Context) > 0 {
		claims["tctx"] = t.Context
	}
	if len(t.RequestContext) > 0 {
		claims["rctx"] = t.RequestContext
	}
	tok, err := k.sign(ctx, typTxnToken, claims)
	if err != nil {
		return "", fmt.Errorf("txn token: %w", err)
	}
	return tok, nil
}
