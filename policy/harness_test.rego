package harness_test

import data.harness

# Inputs are built from these pieces; each test overrides what it needs.
tool(method, tags) := {
	"name": "crm_tool",
	"upstream": "crm",
	"operation": "tool",
	"method": method,
	"path": "/x",
	"tags": tags,
}

req(roles, method, tags) := {
	"action": "call",
	"subject": {"iss": "https://idp", "sub": "u1", "email": "alice@example.com", "name": "alice", "roles": roles, "claims": {}},
	"agent": {"id": "cursor", "session_id": ""},
	"delegation": null,
	"tool": tool(method, tags),
	"arguments": {},
	"environment": "production",
	"time": "2026-01-01T00:00:00Z",
}

decide(x) := d if {
	d := harness.decision with input as x
}

# --- role grants by tag and method ---

test_support_may_read_customers if {
	d := decide(req(["support"], "GET", ["customers"]))
	d.allow == true
	d.reason == "support may read customers"
}

test_head_is_read if {
	d := decide(req(["support"], "HEAD", ["orders"]))
	d.allow == true
	d.reason == "support may read orders"
}

test_support_may_write_tickets if {
	d := decide(req(["support"], "POST", ["tickets"]))
	d.allow == true
	d.reason == "support may write tickets"
}

test_support_may_not_write_refunds if {
	d := decide(req(["support"], "POST", ["refunds"]))
	d.allow == false
	d.reason == "no role of alice grants write on refunds"
}

test_support_may_not_read_refunds if {
	d := decide(req(["support"], "GET", ["refunds"]))
	d.allow == false
	d.reason == "no role of alice grants read on refunds"
}

test_every_tag_must_be_granted if {
	d := decide(req(["support"], "GET", ["customers", "refunds"]))
	d.allow == false
	d.reason == "no role of alice grants read on customers, refunds"
}

test_viewer_reads_everything if {
	every tags in [["customers"], ["refunds"], []] {
		decide(req(["viewer"], "GET", tags)).allow == true
	}
}

test_viewer_writes_nothing if {
	every m in ["POST", "PUT", "PATCH", "DELETE"] {
		decide(req(["viewer"], m, ["tickets"])).allow == false
	}
}

test_admin_everything if {
	every m in ["GET", "POST", "DELETE"] {
		d := decide(req(["admin"], m, ["refunds"]))
		d.allow == true
	}
}

test_untagged_tool_needs_wildcard if {
	d := decide(req(["support"], "GET", []))
	d.allow == false
	d.reason == "no role of alice grants read on crm_tool"
}

test_no_roles_denied if {
	d := decide(req([], "GET", ["customers"]))
	d.allow == false
}

test_unknown_role_denied if {
	decide(req(["root"], "GET", ["customers"])).allow == false
}

test_missing_method_is_write if {
	decide(req(["viewer"], "", ["customers"])).allow == false
	decide(req(["admin"], "", ["customers"])).allow == true
}

test_lowercase_method if {
	decide(req(["viewer"], "get", ["customers"])).allow == true
}

test_first_granting_role_named if {
	d := decide(req(["viewer", "support"], "GET", ["customers"]))
	d.reason == "support may read customers"
}

test_who_falls_back_to_email if {
	inp := json.patch(req([], "GET", ["orders"]), [{"op": "replace", "path": "/subject/name", "value": ""}])
	decide(inp).reason == "no role of alice@example.com grants read on orders"
}

test_empty_input_denied if {
	d := decide({})
	d.allow == false
	d.reason == "delegation (none) does not grant (none)"
}

test_missing_delegation_key_denied if {
	inp := json.remove(req(["admin"], "GET", ["customers"]), ["/delegation"])
	d := decide(inp)
	d.allow == false
	d.reason == "delegation (none) does not grant crm_tool"
}

test_malformed_parts_still_deny if {
	# No subject, no tags, no name: every reason is still defined.
	d := decide({"action": "call", "delegation": null, "tool": {"method": "GET"}})
	d.allow == false
	d.reason == "no role of the caller grants read on this tool"
	decide({"action": "list", "delegation": null, "tool": {}}) == {"allow": false}
}

# --- delegation scopes ---

delegated(scopes) := json.patch(req(["support"], "GET", ["customers"]), [{
	"op": "replace", "path": "/delegation",
	"value": {"id": "dlg-1", "scopes": scopes, "expires_at": "2026-01-01T00:05:00Z"},
}])

test_delegation_exact_scope if {
	decide(delegated(["tool:crm_tool"])).allow == true
}

test_delegation_glob_scope if {
	decide(delegated(["tool:crm_*"])).allow == true
	decide(delegated(["tool:*"])).allow == true
	decide(delegated(["tool:*_tool"])).allow == true
	decide(delegated(["tool:crm_t?l"])).allow == false
}

test_delegation_other_scope_denied if {
	d := decide(delegated(["tool:billing_*", "crm_tool"]))
	d.allow == false
	d.reason == "delegation dlg-1 does not grant crm_tool"
}

test_delegation_no_scopes_denied if {
	decide(delegated([])).allow == false
}

test_delegation_does_not_add_roles if {
	inp := json.patch(delegated(["tool:*"]), [{"op": "replace", "path": "/tool/tags", "value": ["refunds"]}])
	decide(inp).allow == false
}

# --- detections ---

