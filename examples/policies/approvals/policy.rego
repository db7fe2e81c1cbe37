# Approvals: some calls are allowed only once a human approves them. The
# table data.approvals names, per tool, the roles it applies to, an optional
# numeric argument threshold ("argument" over "over"), the approvers, the
# reason and the ttl. The gateway holds such a call, asks an approver at
# /approvals/<id>, and runs the identical call once when it is approved.
package harness

read if upper(input.tool.method) in {"GET", "HEAD"}

access := "read" if read

else := "write"

granted if {
	some role in input.subject.roles
	some topic in data.grants[role][access]
	topic == "*"
}

granted if {
	input.tool.tags != []
	some role in input.subject.roles
	every tag in input.tool.tags {
		tag in data.grants[role][access]
	}
}

# Keyed by the upstream's operation id, so that the table does not depend
# on the upstream's name prefix of the MCP tool name.
rule := data.approvals[input.tool.operation]

# The rule applies to the caller's roles and, when it names an argument,
# only above its threshold (a missing or non-numeric argument needs approval:
# the stricter reading).
needs_approval if {
	input.action == "call"
	some role in input.subject.roles
	role in rule.roles
	not rule.argument
}

needs_approval if {
	input.action == "call"
	some role in input.subject.roles
	role in rule.roles
	rule.argument
	not below_threshold
}

below_threshold if {
	v := input.arguments[rule.argument]
	is_number(v)
	v <= rule.over
}

approval := {"approvers": rule.approvers, "reason": rule.reason, "ttl": rule.ttl} if needs_approval

else := null

decision := {"allow": false, "reason": sprintf("no role grants %s on %s", [access, input.tool.name])} if {
	not granted
} else := {"allow": true, "reason": "allowed", "approval": approval}
