package harness_test

import data.harness

call(tool, method, tags, roles, args) := {
	"action": "call",
	"subject": {"sub": "alice", "roles": roles},
	"delegation": null,
	"tool": {"name": concat("_", ["crm", tool]), "operation": tool, "method": method, "tags": tags},
	"arguments": args,
}

refund(amount) := call("issue_refund", "POST", ["refunds"], ["support"], {"order_id": "o-1", "amount": amount})

test_small_refund_needs_no_approval if {
	d := harness.decision with input as refund(40)
	d.allow == true
	d.approval == null
}

test_refund_at_the_limit_needs_no_approval if {
	d := harness.decision with input as refund(100)
	d.approval == null
}

test_large_refund_needs_admin_approval if {
	d := harness.decision with input as refund(250)
	d.allow == true
	d.approval.approvers == ["role:admin"]
	d.approval.ttl == "15m"
	d.approval.reason == "refunds over 100 EUR need an admin's approval"
}

test_refund_with_non_numeric_amount_needs_approval if {
	d := harness.decision with input as refund("250")
	d.approval.approvers == ["role:admin"]
}

test_refund_by_admin_needs_no_approval if {
	d := harness.decision with input as call("issue_refund", "POST", ["refunds"], ["admin"], {"amount": 900})
	d.allow == true
	d.approval == null
}

test_delete_needs_self if {
	d := harness.decision with input as call("delete_ticket", "DELETE", ["tickets"], ["support"], {"ticket_id": "t-1"})
	d.allow == true
	d.approval.approvers == ["self"]
}

test_listing_asks_no_approval if {
	inp := json.patch(refund(500), [{"op": "replace", "path": "/action", "value": "list"}])
	d := harness.decision with input as inp
	d.allow == true
	d.approval == null
}

test_denied_call_carries_no_approval if {
	d := harness.decision with input as call("issue_refund", "POST", ["refunds"], ["viewer"], {"amount": 500})
	d.allow == false
	not d.approval
}
