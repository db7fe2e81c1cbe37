package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Approval is what an allowing decision asks for before the call may run:
// a human approver's yes, bound to the exact call. Decoded from the
// decision's "approval": {"approvers": [...], "reason": "...", "ttl": "15m"}.
type Approval struct {
	// Approvers lists who may decide: "self" (the human the agent acts
	// for), "role:<role>" or "user:<sub or email>". Never empty.
	Approvers []string
	// Reason says why approval is needed, for the approver and the agent.
	Reason string
	// TTL is how long the request waits and how long an approval stays
	// usable (> 0, at most MaxApprovalTTL).
	TTL time.Duration
}

// MaxApprovalTTL bounds an approval's time to live.
const MaxApprovalTTL = 24 * time.Hour

// DefaultApprovalTTL is the ttl of an approval document that names none.
const DefaultApprovalTTL = 15 * time.Minute

// ParseApproval decodes and checks an approval document (the decision's
// Approval field). A nil or empty document is (nil, nil): no approval.
func ParseApproval(raw json.RawMessage) (*Approval, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var doc struct {
		Approvers []string `json:"approvers"`
		Reason    string   `json:"reason"`
		TTL       string   `json:"ttl"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("not an object of approvers, reason and ttl: %w", err)
	}
	if len(doc.Approvers) == 0 {
		return nil, fmt.Errorf("approvers is empty")
	}
	for _, a := range doc.Approvers {
		if !validApprover(a) {
			return nil, fmt.Errorf("approver %q is not self, role:<role> or user:<sub or email>", a)
		}
	}
	a := &Approval{Approvers: doc.Approvers, Reason: doc.Reason, TTL: DefaultApprovalTTL}
	if a.Reason == "" {
		a.Reason = "the policy asks for a human's approval"
	}
	if doc.TTL != "" {
		d, err := time.ParseDuration(doc.TTL)
		if err != nil || d <= 0 || d > MaxApprovalTTL {
			return nil, fmt.Errorf("ttl %q is not a positive duration of at most %s", doc.TTL, MaxApprovalTTL)
		}
		a.TTL = d
	}
	return a, nil
}

func validApprover(a string) bool {
	if a == "self" {
		return true
	}
	for _, p := range []string{"role:", "user:"} {
		if rest, ok := strings.CutPrefix(a, p); ok {
			return rest != "" && strings.TrimSpace(rest) == rest
		}
	}
	return false
}
