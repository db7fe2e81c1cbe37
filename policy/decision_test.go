package policy

import (
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func FuzzDecodeDecision(f *testing.F) {
	for _, seed := range []string{
		`{"allow": true}`,
		`{"allow": false, "reason": "no"}`,
		`{"allow": true, "reason": "support may read customers", "redact": ["card_number", "orders[*].iban"], "context": {"tenant_id": ["acme"]}, "rate_limit": {"requests": 5, "per": "1m"}, "detectors": ["secret", "email"]}`,
		`{"allow": true, "rate_limit": {"requests": 5, "per": "1m", "key": "k"}, "detectors": []}`,
		`{"allow": "yes"}`,
		`{"allow": 1}`,
		`{"reason": "x"}`,
		`true`,
		`null`,
		`[{"allow": true}]`,
		`{"allow": true, "redact": "x"}`,
		`{"allow": true, "context": {"t": "a"}}`,
		`{"allow": true, "rate_limit": {"requests": 1e300, "per": "1m"}}`,
		`{"allow": true, "rate_limit": {"requests": -1, "per": "1m"}}`,
		`{"allow": true, "rate_limit": {"requests": 2, "per": "0s"}}`,
		`{"allow": true, "rate_limit": null, "context": null, "detectors": null, "redact": null}`,
		`{"allow": true, "detectors": [1]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		v, err := ast.ParseTerm(doc)
		if err != nil || !v.IsGround() {
			return
		}
		d, err := decodeDecision(v.Value)
		if err != nil {
			if d.Allow || d.Reason != "" || d.RateLimit != nil || d.Redact != nil || d.Context != nil || d.Detectors != nil {
				t.Fatalf("error %v with a non-zero decision %+v", err, d)
			}
			return
		}
		obj := v.Value.(ast.Object) // a decoded decision must come from an object
		if d.Allow != (obj.Get(kAllow).Value.Compare(ast.Boolean(true)) == 0) {
			t.Fatalf("allow %v from %s", d.Allow, doc)
		}
		if rl := d.RateLimit; rl != nil && (rl.Requests <= 0 || rl.Per <= 0) {
			t.Fatalf("rate limit %+v from %s", rl, doc)
		}
	})
}

func TestDecodeDecision(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		allow   bool
		wantErr string
	}{
		{"minimal allow", `{"allow": true}`, true, ""},
		{"minimal deny", `{"allow": false}`, false, ""},
		{"nulls are absent", `{"allow": true, "rate_limit": null, "context": null, "detectors": null, "redact": null, "reason": null}`, true, ""},
		{"allow string", `{"allow": "true"}`, false, "allow is a string, not a boolean"},
		{"allow null", `{"allow": null}`, false, "allow is null, not a boolean"},
		{"no allow", `{}`, false, "allow is missing"},
		{"set", `{"allow"}`, false, "not an object but a set"},
		{"huge requests", `{"allow": true, "rate_limit": {"requests": 1e300, "per": "1m"}}`, false, "not a positive integer"},
		{"per number", `{"allow": true, "rate_limit": {"requests": 3, "per": 60}}`, false, "per is a number"},
		{"context key not string", `{"allow": true, "context": {1: ["a"]}}`, false, "context key 1 is not a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := decodeDecision(ast.MustParseTerm(tc.doc).Value)
			if tc.wantErr == "" {
				if err != nil || d.Allow != tc.allow {
					t.Fatalf("decode = %+v, %v", d, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || d.Allow {
				t.Fatalf("decode = %+v, %v; want error containing %q", d, err, tc.wantErr)
			}
		})
	}
}
