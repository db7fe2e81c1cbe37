// Package store holds the state that gateway replicas share: legacy MCP
// sessions, token revocations, the gateway's public signing keys,
// short-lived OAuth state and preview environments. Memory serves one replica; Redis serves many.
// State that anyone can create without signing in (registered clients,
// pending authorizations) goes to a Bounded namespace with its own quota.
//
// Every entry has a time to live and nothing grows without bound. Every
// method returns an error when the backing store cannot answer (Redis down,
// slow, or the memory table full); callers fail closed on it: an IsRevoked
// error means "treat as revoked", a GetSession error means "refuse".
//
// Callers should declare the small interface they use (or use Sessions,
// Revocations, Keys and KV below); *Memory and *Redis implement all of them.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrInvalid reports a call with an empty id or key or a non-positive TTL.
var ErrInvalid = errors.New("store: invalid argument")

// ErrFull reports that a memory table holds its maximum number of live
// entries.
var ErrFull = errors.New("store: full")

// Session is a legacy (session-based) MCP session bound to the principal
// that opened it.
type Session struct {
	// Issuer and Subject identify the human.
	Issuer  string `json:"iss"`
	Subject string `json:"sub"`
	// Agent identifies the agent (client) acting for the human.
	Agent string `json:"agent"`
	// Protocol is the negotiated MCP protocol revision.
	Protocol string `json:"protocol"`
	// Created is when the session was opened.
	Created time.Time `json:"created"`
	// Environment is the preview environment the session was opened at;
	// "" for production. A session is served only there.
	Environment string `json:"env,omitempty"`
}

// Sessions stores legacy MCP sessions.
type Sessions interface {
	// PutSession stores s under id for ttl (> 0), replacing any session there.
	PutSession(ctx context.Context, id string, s Session, ttl time.Duration) error
	// GetSession returns the live session id; false when absent or expired.
	GetSession(ctx context.Context, id string) (Session, bool, error)
	// TouchSession sets the remaining life of session id to ttl (> 0);
	// false when absent or expired.
	TouchSession(ctx context.Context, id string, ttl time.Duration) (bool, error)
	// DeleteSession removes session id; deleting an absent one is no error.
	DeleteSession(ctx context.Context, id string) error
}

// SessionWatcher is told of deleted sessions; an in-process session cache
// implements it.
type SessionWatcher interface {
	// SessionDeleted reports that session id was deleted, on any replica.
	SessionDeleted(id string)
	// SessionsReset tells the watcher to forget every session it holds:
	// deletions may have been missed. live reports whether, from now on,
	// every deletion is reported (true once a watch is (re)established,
	// false when it failed or ended).
	SessionsReset(live bool)
}

// SessionWatch reports session deletions made through any replica's store.
type SessionWatch interface {
	// WatchSessions reports deletions to w until ctx ends, then calls
	// w.SessionsReset(false) and returns. A watch that breaks (Redis
	// unreachable, reconnect) is reported as SessionsReset(false) and, once
	// re-established, SessionsReset(true).
	WatchSessions(ctx context.Context, w SessionWatcher) error
}

// Revocations records revoked token ids (jti) until the tokens expire.
type Revocations interface {
	// Revoke marks id revoked until the given time (normally the token's
	// expiry). A later Revoke can only extend it; until in the past is a
	// no-op (the token is dead anyway).
	Revoke(ctx context.Context, id string, until time.Time) error
	// IsRevoked reports whether id is revoked now. On error, callers must
	// treat the token as revoked.
	IsRevoked(ctx context.Context, id string) (bool, error)
}

// Keys publishes the gateway's public signing keys (JWKs) across replicas.
type Keys interface {
	// PublishKey publishes jwk (one JSON Web Key) under kid until the given
	// time, replacing an earlier publication of kid.
	PublishKey(ctx context.Context, kid string, jwk []byte, until time.Time) error
	// PublishedKeys returns every unexpired key, ordered by kid.
	PublishedKeys(ctx context.Context) ([][]byte, error)
	// UnpublishKey ends the publication of kid at once (a retired preview
	// environment's key); an absent kid is no error.
	UnpublishKey(ctx context.Context, kid string) error
}

// KV stores short-lived values such as OAuth state and authorization codes.
type KV interface {
	// Put stores val under key for ttl (> 0).
	Put(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Get returns the value under key; false when absent or expired.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Take atomically returns and deletes the value under key: of concurrent
	// Takes (on any replica) exactly one gets it. For single-use codes.
	Take(ctx context.Context, key string) ([]byte, bool, error)
	// Delete removes key; deleting an absent key is no error.
	Delete(ctx context.Context, key string) error
}

// Store is everything: what the server wires, whether Memory or Redis.
type Store interface {
	Sessions
	Revocations
	Keys
	KV
	Bounder
	Environments
	// Ping reports whether the store can answer, for /readyz.
	Ping(ctx context.Context) error
}

var (
	_ Store        = (*Memory)(nil)
	_ Store        = (*Redis)(nil)
	_ SessionWatch = (*Memory)(nil)
	_ SessionWatch = (*Redis)(nil)
)

// checkID rejects an empty id, key or kid.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	return nil
}

// checkTTL rejects a non-positive TTL: nothing lives forever.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl must be positive", ErrInvalid)
	}
	return nil
}

// encodeSession is the stored form of a session.
func encodeSession(s Session) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("store: encoding session: %w", err)
	}
	return b, nil
}

// decodeSession parses the stored form of a session; malformed data is an
// error (the caller refuses the session).
func decodeSession(b []byte) (Session, error) {
	var s Session
	if err := json.Unmarshal(b, &s); err != nil {
		return Session{}, fmt.Errorf("store: decoding session: %w", err)
	}
	return s, nil
}

// encodeKeyEntry is the stored form of a published key: "<until unix
// ms>:<jwk>".
func encodeKeyEntry(jwk []byte, until time.Time) []byte {
	b := strconv.AppendInt(nil, until.UnixMilli(), 10)
	b = append(b, ':')
	return append(b, jwk...)
}

// decodeKeyEntry parses encodeKeyEntry's output.
func decodeKeyEntry(b []byte) (jwk []byte, until time.Time, err error) {
	for i, c := range b {
		if c == ':' {
			ms, err := strconv.ParseInt(string(b[:i]), 10, 64)
			if err != nil || ms < 0 || i > 19 {
				return nil, time.Time{}, errors.New("store: malformed key entry")
			}
			return b[i+1:], time.UnixMilli(ms), nil
		}
		if c < '0' || c > '9' {
			break
		}
	}
	return nil, time.Time{}, errors.New("store: malformed key entry")
}
