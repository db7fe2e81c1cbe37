package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Decision is the policy's answer for one tool call or listed tool.
type Decision struct {
	// Allow is true only when the policy allowed the call.
	Allow bool
	// Reason explains the decision to a human.
	Reason string
	// Redact lists keys (masked at any depth) and root paths with [*] to mask
	// in the result.
	Redact []string
	// Context maps a key to its allowed values: result objects holding the key
	// with another value are dropped.
	Context map[string][]string
	// RateLimit replaces the default limit for this call; nil keeps it.
	RateLimit *RateLimit
	// Detectors replaces the configured detectors: nil = not set, empty = none.
	Detectors []string
	// Approval is the decision's approval document as the policy wrote it
	// (canonical JSON), nil when it asks for none. Kept so that audit
	// records and policy replay see it.
	Approval json.RawMessage
	// ID identifies this decision (fresh for every decision).
	ID string
	// Revision identifies the policy that decided.
	Revision string
}

// RateLimit is a limit chosen by the policy, decoded from
// {"requests": 5, "per": "1m", "key": "..."}.
type RateLimit struct {
	// Requests is the number of requests allowed per period (> 0).
	Requests int
	// Per is the period (> 0).
	Per time.Duration
	// Key names the bucket; empty means per subject, agent and tool.
	Key string
}

// Errors a decision can fail with; test them with errors.Is.
var (
	// ErrEvaluation: the policy could not be evaluated (e.g. conflicting rules).
	ErrEvaluation = errors.New("policy evaluation failed")
	// ErrUndefined: the query produced no decision.
	ErrUndefined = errors.New("policy decision undefined")
	// ErrMalformed: the decision does not have the contract's shape.
	ErrMalformed = errors.New("policy decision malformed")
)

// Reasons given with a failed decision. They say the policy failed without
// exposing its internals; the returned error carries the detail.
const (
	reasonEvalFailed = "policy failed: evaluation error"
	reasonUndefined  = "policy failed: no decision"
	reasonMalformed  = "policy failed: malformed decision"
)

// failed returns the fail-closed decision for err.
func failed(err error) Decision {
	reason := reasonEvalFailed
	switch {
	case errors.Is(err, ErrUndefined):
		reason = reasonUndefined
	case errors.Is(err, ErrMalformed):
		reason = reasonMalformed
	}
	return Decision{Allow: false, Reason: reason}
}

// Keys of the decision document.
var (
	kAllow     = ast.StringTerm("allow")
	kReason    = ast.StringTerm("reason")
	kRedact    = ast.StringTerm("redact")
	kContext   = ast.StringTerm("context")
	kRateLimit = ast.StringTerm("rate_limit")
	kDetectors = ast.StringTerm("detectors")
	kRequests  = ast.StringTerm("requests")
	kPer       = ast.StringTerm("per")
	kKey       = ast.StringTerm("key")
)

