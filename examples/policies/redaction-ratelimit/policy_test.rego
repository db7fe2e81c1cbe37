package harness_test

import data.harness

decide(x) := d if {
	d := harness.decision with input as x
}

call(roles, method, tags) := {
	"action": "call",
	"subject": {"sub": "u1", "roles": roles, "claims": {"tenant": "acme"}},
	"delegation": null,
	"tool": {"name": "crm_tool", "method": method, "tags": tags},
	"arguments": {},
}

test_viewer_masks_contact_data if {
	d := harness.decision with input as call(["viewer"], "GET", ["customers"])
	d.allow == true
	d.redact == ["card_number", "email", "phone", "address"]
	d.rate_limit == {"requests": 20, "per": "1m"}
}

test_strongest_role_wins if {
	d := harness.decision with input as call(["viewer", "support"], "GET", ["customers"])
	d.redact == ["card_number", "customers[*].iban"]
	d.rate_limit.requests == 60
}

test_admin_unmasked if {
	d := harness.decision with input as call(["admin", "viewer"], "GET", ["customers"])
	d.redact == []
	d.rate_limit.requests == 600
}

test_writes_share_a_tenant_bucket if {
	d := harness.decision with input as call(["admin"], "POST", ["tickets"])
	d.rate_limit == {"requests": 5, "per": "1m", "key": "tenant:acme:writes"}
}

test_tickets_detect_emails if {
	decide(call(["support"], "GET", ["tickets"])).detectors == ["secret", "credit_card", "email"]
	decide(call(["support"], "GET", ["orders"])).detectors == ["secret", "credit_card"]
}

test_unknown_role_denied if {
	d := harness.decision with input as call(["guest"], "GET", ["customers"])
	d.allow == false
}
