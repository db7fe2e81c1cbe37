package harness_test

import data.harness

decide(x) := d if {
	d := harness.decision with input as x
}

call(env, roles, method, delegation) := {
	"action": "call",
	"subject": {"sub": "u1", "roles": roles, "claims": {}},
	"delegation": delegation,
	"tool": {"name": "crm_create_ticket", "method": method, "tags": ["tickets"]},
	"arguments": {},
	"environment": env,
}

dlg := {"id": "d1", "scopes": ["tool:*"], "expires_at": ""}

test_developer_writes_in_preview if {
	d := harness.decision with input as call("preview", ["developer"], "POST", null)
	d.allow == true
	d.reason == "write allowed in preview"
}

test_developer_nothing_in_production if {
	d := harness.decision with input as call("production", ["developer"], "GET", null)
	d.allow == false
	d.reason == "no role may read here in production"
}

test_support_writes_only_in_preview if {
	decide(call("preview", ["support"], "POST", null)).allow == true
	decide(call("production", ["support"], "POST", dlg)).allow == false
}

test_support_reads_in_production if {
	decide(call("production", ["support"], "GET", null)).allow == true
}

test_admin_production_write_needs_delegation if {
	d := harness.decision with input as call("production", ["admin"], "DELETE", null)
	d.allow == false
	d.reason == "writes in production need a delegation"
	decide(call("production", ["admin"], "DELETE", dlg)).allow == true
}

test_unknown_environment_denied if {
	d := harness.decision with input as call("staging", ["admin"], "GET", dlg)
	d.allow == false
	d.reason == "unknown environment \"staging\""
}