// decodeDecision decodes a decision as the policy produced it. Unknown keys
// are ignored; null optional keys count as absent. On error the decision is
// the zero value: not allowed.
func decodeDecision(v ast.Value) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, fmt.Errorf("%w: not an object but %s", ErrMalformed, typeName(v))
	}
	var d Decision
	at := obj.Get(kAllow)
	if at == nil {
		return Decision{}, fmt.Errorf("%w: allow is missing", ErrMalformed)
	}
	allow, ok := at.Value.(ast.Boolean)
	if !ok {
		return Decision{}, fmt.Errorf("%w: allow is %s, not a boolean", ErrMalformed, typeName(at.Value))
	}
	if r := get(obj, kReason); r != nil {
		s, ok := r.(ast.String)
		if !ok {
			return Decision{}, fmt.Errorf("%w: reason is %s, not a string", ErrMalformed, typeName(r))
		}
		d.Reason = string(s)
	}
	var err error
	if r := get(obj, kRedact); r != nil {
		if d.Redact, err = stringList(r); err != nil {
			return Decision{}, fmt.Errorf("%w: redact: %w", ErrMalformed, err)
		}
	}
	if c := get(obj, kContext); c != nil {
		cm, ok := c.(ast.Object)
		if !ok {
			return Decision{}, fmt.Errorf("%w: context is %s, not an object", ErrMalformed, typeName(c))
		}
		d.Context = make(map[string][]string, cm.Len())
		err = cm.Iter(func(k, vs *ast.Term) error {
			ks, ok := k.Value.(ast.String)
			if !ok {
				return fmt.Errorf("context key %v is not a string", k)
			}
			list, err := stringList(vs.Value)
			if err != nil {
				return fmt.Errorf("context %q: %w", string(ks), err)
			}
			d.Context[string(ks)] = list
			return nil
		})
		if err != nil {
			return Decision{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	if rl := get(obj, kRateLimit); rl != nil {
		if d.RateLimit, err = decodeRateLimit(rl); err != nil {
			return Decision{}, fmt.Errorf("%w: rate_limit: %w", ErrMalformed, err)
		}
	}
	if ds := get(obj, kDetectors); ds != nil {
		if d.Detectors, err = stringList(ds); err != nil {
			return Decision{}, fmt.Errorf("%w: detectors: %w", ErrMalformed, err)
		}
		if d.Detectors == nil {
			d.Detectors = []string{}
		}
	}
	if a := get(obj, kApproval); a != nil {
		if d.Approval, err = canonicalJSON(a); err != nil {
			return Decision{}, fmt.Errorf("%w: approval: %w", ErrMalformed, err)
		}
		if _, err = ParseApproval(d.Approval); err != nil {
			return Decision{}, fmt.Errorf("%w: approval: %w", ErrMalformed, err)
		}
	}
	d.Allow = bool(allow)
	return d, nil
}

// get returns the value at k, nil when absent or null.
func get(obj ast.Object, k *ast.Term) ast.Value {
	t := obj.Get(k)
	if t == nil {
		return nil
	}
	if _, null := t.Value.(ast.Null); null {
		return nil
	}
	return t.Value
}

func decodeRateLimit(v ast.Value) (*RateLimit, error) {
	m, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%s, not an object", typeName(v))
	}
	var rl RateLimit
	n, ok := get(m, kRequests).(ast.Number)
	if !ok {
		return nil, fmt.Errorf("requests is %s, not a number", typeName(get(m, kRequests)))
	}
	req, ok := n.Int64()
	if !ok || req <= 0 || req > math.MaxInt32 {
		return nil, fmt.Errorf("requests %s is not a positive integer", n)
	}
	rl.Requests = int(req)
	per, ok := get(m, kPer).(ast.String)
	if !ok {
		return nil, fmt.Errorf("per is %s, not a duration string", typeName(get(m, kPer)))
	}
	var err error
	if rl.Per, err = time.ParseDuration(string(per)); err != nil || rl.Per <= 0 {
		return nil, fmt.Errorf("per %q is not a positive duration", string(per))
	}
	if k := get(m, kKey); k != nil {
		ks, ok := k.(ast.String)
		if !ok {
			return nil, fmt.Errorf("key is %s, not a string", typeName(k))
		}
		rl.Key = string(ks)
	}
	return &rl, nil
}

// stringList decodes an array or a set of strings (a set in sorted order).
func stringList(v ast.Value) ([]string, error) {
	var out []string
	add := func(i int, t *ast.Term) error {
		s, ok := t.Value.(ast.String)
		if !ok {
			return fmt.Errorf("element %d is %s, not a string", i, typeName(t.Value))
		}
		out = append(out, string(s))
		return nil
	}
	switch c := v.(type) {
	case nil:
		return nil, nil
	case *ast.Array:
		out = make([]string, 0, c.Len())
		for i := range c.Len() {
			if err := add(i, c.Elem(i)); err != nil {
				return nil, err
			}
		}
	case ast.Set:
		out = make([]string, 0, c.Len())
		for i, t := range c.Slice() { // Slice is sorted
			if err := add(i, t); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%s, not an array of strings", typeName(v))
	}
	return out, nil
}

func typeName(v ast.Value) string {
	switch v.(type) {
	case nil, ast.Null:
		return "null"
	case ast.Boolean:
		return "a boolean"
	case ast.String:
		return "a string"
	case ast.Number:
		return "a number"
	case *ast.Array:
		return "an array"
	case ast.Set:
		return "a set"
	case ast.Object:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
