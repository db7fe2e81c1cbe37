package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Decision values of Record.Decision.
const (
	DecisionAllow       = "allow"
	DecisionDeny        = "deny"
	DecisionRateLimited = "rate_limited"
	DecisionError       = "error"
	// DecisionApprovalRequired: the call was held until a human approves it.
	DecisionApprovalRequired = "approval_required"
)

// Approval is the approval an executed call consumed.
type Approval struct {
	// ID identifies the approval request (/approvals/<id>).
	ID string `json:"id"`
	// By is the approver who approved (or, on a denial, declined).
	By string `json:"by"`
}

// Action values of Record.Action (the policy input's action).
const (
	ActionCall = "call"
	ActionList = "list"
)

// Kind values of Record.Kind. Ordinary call records have an empty Kind.
const (
	// KindStart is written by Open each time the log is opened.
	KindStart = "start"
	// KindRotate is the first record of a file created by rotation; its
	// Prev is the last hash of the previous file.
	KindRotate = "rotate"
	// KindGap is written by Open after a torn (incomplete) last line left by
	// a crash; its Prev is the hash of the last complete record.
	KindGap = "gap"
	// KindGrant records a delegation issued: a human granted an agent tools.
	KindGrant = "grant"
	// KindRefusals records, as one record, the refused calls of a human
	// beyond the refusal budget (ratelimit.refusals) that were not recorded
	// one by one; Reason says how many and when.
	KindRefusals = "refusals"
	// KindSecurity records a security event; Event says which (security.go).
	KindSecurity = "security"
	// KindEnvironment records a preview environment created, updated,
	// retired or expired (Action: EnvironmentCreate…); Subject, Issuer,
	// Email, Name and Preview.Actor say by whom, Reason why, Environment
	// names the preview.
	KindEnvironment = "environment"
)

// Action values of a KindEnvironment record.
const (
	EnvironmentCreate = "create"
	EnvironmentUpdate = "update"
	EnvironmentRetire = "retire"
	EnvironmentExpire = "expire"
)

