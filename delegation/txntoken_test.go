package delegation

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestTxnToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	in := TxnToken{
		Issuer: testIssuer, TrustDomain: "trust.example.test", Subject: "alice",
		Scope: "crm_get_customer", RequestingWorkload: "harness",
		Context:        map[string]any{"agent": "agent-42", "delegation_id": "d1"},
		RequestContext: map[string]any{"req_ip": "127.0.0.1"},
		TTL:            time.Hour,
	}
	tok, err := e.keys.TxnToken(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	hdr, c := stdVerify(t, jwks(t, e.keys), tok)
	if hdr["typ"] != "txntoken+jwt" {
		t.Errorf("typ = %v", hdr["typ"])
	}
	now := float64(e.clock.Now().Unix())
	want := map[string]any{
		"iss": testIssuer, "aud": "trust.example.test", "sub": "alice", "scope": "crm_get_customer",
		"req_wl": "harness", "iat": now, "exp": now + 60,
		"tctx": map[string]any{"agent": "agent-42", "delegation_id": "d1"},
		"rctx": map[string]any{"req_ip": "127.0.0.1"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(c[k], v) {
			t.Errorf("claim %s = %#v, want %#v", k, c[k], v)
		}
	}
	if txn, _ := c["txn"].(string); txn == "" {
		t.Error("no txn")
	}
	// A transaction token is not a delegation token.
	if _, err := e.ex.VerifyDelegation(ctx, tok); err == nil {
		t.Error("txn token accepted as a delegation token")
	}

	for _, tc := range []struct {
		name string
		mod  func(*TxnToken)
	}{
		{"no trust domain", func(x *TxnToken) { x.TrustDomain = "" }},
		{"no subject", func(x *TxnToken) { x.Subject = "" }},
		{"no scope", func(x *TxnToken) { x.Scope = "" }},
		{"no workload", func(x *TxnToken) { x.RequestingWorkload = "" }},
		{"negative ttl", func(x *TxnToken) { x.TTL = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := in
			tc.mod(&x)
			if _, err := e.keys.TxnToken(ctx, x); err == nil {
				t.Error("accepted")
			}
		})
	}
}