test_secret_on_write_denied if {
	inp := object.union(req(["support"], "POST", ["tickets"]), {"detections": {"secret": 1}})
	d := decide(inp)
	d.allow == false
	d.reason == "the arguments carry a secret"
}

test_secret_on_read_allowed if {
	inp := object.union(req(["support"], "GET", ["tickets"]), {"detections": {"secret": 1}})
	decide(inp).allow == true
}

test_no_secret_on_write_allowed if {
	inp := object.union(req(["support"], "POST", ["tickets"]), {"detections": {"secret": 0, "email": 2}})
	decide(inp).allow == true
}

# --- obligations ---

test_non_admin_redacts_card_number if {
	decide(req(["support"], "GET", ["customers"])).redact == ["card_number"]
}

test_admin_unredacted if {
	decide(req(["admin"], "GET", ["customers"])).redact == []
}

test_write_rate_limited if {
	decide(req(["support"], "POST", ["tickets"])).rate_limit == {"requests": 10, "per": "1m"}
}

test_read_not_rate_limited if {
	decide(req(["support"], "GET", ["tickets"])).rate_limit == null
}

test_tenant_context if {
	inp := json.patch(req(["support"], "GET", ["customers"]), [{"op": "replace", "path": "/subject/claims", "value": {"tenant": "acme"}}])
	decide(inp).context == {"tenant_id": ["acme"]}
}

test_no_tenant_no_context if {
	decide(req(["support"], "GET", ["customers"])).context == {}
}

test_denied_has_no_obligations if {
	d := decide(req(["support"], "POST", ["refunds"]))
	object.keys(d) == {"allow", "reason"}
}

# --- list ---

test_list_decision_is_allow_only if {
	inp := object.union(req(["support"], "GET", ["customers"]), {"action": "list"})
	decide(inp) == {"allow": true}
	inp2 := object.union(req(["support"], "POST", ["refunds"]), {"action": "list"})
	decide(inp2) == {"allow": false}
}

test_list_uses_same_rules if {
	inp := object.union(req(["support"], "GET", ["customers"]), {"action": "list"})
	decide(inp).allow == true
	inp2 := object.union(req(["support"], "DELETE", ["customers"]), {"action": "list"})
	decide(inp2).allow == false
}

test_allowed_decision_shape if {
	decide(req(["support"], "PUT", ["tickets"])) == {
		"allow": true,
		"reason": "support may write tickets",
		"redact": ["card_number"],
		"context": {},
		"rate_limit": {"requests": 10, "per": "1m"},
	}
}

# --- tools, resources and prompts of upstream MCP servers ---

mcp_tool(upstream, ann) := {
	"name": "docs_search", "upstream": upstream, "operation": "search",
	"method": "", "path": "", "tags": [], "kind": "mcp", "annotations": ann,
}

mcp_req(roles, action, t) := object.union(req(roles, "GET", []), {"action": action, "tool": t})

test_mcp_read_only_tool_counts_as_read if {
	d := decide(mcp_req(["support"], "call", mcp_tool("handbook", {"readOnlyHint": true})))
	d.allow == true
	d.reason == "support may read handbook"
}

test_mcp_tool_without_hint_is_a_write if {
	d := decide(mcp_req(["support"], "call", mcp_tool("handbook", {})))
	d.allow == false
	d.reason == "no role of alice grants write on handbook"
}

test_mcp_unknown_upstream_denied_even_to_admin if {
	d := decide(mcp_req(["admin"], "call", mcp_tool("elsewhere", {"readOnlyHint": true})))
	d.allow == false
	contains(d.reason, "upstream elsewhere is not an MCP upstream the policy knows")
	l := decide(mcp_req(["admin"], "list", mcp_tool("elsewhere", {"readOnlyHint": true})))
	l.allow == false
}

test_mcp_resource_read_by_role if {
	x := json.remove(object.union(req(["support"], "GET", []), {"action": "read", "resource": {"uri": "docs://a", "upstream": "handbook", "name": "a", "mime_type": "text/plain"}}), ["tool"])
	decide(x).allow == true
	y := json.remove(object.union(req(["nobody"], "GET", []), {"action": "read", "resource": {"uri": "docs://a", "upstream": "handbook", "name": "a", "mime_type": ""}}), ["tool"])
	decide(y).allow == false
}

test_mcp_prompt_by_role_and_delegation if {
	base := json.remove(object.union(req(["support"], "GET", []), {"action": "prompt", "prompt": {"name": "handbook_greet", "upstream": "handbook", "operation": "greet"}}), ["tool"])
	decide(base).allow == true
	scoped := object.union(base, {"delegation": {"id": "d1", "scopes": ["tool:crm_*"], "expires_at": ""}})
	decide(scoped).allow == false
	covered := object.union(base, {"delegation": {"id": "d1", "scopes": ["tool:handbook_*"], "expires_at": ""}})
	decide(covered).allow == true
}

test_mcp_tenant_context_only_where_the_upstream_holds_tenant_records if {
	base := object.union(mcp_req(["support"], "call", mcp_tool("handbook", {"readOnlyHint": true})), {"subject": {"iss": "https://idp", "sub": "u1", "email": "", "name": "alice", "roles": ["support"], "claims": {"tenant": "acme"}}})
	decide(base).context == {}
	d := decide(base) with data.mcp_upstreams.handbook.tenant_records as true
	d.context == {"tenant_id": ["acme"]}
}
