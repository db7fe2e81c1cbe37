package policy

import (
	"context"
	"testing"
)

func engineFromRego(t testing.TB, src string) *Engine {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "policy.rego", src)
	e, err := New(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMemoOnlyForDeterministicPolicies(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		cacheable bool
	}{
		{"tool and subject", `decision := {"allow": input.tool.name == "a", "reason": input.subject.sub}`, true},
		{"object.get with constant path", `decision := {"allow": object.get(input, ["tool", "name"], "") == "a"}`, true},
		{"reads arguments", `decision := {"allow": input.arguments.id == "c-1"}`, false},
		{"reads time", `decision := {"allow": input.time > "2026"}`, false},
		{"whole input", "decision := {\"allow\": x.tool.name == \"a\"} if { x := input }", false},
		{"computed key", "decision := {\"allow\": input[k] == 1} if { k := \"tool\" }", false},
		{"object.get with a computed path", "decision := {\"allow\": object.get(input, p, false)} if { p := [\"arguments\"] }", false},
		{"walks input", "decision := {\"allow\": count([x | walk(input, x)]) > 0}", false},
		{"non-deterministic builtin", `decision := {"allow": time.now_ns() > 0}`, false},
		{"arguments in a helper rule", "helper if input.arguments.x\ndecision := {\"allow\": helper}", false},
		{"a key the memo does not cover", `decision := {"allow": input.client_ip == "10.0.0.1"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engineFromRego(t, "package harness\n\n"+tt.body+"\n")
			if got := e.cur.Load().memo != nil; got != tt.cacheable {
				t.Errorf("cacheable = %v, want %v", got, tt.cacheable)
			}
		})
	}
	if newDefault(t).cur.Load().memo == nil {
		t.Error("the default policy should be cacheable: it reads neither arguments nor time")
	}
}

func TestMemoReusesOnlyTheSameCaller(t *testing.T) {
	e := newDefault(t)
	ctx := context.Background()
	in := callInput([]string{"support"}, "GET", []string{"customers"}, nil)
	in.CacheKey = "token-a"
	d1, err := e.Decide(ctx, in)
	if err != nil || !d1.Allow {
		t.Fatal(d1, err)
	}
	d2, err := e.Decide(ctx, in)
	if err != nil || !d2.Allow || d2.Reason != d1.Reason || d2.ID == d1.ID {
		t.Errorf("reused decision: %+v (first %+v)", d2, d1)
	}
	// The same key with another tool is decided afresh.
	w := callInput([]string{"support"}, "POST", []string{"refunds"}, nil)
	w.CacheKey = "token-a"
	if d, _ := e.Decide(ctx, w); d.Allow {
		t.Errorf("another tool reused an allow: %+v", d)
	}
	// Detections are part of the key: a secret on a write is denied.
	tk := callInput([]string{"support"}, "POST", []string{"tickets"}, nil)
	tk.CacheKey = "token-a"
	if d, _ := e.Decide(ctx, tk); !d.Allow {
		t.Fatalf("ticket write: %+v", d)
	}
	tk.Detections = map[string]int{"secret": 1}
	if d, _ := e.Decide(ctx, tk); d.Allow {
		t.Errorf("a write carrying a secret reused the allow of a clean one: %+v", d)
	}
}

func TestMemoNeverForArgumentPolicies(t *testing.T) {
	e := engineFromRego(t, "package harness\n\ndecision := {\"allow\": input.arguments.id == \"c-1\"}\n")
	ctx := context.Background()
	in := &Input{Action: ActionCall, CacheKey: "k", Arguments: map[string]any{"id": "c-1"}}
	if d, _ := e.Decide(ctx, in); !d.Allow {
		t.Fatal("c-1 denied")
	}
	in.Arguments = map[string]any{"id": "c-2"}
	if d, _ := e.Decide(ctx, in); d.Allow {
		t.Error("c-2 allowed: a decision that depends on arguments was reused")
	}
}

func BenchmarkDecideMemo(b *testing.B) {
	e := newDefault(b)
	in := callInput([]string{"support"}, "GET", []string{"customers"}, nil)
	in.Subject.Claims = realisticClaims()
	in.CacheKey = "token"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Decide(ctx, in); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}
