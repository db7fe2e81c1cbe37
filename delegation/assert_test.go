package delegation

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestAssert(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now().Unix()
	for _, tc := range []struct {
		name    string
		in      Assertion
		wantTTL int64
		wantAct any
		absent  []string
	}{
		{
			name: "delegated with a chain",
			in: Assertion{
				Issuer: testIssuer, Audience: "crm", Subject: "alice", Actor: "agent-b",
				Actors: []string{"agent-a"}, Roles: []string{"support"}, Email: "a@x", Name: "Alice",
				DelegationID: "d1", Scopes: []string{"tool:crm_*"},
			},
			wantTTL: 60,
			wantAct: map[string]any{"sub": "agent-b", "act": map[string]any{"sub": "agent-a"}},
		},
		{
			name:    "ttl above 60s is lowered",
			in:      Assertion{Issuer: testIssuer, Audience: "crm", Subject: "alice", Actor: "agent-a", TTL: 10 * time.Minute},
			wantTTL: 60,
			wantAct: map[string]any{"sub": "agent-a"},
			absent:  []string{"roles", "email", "name", "delegation_id", "scope"},
		},
		{
			name:    "short ttl kept",
			in:      Assertion{Issuer: testIssuer, Audience: "crm", Subject: "alice", TTL: 10 * time.Second},
			wantTTL: 10,
			absent:  []string{"act"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := e.keys.Assert(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			hdr, c := stdVerify(t, jwks(t, e.keys), tok)
			if hdr["typ"] != "JWT" || hdr["kid"] != e.keys.KeyID() {
				t.Errorf("header = %v", hdr)
			}
			if c["iss"] != testIssuer || c["aud"] != "crm" || c["sub"] != "alice" {
				t.Errorf("iss/aud/sub = %v/%v/%v", c["iss"], c["aud"], c["sub"])
			}
			if iat := int64(c["iat"].(float64)); iat != now {
				t.Errorf("iat = %d, want %d", iat, now)
			}
			if ttl := int64(c["exp"].(float64)) - now; ttl != tc.wantTTL {
				t.Errorf("exp - iat = %d, want %d", ttl, tc.wantTTL)
			}
			if jti, _ := c["jti"].(string); len(jti) < 16 {
				t.Errorf("jti = %q", jti)
			}
			if tc.wantAct != nil && !reflect.DeepEqual(c["act"], tc.wantAct) {
				t.Errorf("act = %v, want %v", c["act"], tc.wantAct)
			}
			if tc.in.Roles != nil && !reflect.DeepEqual(c["roles"], []any{"support"}) {
				t.Errorf("roles = %v", c["roles"])
			}
			if tc.in.DelegationID != "" && (c["delegation_id"] != "d1" || c["scope"] != "tool:crm_*") {
				t.Errorf("delegation_id/scope = %v/%v", c["delegation_id"], c["scope"])
			}
			for _, k := range tc.absent {
				if _, ok := c[k]; ok {
					t.Errorf("claim %s present", k)
				}
			}
		})
	}
	// Two assertions never share a jti.
	a := Assertion{Issuer: testIssuer, Audience: "crm", Subject: "alice"}
	t1, _ := e.keys.Assert(context.Background(), a)
	t2, _ := e.keys.Assert(context.Background(), a)
	_, c1 := stdVerify(t, jwks(t, e.keys), t1)
	_, c2 := stdVerify(t, jwks(t, e.keys), t2)
	if c1["jti"] == c2["jti"] {
		t.Error("jti repeated")
	}
}

func TestAssertRejects(t *testing.T) {
	e := newEnv(t)
	ok := Assertion{Issuer: testIssuer, Audience: "crm", Subject: "alice", Actor: "agent"}
	for _, tc := range []struct {
		name string
		mod  func(*Assertion)
	}{
		{"no issuer", func(a *Assertion) { a.Issuer = "" }},
		{"no audience", func(a *Assertion) { a.Audience = "" }},
		{"no subject", func(a *Assertion) { a.Subject = "" }},
		{"prior actors without actor", func(a *Assertion) { a.Actor = ""; a.Actors = []string{"x"} }},
		{"empty prior actor", func(a *Assertion) { a.Actors = []string{""} }},
		{"chain too long", func(a *Assertion) { a.Actors = slices.Repeat([]string{"x"}, maxActors) }},
		{"negative ttl", func(a *Assertion) { a.TTL = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			tc.mod(&a)
			if tok, err := e.keys.Assert(context.Background(), a); err == nil {
				t.Errorf("accepted: %s", tok)
			}
		})
	}
}

func BenchmarkAssert(b *testing.B) {
	e := newEnv(b)
	a := Assertion{
		Issuer: testIssuer, Audience: "crm", Subject: "alice", Actor: "agent-42",
		Roles: []string{"support"}, DelegationID: "d1", Scopes: []string{"tool:crm_*"},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.keys.Assert(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}
