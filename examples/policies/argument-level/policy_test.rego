package harness_test

import data.harness

call(args, method) := {
	"action": "call",
	"subject": {"sub": "u1", "roles": ["support"], "claims": {"accounts": ["c-1", "c-2", "42"]}},
	"delegation": null,
	"tool": {"name": "crm_get_customer", "method": method, "tags": ["customers"]},
	"arguments": args,
}

test_own_customer_allowed if {
	d := harness.decision with input as call({"customer_id": "c-2"}, "GET")
	d.allow == true
	d.reason == "customer c-2 is one of your accounts"
}

test_numeric_customer_id if {
	d := harness.decision with input as call({"customer_id": 42}, "POST")
	d.allow == true
}

test_other_customer_denied if {
	d := harness.decision with input as call({"customer_id": "c-9"}, "GET")
	d.allow == false
	d.reason == "customer c-9 is not one of your accounts"
}

test_no_accounts_claim_denied if {
	inp := json.patch(call({"customer_id": "c-1"}, "GET"), [{"op": "replace", "path": "/subject/claims", "value": {}}])
	d := harness.decision with input as inp
	d.allow == false
}

test_accounts_claim_not_a_list_denied if {
	inp := json.patch(call({"customer_id": "c-1"}, "GET"), [{"op": "replace", "path": "/subject/claims", "value": {"accounts": "c-1"}}])
	d := harness.decision with input as inp
	d.allow == false
}

test_read_without_customer_allowed if {
	d := harness.decision with input as call({"status": "open"}, "GET")
	d.allow == true
}

test_write_without_customer_denied if {
	d := harness.decision with input as call({}, "POST")
	d.allow == false
	d.reason == "a write must name one of your customers"
}

test_list_allowed_for_support if {
	inp := object.union(call({}, "POST"), {"action": "list"})
	d := harness.decision with input as inp
	d.allow == true
}

test_not_support_denied if {
	inp := json.patch(call({"customer_id": "c-1"}, "GET"), [{"op": "replace", "path": "/subject/roles", "value": ["viewer"]}])
	d := harness.decision with input as inp
	d.allow == false
	d.reason == "only support may use the CRM tools"
}
