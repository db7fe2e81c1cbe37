package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestRedecideAtRecordedTime: a policy reading the clock decides as it
// would have at the input's time, not now.
func TestRedecideAtRecordedTime(t *testing.T) {
	e := engineFromRego(t, `package harness

decision := {"allow": true} if time.now_ns() < time.parse_rfc3339_ns("2026-06-01T00:00:00Z")
else := {"allow": false, "reason": "too late"}
`)
	in := callInput([]string{"support"}, "GET", []string{"customers"}, nil)
	for _, tc := range []struct {
		at    string
		allow bool
	}{{"2026-01-01T00:00:00Z", true}, {"2026-07-01T00:00:00Z", false}} {
		in.Time = tc.at
		o, err := e.Redecide(context.Background(), in)
		if err != nil || o.Allow != tc.allow {
			t.Errorf("at %s: %+v, %v; want allow %v", tc.at, o, err, tc.allow)
		}
	}
	in.Time = "yesterday"
	if _, err := e.Redecide(context.Background(), in); !errors.Is(err, ErrBadInput) {
		t.Errorf("bad time: %v, want ErrBadInput", err)
	}
}

// TestReplayMatchesDecide: Replay gives, for every input, the outcome of
// Decide, approval included; memo is never used.
func TestReplayMatchesDecide(t *testing.T) {
	e := newDefault(t)
	var ins []*Input
	for _, roles := range [][]string{{"support"}, {"viewer"}, {"admin"}, nil} {
		for _, m := range []string{"GET", "POST"} {
			for _, tags := range [][]string{{"customers"}, {"tickets"}, {"refunds"}} {
				in := callInput(roles, m, tags, nil)
				in.CacheKey = fmt.Sprint(roles) // Decide may reuse decisions; Replay never
				ins = append(ins, in)
			}
		}
	}
	ins = append(ins, nil)
	got := e.Replay(context.Background(), ins)
	for i, in := range ins[:len(ins)-1] {
		d, err := e.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if want := OutcomeOf(d); got[i].Err != nil || !reflect.DeepEqual(got[i].Outcome, want) {
			t.Errorf("input %d: %+v %v, want %+v", i, got[i].Outcome, got[i].Err, want)
		}
	}
	if !errors.Is(got[len(got)-1].Err, ErrBadInput) {
		t.Errorf("nil input: %v", got[len(got)-1].Err)
	}

	a := engineFromRego(t, `package harness

decision := {"allow": true, "approval": {"approvers": ["self"], "ttl": "15m"}}
`)
	o, err := a.Redecide(context.Background(), ins[0])
	if err != nil || string(o.Approval) != `{"approvers":["self"],"ttl":"15m"}` {
		t.Errorf("approval: %s %v", o.Approval, err)
	}
	// What the gateway records from Decide carries the same approval.
	if d, err := a.Decide(context.Background(), ins[0]); err != nil || len(OutcomeOf(d).Changes(o)) != 0 {
		t.Errorf("Decide's outcome %+v differs from Redecide's %+v (%v)", OutcomeOf(d), o, err)
	}
}

func TestOutcomeChanges(t *testing.T) {
	none := []string{}
	some := []string{"secret"}
	base := Outcome{Allow: true, Redact: []string{"a"}, Context: map[string][]string{"t": {"x"}},
		RateLimit: &OutcomeLimit{Requests: 5, Per: "1m0s"}, Detectors: &some}
	mod := func(f func(*Outcome)) Outcome {
		o := base
		f(&o)
		return o
	}
	for _, tc := range []struct {
		name string
		a, b Outcome
		want []string
	}{
		{"same", base, mod(func(*Outcome) {}), nil},
		{"deny", base, Outcome{}, []string{ChangeAllow}},
		{"two denials", Outcome{}, Outcome{Redact: []string{"x"}}, nil},
		{"redact", base, mod(func(o *Outcome) { o.Redact = nil }), []string{ChangeRedact}},
		{"context", base, mod(func(o *Outcome) { o.Context = map[string][]string{"t": {"y"}} }), []string{ChangeContext}},
		{"limit", base, mod(func(o *Outcome) { o.RateLimit = nil }), []string{ChangeRateLimit}},
		{"limit value", base, mod(func(o *Outcome) { o.RateLimit = &OutcomeLimit{Requests: 6, Per: "1m0s"} }), []string{ChangeRateLimit}},
		{"approval", base, mod(func(o *Outcome) { o.Approval = json.RawMessage(`{}`) }), []string{ChangeApproval}},
		{"detectors off", base, mod(func(o *Outcome) { o.Detectors = &none }), []string{ChangeDetectors}},
		{"detectors unset", base, mod(func(o *Outcome) { o.Detectors = nil }), []string{ChangeDetectors}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Changes(tc.b); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Changes = %v, want %v", got, tc.want)
			}
		})
	}
	// The JSON round trip (the audit record) keeps an outcome equal.
	b, _ := json.Marshal(base)
	var back Outcome
	if err := json.Unmarshal(b, &back); err != nil || len(base.Changes(back)) != 0 {
		t.Errorf("round trip %s: %+v %v", b, back, err)
	}
	d := Decision{Allow: true, Redact: []string{"b", "a"}, RateLimit: &RateLimit{Requests: 5, Per: time.Minute}, Detectors: []string{}}
	if o := OutcomeOf(d); !reflect.DeepEqual(o.Redact, []string{"a", "b"}) || o.RateLimit.Per != "1m0s" || o.Detectors == nil || len(*o.Detectors) != 0 {
		t.Errorf("OutcomeOf = %+v", o)
	}
}

// FuzzParseInput: a recorded input is either refused or decided, never a
// panic; what ParseInput accepts, Redecide evaluates without ErrBadInput.
func FuzzParseInput(f *testing.F) {
	seed, _ := json.Marshal(callInput([]string{"support"}, "GET", []string{"customers"}, &Delegation{ID: "d", Scopes: []string{"tool:*"}}))
	f.Add(seed)
	f.Add([]byte(`{"action":"call","time":"2026-01-01T00:00:00Z","arguments":{"n":1e400}}`))
	f.Add([]byte(`{"action":"call","time":"2026-01-01T00:00:00Z","arguments":{"n":12345678901234567890123}} {}`))
	f.Add([]byte(`{"action":"list","time":"2026-01-01T00:00:00Z","detections":{"secret":-1},"subject":{"claims":{"a":[null,{"b":true}]}}}`))
	f.Add([]byte(`{"action":"call","time":"x"}`))
	f.Add([]byte(`{"action":"call","time":"2026-01-01T00:00:00Z","extra":1}`))
	e, err := New(context.Background(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := ParseInput(data)
		if err != nil {
			if !errors.Is(err, ErrBadInput) || in != nil {
				t.Fatalf("error %v does not wrap ErrBadInput (input %v)", err, in)
			}
			return
		}
		if _, err := e.Redecide(context.Background(), in); errors.Is(err, ErrBadInput) {
			t.Fatalf("accepted input not decidable: %v", err)
		}
	})
}
