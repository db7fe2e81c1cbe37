// Package delegation lets humans hand narrowed, revocable authority to agents
// and tells upstream services who is calling.
//
// It provides the pieces that the gateway composes:
//
//   - [Keys]: the gateway's ES256 signing keys. A new key is made at every
//     start and published to a shared [KeyStore] until the last token it may
//     have signed has expired, so every replica verifies every other's tokens
//     and [Keys.Handler] serves them all as /.well-known/jwks.json.
//   - [Keys.Assert]: short-lived identity assertions (≤ 60 s) that the gateway
//     attaches to upstream requests instead of the agent's own token.
//   - [Exchange]: the RFC 8693 token-exchange endpoint (POST /oauth/token)
//     that turns a human's token into a delegation token for an agent, limited
//     to a set of "tool:<glob>" scopes, and the RFC 7009 revocation endpoint
//     (POST /oauth/revoke). Re-exchanging a delegation token only narrows it.
//   - [ScopeAllows]: whether a grant's scopes allow a tool.
//   - [Keys.TxnToken]: an optional transaction token (Txn-Token header,
//     draft-ietf-oauth-transaction-tokens) for upstreams that want one.
//
// The package never logs a token.
package delegation
