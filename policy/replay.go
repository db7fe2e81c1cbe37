package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Replay: deciding recorded inputs again. The audit trail records, with
// each decision, the input the policy saw and the Outcome it gave; a new
// policy is judged by deciding the same inputs again at the recorded time
// and comparing outcomes. Replay never reuses decisions (no memo): every
// input is evaluated.

// Outcome is what a decision does to a call, in a canonical form that
// compares by value: lists sorted, the rate limit's period in Go's
// duration notation. It is what the audit record stores as
// policy_decision and what replay compares.
type Outcome struct {
	// Allow is the decision's allow.
	Allow bool `json:"allow"`
	// Redact are the decision's redact keys and paths, sorted.
	Redact []string `json:"redact,omitempty"`
	// Context maps each context key to its allowed values, sorted.
	Context map[string][]string `json:"context,omitempty"`
	// RateLimit is the decision's rate limit, if it names one.
	RateLimit *OutcomeLimit `json:"rate_limit,omitempty"`
	// Detectors is the decision's detector set, sorted; nil when the
	// decision names none (the configured set applies), empty when it
	// turns every detector off.
	Detectors *[]string `json:"detectors,omitempty"`
	// Approval is the decision's approval document as the policy wrote it
	// (canonical JSON), if any.
	Approval json.RawMessage `json:"approval,omitempty"`
}

// OutcomeLimit is a rate limit in an Outcome.
type OutcomeLimit struct {
	Requests int    `json:"requests"`
	Per      string `json:"per"`
	Key      string `json:"key,omitempty"`
}

// Aspects of an Outcome that Changes reports.
const (
	ChangeAllow     = "allow"
	ChangeRedact    = "redact"
	ChangeContext   = "context"
	ChangeRateLimit = "rate_limit"
	ChangeApproval  = "approval"
	ChangeDetectors = "detectors"
)

// OutcomeOf is the canonical Outcome of d.
func OutcomeOf(d Decision) Outcome {
	o := Outcome{Allow: d.Allow, Approval: d.Approval}
	if len(d.Redact) > 0 {
		o.Redact = slices.Sorted(slices.Values(d.Redact))
	}
	if len(d.Context) > 0 {
		o.Context = make(map[string][]string, len(d.Context))
		for k, vs := range d.Context {
			o.Context[k] = slices.Sorted(slices.Values(vs))
		}
	}
	if rl := d.RateLimit; rl != nil {
		o.RateLimit = &OutcomeLimit{Requests: rl.Requests, Per: rl.Per.String(), Key: rl.Key}
	}
	if d.Detectors != nil {
		ds := slices.Sorted(slices.Values(d.Detectors))
		o.Detectors = &ds
	}
	return o
}

// Changes lists the aspects in which next differs from o, in a fixed
// order; nil when they decide the same. Obligations of a denial do not
// matter: between two denials only nothing changes.
func (o Outcome) Changes(next Outcome) []string {
	if o.Allow != next.Allow {
		return []string{ChangeAllow}
	}
	if !o.Allow {
		return nil
	}
	var out []string
	if !slices.Equal(o.Redact, next.Redact) {
		out = append(out, ChangeRedact)
	}
	if !maps.EqualFunc(o.Context, next.Context, slices.Equal) {
		out = append(out, ChangeContext)
	}
	if (o.RateLimit == nil) != (next.RateLimit == nil) || (o.RateLimit != nil && *o.RateLimit != *next.RateLimit) {
		out = append(out, ChangeRateLimit)
	}
	if !bytes.Equal(o.Approval, next.Approval) {
		out = append(out, ChangeApproval)
	}
	if (o.Detectors == nil) != (next.Detectors == nil) || (o.Detectors != nil && !slices.Equal(*o.Detectors, *next.Detectors)) {
		out = append(out, ChangeDetectors)
	}
	return out
}

var kApproval = ast.StringTerm("approval")

