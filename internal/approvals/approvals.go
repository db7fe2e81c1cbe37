// Package approvals holds calls that a policy decision says need a human's
// approval, bound to the exact call: SHA-256 of the RFC 8785 canonical JSON
// of tool and arguments, plus the human, the agent and the environment.
// Requests live in the shared store (store.KV) with the decision's ttl, so
// any replica can hold a call, show it to an approver and run it once
// approved.
package approvals

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gowebpki/jcs"
)

// KV is the part of the shared store approvals use.
type KV interface {
	Put(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Take(ctx context.Context, key string) ([]byte, bool, error)
	Delete(ctx context.Context, key string) error
}

// Status of a request.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusDenied   = "denied"
)

// Request is one held call waiting for (or decided by) an approver.
type Request struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
	// The human the agent acts for.
	Issuer  string `json:"iss"`
	Subject string `json:"sub"`
	Email   string `json:"email,omitempty"`
	Name    string `json:"name,omitempty"`
	// Agent is the acting agent (client).
	Agent       string `json:"agent,omitempty"`
	Environment string `json:"environment,omitempty"`
	Tool        string `json:"tool"`
	// Arguments are the call's arguments as the decision's redaction shows
	// them (never the unmasked values).
	Arguments json.RawMessage `json:"arguments"`
	Approvers []string        `json:"approvers"`
	Reason    string          `json:"reason"`
	Created   time.Time       `json:"created"`
	Expires   time.Time       `json:"expires"`
	Status    string          `json:"status"`
	// By is the approver who decided; Decided is when.
	By      string    `json:"by,omitempty"`
	Decided time.Time `json:"decided,omitzero"`
	// StateKey authenticates the 2026-07-28 requestState handed out for
	// this request (RequestState); it stays in the store, never sent.
	StateKey []byte `json:"state_key,omitempty"`
}

// Errors of Decide.
var (
	// ErrNotFound: no live request with that id.
	ErrNotFound = errors.New("approval request not found or expired")
	// ErrDecided: the request was already approved or denied.
	ErrDecided = errors.New("approval request already decided")
)

// Digest is the hex SHA-256 of the RFC 8785 canonical JSON of
// {"tool": tool, "arguments": args}: equal JSON documents hash equally,
// whatever their key order, spacing or number spelling.
func Digest(tool string, args any) (string, error) {
	raw, err := json.Marshal(map[string]any{"tool": tool, "arguments": args})
	if err != nil {
		return "", fmt.Errorf("approvals: encoding the call: %w", err)
	}
	return DigestJSON(raw)
}

