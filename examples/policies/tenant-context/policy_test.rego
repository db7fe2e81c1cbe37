package harness_test

import data.harness

call(claims, args) := {
	"action": "call",
	"subject": {"sub": "u1", "roles": [], "claims": claims},
	"delegation": null,
	"tool": {"name": "crm_list_orders", "method": "GET", "tags": ["orders"]},
	"arguments": args,
}

test_tenant_becomes_context if {
	d := harness.decision with input as call({"tenant": "acme"}, {})
	d.allow == true
	d.context == {"tenant_id": ["acme"]}
	d.reason == "confined to tenant acme"
}

test_no_tenant_denied if {
	d := harness.decision with input as call({}, {})
	d.allow == false
	d.reason == "the token names no tenant"
}

test_empty_tenant_denied if {
	d := harness.decision with input as call({"tenant": ""}, {})
	d.allow == false
}

test_tenant_not_a_string_denied if {
	d := harness.decision with input as call({"tenant": ["acme", "beta"]}, {})
	d.allow == false
}

test_same_tenant_argument_allowed if {
	d := harness.decision with input as call({"tenant": "acme"}, {"tenant_id": "acme"})
	d.allow == true
}

test_other_tenant_argument_denied if {
	every args in [{"tenant_id": "beta"}, {"tenant": "beta"}] {
		d := harness.decision with input as call({"tenant": "acme"}, args)
		d.allow == false
		d.reason == "the arguments name another tenant than acme"
	}
}