// Redecide decides in again the way Decide would have at the time in.Time
// names (RFC 3339; the clock of time.now_ns and friends), without decision
// reuse. A failed evaluation is a denial with a non-nil error, as in
// Decide. An input that cannot be evaluated (no valid time, values OPA
// cannot take) is an error wrapping ErrBadInput and decides nothing.
func (e *Engine) Redecide(ctx context.Context, in *Input) (Outcome, error) {
	if in == nil {
		return Outcome{}, fmt.Errorf("%w: no input", ErrBadInput)
	}
	at, err := time.Parse(time.RFC3339Nano, in.Time)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: time %q is not RFC 3339", ErrBadInput, in.Time)
	}
	return e.cur.Load().redecide(ctx, in, at)
}

func (st *state) redecide(ctx context.Context, in *Input, at time.Time) (o Outcome, err error) {
	defer recoverEval(&err)
	action := in.Action
	if action == "" {
		action = ActionCall
	}
	v, err := in.value(action, true)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	rs, err := st.decide.Eval(ctx, rego.EvalParsedInput(v), rego.EvalTime(at))
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: %w", ErrEvaluation, err)
	}
	switch {
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return Outcome{}, ErrUndefined
	case len(rs) > 1 || len(rs[0].Expressions) > 1:
		return Outcome{}, fmt.Errorf("%w: more than one result", ErrMalformed)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return Outcome{}, fmt.Errorf("%w: unexpected result %T", ErrMalformed, rs[0].Expressions[0].Value)
	}
	d, err := decodeDecision(t.Value)
	if err != nil {
		return Outcome{}, err
	}
	return OutcomeOf(d), nil
}

// canonicalJSON encodes v with sorted object keys.
func canonicalJSON(v ast.Value) (json.RawMessage, error) {
	x, err := ast.JSON(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(x)
}

// Replayed is the result of deciding one input again.
type Replayed struct {
	Outcome Outcome
	// Err is set when the policy failed (the outcome is then a denial) or
	// the input could not be evaluated.
	Err error
}

// Replay decides every input again with Redecide, in parallel over
// GOMAXPROCS workers; out[i] belongs to ins[i]. A nil input gets an error
// wrapping ErrBadInput.
// It stops early, leaving the rest with ctx's error, when ctx ends.
func (e *Engine) Replay(ctx context.Context, ins []*Input) []Replayed {
	out := make([]Replayed, len(ins))
	st := e.cur.Load() // one revision for the whole replay
	workers := min(runtime.GOMAXPROCS(0), max(len(ins), 1))
	const chunk = 256
	var next sync.Mutex
	pos := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				lo := pos
				pos += chunk
				next.Unlock()
				if lo >= len(ins) {
					return
				}
				for i := lo; i < min(lo+chunk, len(ins)); i++ {
					if err := ctx.Err(); err != nil {
						out[i].Err = err
						continue
					}
					out[i] = st.replayOne(ctx, ins[i])
				}
			}
		}()
	}
	wg.Wait()
	return out
}

func (st *state) replayOne(ctx context.Context, in *Input) Replayed {
	if in == nil {
		return Replayed{Err: fmt.Errorf("%w: no input", ErrBadInput)}
	}
	at, err := time.Parse(time.RFC3339Nano, in.Time)
	if err != nil {
		return Replayed{Err: fmt.Errorf("%w: time %q is not RFC 3339", ErrBadInput, in.Time)}
	}
	o, err := st.redecide(ctx, in, at)
	if err != nil {
		o = Outcome{} // fail closed, as Decide
	}
	return Replayed{Outcome: o, Err: err}
}

// ErrBadInput means a recorded input document cannot be decided again.
var ErrBadInput = errors.New("not a policy input document")

// maxInputSize bounds a recorded input document.
const maxInputSize = 1 << 20

// ParseInput decodes a recorded input document strictly: unknown keys are
// an error (an input this version does not know cannot be decided as it
// was), numbers keep their exact text, and action and time must be set.
func ParseInput(data []byte) (*Input, error) {
	if len(data) > maxInputSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadInput, maxInputSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var in Input
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the document", ErrBadInput)
	}
	if in.Action == "" {
		return nil, fmt.Errorf("%w: no action", ErrBadInput)
	}
	if _, err := time.Parse(time.RFC3339Nano, in.Time); err != nil {
		return nil, fmt.Errorf("%w: time %q is not RFC 3339", ErrBadInput, in.Time)
	}
	return &in, nil
}
