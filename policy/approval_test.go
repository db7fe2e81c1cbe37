package policy

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseApproval(t *testing.T) {
	tests := []struct {
		name, raw string
		want      *Approval
		wantErr   bool
	}{
		{"absent", ``, nil, false},
		{"null", `null`, nil, false},
		{"full", `{"approvers":["self","role:admin","user:bob"],"reason":"r","ttl":"5m"}`,
			&Approval{Approvers: []string{"self", "role:admin", "user:bob"}, Reason: "r", TTL: 5 * time.Minute}, false},
		{"default ttl and reason", `{"approvers":["self"]}`,
			&Approval{Approvers: []string{"self"}, Reason: "the policy asks for a human's approval", TTL: DefaultApprovalTTL}, false},
		{"no approvers", `{"approvers":[],"ttl":"5m"}`, nil, true},
		{"bad approver", `{"approvers":["admin"]}`, nil, true},
		{"empty role", `{"approvers":["role:"]}`, nil, true},
		{"bad ttl", `{"approvers":["self"],"ttl":"soon"}`, nil, true},
		{"negative ttl", `{"approvers":["self"],"ttl":"-1m"}`, nil, true},
		{"ttl too long", `{"approvers":["self"],"ttl":"48h"}`, nil, true},
		{"not an object", `["self"]`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseApproval(json.RawMessage(tt.raw))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("got %+v, want nil", got)
				}
				return
			}
			if got.Reason != tt.want.Reason || got.TTL != tt.want.TTL || len(got.Approvers) != len(tt.want.Approvers) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
