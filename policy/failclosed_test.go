package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestDecideFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		want   error
		reason string
		listed bool // Allowed looks only at allow: a malformed obligation does not hide the tool
	}{
		{"allow is a string", `decision := {"allow": "yes"}`, ErrMalformed, reasonMalformed, false},
		{"allow missing", `decision := {"reason": "ok"}`, ErrMalformed, reasonMalformed, false},
		{"not an object", `decision := true`, ErrMalformed, reasonMalformed, false},
		{"array", `decision := [true]`, ErrMalformed, reasonMalformed, false},
		{"undefined", `decision := {"allow": true} if input.never`, ErrUndefined, reasonUndefined, false},
		{"conflicting rules", "decision := {\"allow\": true} if input.action\ndecision := {\"allow\": false} if input.action", ErrEvaluation, reasonEvalFailed, false},
		{"reason not a string", `decision := {"allow": true, "reason": 1}`, ErrMalformed, reasonMalformed, true},
		{"redact not a list", `decision := {"allow": true, "redact": "card_number"}`, ErrMalformed, reasonMalformed, true},
		{"redact with a number", `decision := {"allow": true, "redact": ["a", 1]}`, ErrMalformed, reasonMalformed, true},
		{"context not an object", `decision := {"allow": true, "context": ["acme"]}`, ErrMalformed, reasonMalformed, true},
		{"context value a string", `decision := {"allow": true, "context": {"tenant_id": "acme"}}`, ErrMalformed, reasonMalformed, true},
		{"rate limit requests a string", `decision := {"allow": true, "rate_limit": {"requests": "5", "per": "1m"}}`, ErrMalformed, reasonMalformed, true},
		{"rate limit zero", `decision := {"allow": true, "rate_limit": {"requests": 0, "per": "1m"}}`, ErrMalformed, reasonMalformed, true},
		{"rate limit fraction", `decision := {"allow": true, "rate_limit": {"requests": 1.5, "per": "1m"}}`, ErrMalformed, reasonMalformed, true},
		{"rate limit bad period", `decision := {"allow": true, "rate_limit": {"requests": 5, "per": "soon"}}`, ErrMalformed, reasonMalformed, true},
		{"rate limit negative period", `decision := {"allow": true, "rate_limit": {"requests": 5, "per": "-1m"}}`, ErrMalformed, reasonMalformed, true},
		{"rate limit key a number", `decision := {"allow": true, "rate_limit": {"requests": 5, "per": "1m", "key": 3}}`, ErrMalformed, reasonMalformed, true},
		{"approval without approvers", `decision := {"allow": true, "approval": {"approvers": [], "ttl": "1m"}}`, ErrMalformed, reasonMalformed, true},
		{"approval with a bad approver", `decision := {"allow": true, "approval": {"approvers": ["bob"]}}`, ErrMalformed, reasonMalformed, true},
		{"detectors not a list", `decision := {"allow": true, "detectors": "secret"}`, ErrMalformed, reasonMalformed, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "policy.rego", "package harness\n\n"+tc.policy+"\n")
			e, err := New(context.Background(), Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			in := callInput([]string{"admin"}, "GET", []string{"customers"}, nil)
			d, err := e.Decide(context.Background(), in)
			if err == nil || !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
			if d.Allow || d.Reason != tc.reason || !strings.HasPrefix(d.Reason, "policy failed") {
				t.Errorf("decision = %+v, want a denial with reason %q", d, tc.reason)
			}
			if d.ID == "" || d.Revision != e.Revision() {
				t.Errorf("failed decision lacks id or revision: %+v", d)
			}
			if d.Redact != nil || d.RateLimit != nil || d.Context != nil || d.Detectors != nil {
				t.Errorf("failed decision carries obligations: %+v", d)
			}
			// The list filter fails closed too, or lists nothing.
			got, lerr := e.Allowed(context.Background(), in, []Tool{{Name: "a", Method: "GET"}, {Name: "b"}})
			if got["a"] != tc.listed || got["b"] != tc.listed || len(got) != 2 {
				t.Errorf("Allowed = %v, %v; want listed %v", got, lerr, tc.listed)
			}
			if errors.Is(tc.want, ErrEvaluation) && lerr == nil {
				t.Error("Allowed hid an evaluation error")
			}
		})
	}
}

func TestDecideAcceptsObligations(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "policy.rego", `package harness

decision := {
	"allow": true,
	"reason": "ok",
	"redact": {"b", "a"},
	"context": {"tenant_id": ["acme", "beta"], "region": []},
	"rate_limit": {"requests": 5, "per": "90s", "key": "tenant:acme"},
	"detectors": [],
	"extra": "ignored",
}
`)
	e, err := New(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(context.Background(), callInput(nil, "GET", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow || d.Reason != "ok" {
		t.Errorf("decision = %+v", d)
	}
	if strings.Join(d.Redact, ",") != "a,b" {
		t.Errorf("redact from a set = %v, want sorted [a b]", d.Redact)
	}
	if strings.Join(d.Context["tenant_id"], ",") != "acme,beta" || d.Context["region"] == nil || len(d.Context["region"]) != 0 {
		t.Errorf("context = %#v", d.Context)
	}
	if rl := d.RateLimit; rl == nil || rl.Requests != 5 || rl.Per.Seconds() != 90 || rl.Key != "tenant:acme" {
		t.Errorf("rate limit = %+v", rl)
	}
	if d.Detectors == nil || len(d.Detectors) != 0 {
		t.Errorf("detectors = %#v, want empty and non-nil", d.Detectors)
	}
}

func TestDecideUnconvertibleArguments(t *testing.T) {
	e := newDefault(t)
	in := callInput([]string{"admin"}, "GET", []string{"customers"}, nil)
	in.Arguments = map[string]any{"x": make(chan int)}
	d, err := e.Decide(context.Background(), in)
	if err == nil || !errors.Is(err, ErrEvaluation) || d.Allow {
		t.Fatalf("Decide = %+v, %v; want a denial with ErrEvaluation", d, err)
	}
	in.Subject.Claims = map[string]any{"bad": func() {}}
	got, err := e.Allowed(context.Background(), in, []Tool{{Name: "a", Method: "GET"}})
	if err == nil || got["a"] {
		t.Fatalf("Allowed = %v, %v; want nothing listed and an error", got, err)
	}
}
