# Per environment: the same tools are stricter in production than in preview.
# In production only admins write, and only through a delegation (never with
# the human's own token); developers have no access at all. An environment not
# listed in data.json gets nothing.
package harness

env := data.environments[input.environment]

access := "read" if upper(input.tool.method) in {"GET", "HEAD"}

else := "write"

role_allows if {
	access == "read"
	some role in input.subject.roles
	role in env.read_roles
}

role_allows if {
	access == "write"
	some role in input.subject.roles
	role in env.write_roles
}

decision := {"allow": false, "reason": sprintf("unknown environment %q", [input.environment])} if {
	not env
} else := {"allow": false, "reason": sprintf("no role may %s here in %s", [access, input.environment])} if {
	not role_allows
} else := {"allow": false, "reason": sprintf("writes in %s need a delegation", [input.environment])} if {
	access == "write"
	env.writes_need_delegation
	input.delegation == null
} else := {"allow": true, "reason": sprintf("%s allowed in %s", [access, input.environment])}
