package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentharness/harness/policy"
)

// The demo runs the default policy plus an approval rule: support may issue
// refunds, and one over demoRefundLimit cents is held until an admin
// approves it. It is a policy dir of its own (written at start) rather than
// a change of the default policy: a rule that reads input.arguments turns
// off decision reuse for every call (policy/memo.go), a price the demo may
// pay but a deployment of the default policy should not.
const demoRefundLimit = 2000

// demoApprovalRego adds the approval table to package harness.
const demoApprovalRego = `package harness

# Approvals (demo): data.approvals names, by operation id, the roles a
# rule applies to, the numeric argument and its threshold, the approvers,
# the reason and the ttl. A missing or non-numeric argument needs approval.
approval_rule := data.approvals[input.tool.operation]

needs_approval if {
	input.action == "call"
	some role in input.subject.roles
	role in approval_rule.roles
	not below_approval_threshold
}

below_approval_threshold if {
	v := input.arguments[approval_rule.argument]
	is_number(v)
	v <= approval_rule.over
}

approval := {"approvers": approval_rule.approvers, "reason": approval_rule.reason, "ttl": approval_rule.ttl} if needs_approval

else := null
`

// writeDemoPolicy writes the demo's policy into dir.
func writeDemoPolicy(dir string) error {
	def := policy.DefaultFS()
	rego, err := fs.ReadFile(def, "harness.rego")
	if err != nil {
		return err
	}
	const tail = "\t\"rate_limit\": rate_limit,\n}"
	if strings.Count(string(rego), tail) != 1 {
		return fmt.Errorf("demo policy: the default decision no longer ends with %q", tail)
	}
	rego = []byte(strings.Replace(string(rego), tail, "\t\"rate_limit\": rate_limit,\n\t\"approval\": approval,\n}", 1))
	raw, err := fs.ReadFile(def, "data.json")
	if err != nil {
		return err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return fmt.Errorf("demo policy: %w", err)
	}
	support, ok := data["grants"].(map[string]any)["support"].(map[string]any)
	if !ok {
		return fmt.Errorf("demo policy: the default data has no support grants")
	}
	support["write"] = append(support["write"].([]any), "refunds", "orders") // crm_issue_refund is tagged refunds, orders
	data["approvals"] = map[string]any{
		"issue_refund": map[string]any{
			"roles": []string{"support"}, "argument": "amount_cents", "over": demoRefundLimit,
			"approvers": []string{"role:admin"}, "reason": fmt.Sprintf("refunds over %d.%02d need an admin's approval", demoRefundLimit/100, demoRefundLimit%100), "ttl": "15m",
		},
	}
	out, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"harness.rego": rego, "approvals.rego": []byte(demoApprovalRego), "data.json": out} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("demo policy: %w", err)
		}
	}
	return nil
}