// DigestJSON is Digest of a JSON document already encoded.
func DigestJSON(doc []byte) (string, error) {
	c, err := jcs.Transform(doc)
	if err != nil {
		return "", fmt.Errorf("approvals: canonicalising the call: %w", err)
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// Binding is what an approval is bound to besides the digest.
type Binding struct {
	Digest, Issuer, Subject, Agent, Environment string
}

// key is the store key of the binding: one live request per identical call.
func (b Binding) key() string {
	h := sha256.New()
	for _, f := range []string{b.Digest, b.Issuer, b.Subject, b.Agent, b.Environment} {
		fmt.Fprintf(h, "%d:%s|", len(f), f)
	}
	return "approval:bind:" + hex.EncodeToString(h.Sum(nil))
}

func reqKey(id string) string { return "approval:req:" + id }

// Service creates, decides and consumes requests.
type Service struct {
	kv  KV
	now func() time.Time
}

// New returns a Service over kv.
func New(kv KV) *Service { return &Service{kv: kv, now: time.Now} }

// Outcome is what Check found for a call.
type Outcome struct {
	// Request is the request the call is bound to.
	Request Request
	// Granted: the request was approved and this call consumed it (it may
	// run, once).
	Granted bool
	// Denied: an approver declined it; the denial is consumed too.
	Denied bool
	// Created: the request is new (the approvers are to be told).
	Created bool
}

// Check finds the request bound to b. Approved or denied, it consumes the
// binding atomically (of concurrent identical calls on any replica one gets
// it; the others are held anew). Otherwise it returns the pending request,
// or creates one from tmpl (its ID, status and times filled in) living ttl.
func (s *Service) Check(ctx context.Context, b Binding, tmpl Request, ttl time.Duration) (Outcome, error) {
	bk := b.key()
	idb, ok, err := s.kv.Get(ctx, bk)
	if err != nil {
		return Outcome{}, fmt.Errorf("approvals: reading binding: %w", err)
	}
	if ok {
		r, found, err := s.Get(ctx, string(idb))
		if err != nil {
			return Outcome{}, err
		}
		if found && s.now().Before(r.Expires) {
			switch r.Status {
			case StatusPending:
				return Outcome{Request: r}, nil
			case StatusApproved, StatusDenied:
				_, took, err := s.kv.Take(ctx, bk)
				if err != nil {
					return Outcome{}, fmt.Errorf("approvals: consuming binding: %w", err)
				}
				if took {
					if err := s.kv.Delete(ctx, reqKey(r.ID)); err != nil {
						return Outcome{}, fmt.Errorf("approvals: consuming request: %w", err)
					}
					return Outcome{Request: r, Granted: r.Status == StatusApproved, Denied: r.Status == StatusDenied}, nil
				}
				// Another call consumed it: this one needs a new approval.
			}
		}
	}
	id, err := newID()
	if err != nil {
		return Outcome{}, err
	}
	r := tmpl
	r.ID, r.Digest, r.Status, r.By, r.Decided = id, b.Digest, StatusPending, "", time.Time{}
	r.Issuer, r.Subject, r.Agent, r.Environment = b.Issuer, b.Subject, b.Agent, b.Environment
	r.Created = s.now().UTC()
	r.Expires = r.Created.Add(ttl)
	r.StateKey = make([]byte, 32)
	if _, err := rand.Read(r.StateKey); err != nil {
		return Outcome{}, fmt.Errorf("approvals: state key: %w", err)
	}
	if err := s.put(ctx, r); err != nil {
		return Outcome{}, err
	}
	if err := s.kv.Put(ctx, bk, []byte(id), ttl); err != nil {
		return Outcome{}, fmt.Errorf("approvals: storing binding: %w", err)
	}
	if _, err := s.index(ctx, &indexEntry{ID: id, Expires: r.Expires}); err != nil {
		return Outcome{}, err
	}
	return Outcome{Request: r, Created: true}, nil
}

// Get returns the live request id.
func (s *Service) Get(ctx context.Context, id string) (Request, bool, error) {
	if id == "" || len(id) > 64 {
		return Request{}, false, nil
	}
	b, ok, err := s.kv.Get(ctx, reqKey(id))
	if err != nil {
		return Request{}, false, fmt.Errorf("approvals: reading request: %w", err)
	}
	if !ok {
		return Request{}, false, nil
	}
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		return Request{}, false, fmt.Errorf("approvals: decoding request: %w", err)
	}
	if !s.now().Before(r.Expires) {
		return Request{}, false, nil
	}
	return r, true, nil
}

// Decide records an approver's answer on a pending request.
func (s *Service) Decide(ctx context.Context, id string, approve bool, by string) (Request, error) {
	r, ok, err := s.Get(ctx, id)
	if err != nil {
		return Request{}, err
	}
	if !ok {
		return Request{}, ErrNotFound
	}
	if r.Status != StatusPending {
		return r, ErrDecided
	}
	r.Status = StatusDenied
	if approve {
		r.Status = StatusApproved
	}
	r.By, r.Decided = by, s.now().UTC()
	return r, s.put(ctx, r)
}

func (s *Service) put(ctx context.Context, r Request) error {
	ttl := r.Expires.Sub(s.now())
	if ttl <= 0 {
		return ErrNotFound
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("approvals: encoding request: %w", err)
	}
	if err := s.kv.Put(ctx, reqKey(r.ID), b, ttl); err != nil {
		return fmt.Errorf("approvals: storing request: %w", err)
	}
	return nil
}

func newID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("approvals: random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Approver is a human signed in to decide.
type Approver struct {
	Issuer, Subject, Email string
	Roles                  []string
}

// MayDecide reports whether a may approve or deny r: a must be listed
// ("self" is the human the agent acts for, "role:<role>", "user:<sub or
// email>"), and the human whose agent made the call decides only when
// "self" is listed, whatever else they are.
func (r Request) MayDecide(a Approver) bool {
	if a.Subject == "" {
		return false
	}
	self := a.Issuer == r.Issuer && a.Subject == r.Subject
	listedSelf := false
	for _, x := range r.Approvers {
		if x == "self" {
			listedSelf = true
		}
	}
	if self {
		return listedSelf
	}
	for _, x := range r.Approvers {
		switch {
		case strings.HasPrefix(x, "role:"):
			if slices.Contains(a.Roles, x[len("role:"):]) {
				return true
			}
		case strings.HasPrefix(x, "user:"):
			u := x[len("user:"):]
			if u == a.Subject || (a.Email != "" && strings.EqualFold(u, a.Email)) {
				return true
			}
		}
	}
	return false
}

// indexKey lists open requests for the inbox: ids with expiries, pruned
// on every change. It is best effort (two replicas adding at the same
// moment may drop one from the inbox; the request itself and its link are
// unaffected), and bounded by maxIndex.
const (
	indexKey = "approval:index"
	maxIndex = 1000
)

type indexEntry struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"exp"`
}

func (s *Service) index(ctx context.Context, add *indexEntry) ([]indexEntry, error) {
	b, ok, err := s.kv.Get(ctx, indexKey)
	if err != nil {
		return nil, fmt.Errorf("approvals: reading index: %w", err)
	}
	var es []indexEntry
	if ok {
		_ = json.Unmarshal(b, &es) // a damaged index is rebuilt from new requests
	}
	now := s.now()
	es = slices.DeleteFunc(es, func(e indexEntry) bool { return !now.Before(e.Expires) })
	if add == nil {
		return es, nil
	}
	es = append(es, *add)
	if len(es) > maxIndex {
		es = es[len(es)-maxIndex:]
	}
	nb, err := json.Marshal(es)
	if err != nil {
		return nil, fmt.Errorf("approvals: encoding index: %w", err)
	}
	if err := s.kv.Put(ctx, indexKey, nb, 24*time.Hour); err != nil {
		return nil, fmt.Errorf("approvals: storing index: %w", err)
	}
	return es, nil
}

// Open returns the live requests of the inbox index, oldest first.
func (s *Service) Open(ctx context.Context) ([]Request, error) {
	es, err := s.index(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]Request, 0, len(es))
	for _, e := range es {
		r, ok, err := s.Get(ctx, e.ID)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// RequestState is the opaque requestState of a 2026-07-28 input_required
// answer for r: "<id>.<base64url HMAC-SHA256 over the binding>", keyed by
// the request's own StateKey, so any replica can check it and it is bound
// to the human, agent, environment and arguments digest of the call.
func (r Request) RequestState(b Binding) string {
	return r.ID + "." + base64.RawURLEncoding.EncodeToString(r.stateMAC(b))
}

func (r Request) stateMAC(b Binding) []byte {
	m := hmac.New(sha256.New, r.StateKey)
	m.Write([]byte(b.key()))
	return m.Sum(nil)
}

// StateID is the request id a requestState names ("" when malformed).
func StateID(state string) string {
	id, _, ok := strings.Cut(state, ".")
	if !ok || id == "" || len(id) > 64 {
		return ""
	}
	return id
}

// VerifyState reports whether state is r's requestState for binding b.
func (r Request) VerifyState(state string, b Binding) bool {
	id, mac, ok := strings.Cut(state, ".")
	if !ok || id != r.ID || len(r.StateKey) == 0 {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(mac)
	return err == nil && hmac.Equal(got, r.stateMAC(b))
}