// Preview describes the preview environment of a KindEnvironment record.
type Preview struct {
	// Name is the preview's name.
	Name string `json:"name"`
	// Repository, PullRequest and Branch are what CI said it is built from.
	Repository  string `json:"repository,omitempty"`
	PullRequest int    `json:"pull_request,omitempty"`
	Branch      string `json:"branch,omitempty"`
	// Actor is the CI token's actor (GitHub) or user_login (GitLab).
	Actor string `json:"actor,omitempty"`
	// Upstreams are the preview's upstream URLs by name.
	Upstreams map[string]string `json:"upstreams,omitempty"`
	// ExpiresAt is when the preview expires.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// ZeroHash is the Prev of the first record of a chain.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Record is one audit record, written as one JSON object per line.
//
// It deliberately has no field for tokens, secrets or results: none of them
// can ever enter the log. Tool arguments enter only inside Input, masked by
// the detectors unless the operator chose audit.record_input: full. The JSON field order is the
// struct order below, with "hash" last; map keys are sorted (encoding/json).
//
// Chain: Hash is the lower-case hex SHA-256 of the record's exact line (without
// the trailing newline) in which the value of "hash" is the empty string, i.e.
// of the line with its 64 hash digits removed. Prev is the Hash of the
// previous record (ZeroHash for the first record of a chain). Seq increases
// by one per record across files and restarts, so Verify can tell a deleted
// record from a reordered one.
type Record struct {
	// Time is when the call finished, UTC, RFC 3339 with nanoseconds.
	Time time.Time `json:"time"`
	// Seq is the position of the record in the chain, starting at 1.
	Seq uint64 `json:"seq"`
	// ID identifies the record (a UUIDv7 when Write generates it).
	ID string `json:"id"`
	// Kind is empty for a call record, or KindStart, KindRotate, KindGap, KindGrant, KindRefusals.
	Kind string `json:"kind,omitempty"`
	// Event names a KindSecurity event (EventTokenRefused, …).
	Event string `json:"event,omitempty"`
	// ClientIP is the client's address (security events).
	ClientIP string `json:"client_ip,omitempty"`
	// Count is how many occurrences an aggregated security event stands for.
	Count int `json:"count,omitempty"`
	// Action is ActionCall or ActionList.
	Action string `json:"action,omitempty"`
	// Decision is DecisionAllow, DecisionDeny, DecisionRateLimited or DecisionError.
	Decision string `json:"decision,omitempty"`
	// Reason is the policy's reason, or why the call failed or was refused.
	Reason string `json:"reason,omitempty"`
	// Subject is the human (token sub).
	Subject string `json:"subject,omitempty"`
	// Email and Name of the human, when the token has them: a reviewer
	// recognises a person where an IdP's sub may be opaque.
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
	// Issuer is the issuer of the human's identity.
	Issuer string `json:"issuer,omitempty"`
	// Agent is the agent (client) acting for the human.
	Agent string `json:"agent,omitempty"`
	// Session is the legacy MCP session id, if any.
	Session string `json:"session,omitempty"`
	// Delegation is the id (jti) of the delegation grant, if any.
	Delegation string `json:"delegation,omitempty"`
	// Tool is the MCP tool name.
	Tool string `json:"tool,omitempty"`
	// Upstream is the name of the upstream the tool belongs to.
	Upstream string `json:"upstream,omitempty"`
	// Protocol is the MCP protocol version of the request.
	Protocol string `json:"protocol,omitempty"`
	// Status is the upstream HTTP status; 0 when the upstream was not called.
	Status int `json:"status,omitempty"`
	// Redactions is the total number of values redacted from the result.
	Redactions int `json:"redactions"`
	// RedactionKinds counts redactions by kind (path, context, secret, …).
	RedactionKinds map[string]int `json:"redaction_kinds,omitempty"`
	// DurationMS is the duration of the call in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	// TraceID is the W3C trace id; Write fills it from ctx when empty.
	TraceID string `json:"trace_id,omitempty"`
	// PolicyDecisionID identifies the policy decision.
	PolicyDecisionID string `json:"policy_decision_id,omitempty"`
	// PolicyRevision identifies the policy that decided (e.g. a bundle revision).
	PolicyRevision string `json:"policy_revision,omitempty"`
	// Environment is the name of the deployment.
	Environment string `json:"environment,omitempty"`
	// Input is the policy input that was decided (JSON), its arguments
	// masked by the detectors unless audit.record_input is full; absent
	// with record_input none or when no policy was asked. See replay.go.
	Input json.RawMessage `json:"input,omitempty"`
	// PolicyDecision is what the policy decided for Input (policy.Outcome
	// as JSON: allow and the obligations), before limits and upstream.
	PolicyDecision json.RawMessage `json:"policy_decision,omitempty"`
	// Approval is set on a call that ran (or was denied) on a human's
	// answer to an approval request.
	Approval *Approval `json:"approval,omitempty"`
	// Preview is set on a KindEnvironment record.
	Preview *Preview `json:"preview,omitempty"`
	// Prev is the Hash of the previous record in the chain.
	Prev string `json:"prev"`
	// Hash covers the whole line, Prev included (see the type comment).
	Hash string `json:"hash"`
}

// hashHexLen is the number of hex digits of a hash.
const hashHexLen = 64

var (
	emptyHashTail = []byte(`"hash":""}`)
	hashKey       = []byte(`"hash":"`)
)

// encodeBufs are encode's scratch buffers: the JSON is built in one and
// copied into the exact-size line, so a record costs no buffer growth.
var encodeBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encode returns the line for r (no trailing newline) with Hash computed
// from r's other fields. r.Hash is set.
func encode(r *Record) ([]byte, error) { return appendEncoded(nil, r) }

// appendEncoded is encode appending the line to dst (which is returned
// unchanged, apart from its spare capacity, on error).
func appendEncoded(dst []byte, r *Record) ([]byte, error) {
	r.Hash = ""
	buf := encodeBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 { // do not keep an outsized record's buffer
			encodeBufs.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encoding audit record: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if !bytes.HasSuffix(b, emptyHashTail) {
		return nil, errors.New("encoding audit record: hash is not the last field")
	}
	sum := sha256.Sum256(b)
	var hexSum [hashHexLen]byte
	hex.Encode(hexSum[:], sum[:])
	r.Hash = string(hexSum[:])
	if dst == nil {
		dst = make([]byte, 0, len(b)+hashHexLen+1)
	}
	dst = append(dst, b[:len(b)-2]...) // up to and including the opening quote
	dst = append(dst, r.Hash...)
	dst = append(dst, `"}`...)
	return dst, nil
}

// errNotRecord means a line is not a complete record line.
var errNotRecord = errors.New("not a complete audit record")

// decodeLine parses one line (without newline). It returns the record and
// whether the hash matches the line's content. An error means the line is
// torn or not a record at all.
func decodeLine(line []byte) (*Record, bool, error) {
	_, ok, isRecord := checkLine(line)
	if !isRecord {
		return nil, false, errNotRecord
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, false, fmt.Errorf("%w: %w", errNotRecord, err)
	}
	if r.Hash != string(line[len(line)-2-hashHexLen:len(line)-2]) {
		// A later duplicate key cannot shadow the final one, but be strict.
		return &r, false, nil
	}
	return &r, ok, nil
}

// checkLine checks a line's framing and hash without decoding the JSON:
// stated is the hash the line ends with, ok whether it matches the line's
// content. isRecord is false for a line that does not end like a record
// (a torn write).
func checkLine(line []byte) (stated [32]byte, ok, isRecord bool) {
	n := len(line)
	tail := len(hashKey) + hashHexLen + 2
	if n < tail+1 || line[0] != '{' || !bytes.HasSuffix(line, []byte(`"}`)) ||
		!bytes.Equal(line[n-tail:n-tail+len(hashKey)], hashKey) {
		return stated, false, false
	}
	digits := line[n-2-hashHexLen : n-2]
	if _, err := hex.Decode(stated[:], digits); err != nil || !isLowerHex(digits) {
		return stated, false, false
	}
	h := sha256.New()
	h.Write(line[:n-2-hashHexLen])
	h.Write([]byte(`"}`))
	var sum [32]byte
	h.Sum(sum[:0])
	return stated, sum == stated, true
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newID returns a UUIDv7 (time-ordered, random).
func newID(now time.Time) string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never returns an error
	ms := uint64(now.UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(u[0:6], ts[2:8])
	u[6] = (u[6] & 0x0f) | 0x70
	u[8] = (u[8] & 0x3f) | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}
