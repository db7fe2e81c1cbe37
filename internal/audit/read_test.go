package audit

import (
	"encoding/json"
	"testing"
)

func TestIsDecision(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Record
		want bool
	}{
		{"call", Record{Action: ActionCall, Decision: DecisionAllow}, true},
		{"unknown tool, no policy asked", Record{Action: ActionCall, Decision: DecisionDeny}, true},
		{"read", Record{Action: "read", Decision: DecisionDeny}, true},
		{"with input", Record{Kind: "approval", Input: json.RawMessage(`{}`)}, true},
		{"with a decision id", Record{Kind: "something", PolicyDecisionID: "x"}, true},
		{"start", Record{Kind: KindStart}, false},
		{"grant", Record{Kind: KindGrant, Subject: "alice"}, false},
		{"environment change", Record{Kind: "environment", Action: "create"}, false},
		{"environment change named like an action", Record{Kind: "environment", Action: ActionCall, Decision: DecisionAllow}, false},
	} {
		if got := tc.r.IsDecision(); got != tc.want {
			t.Errorf("%s: IsDecision = %v, want %v", tc.name, got, tc.want)
		}
	}
}
