# Package harness is the default Harness policy. The gateway evaluates
# data.harness.decision once per tool call (input.action == "call") and for
# each tool when filtering tools/list (input.action == "list").
#
# Deny by default. Roles are granted tools by tag and by access (read = GET and
# HEAD, write = everything else), never by endpoint; the grants live in
# data.json under "grants". A tool with several tags needs every one of them
# granted; a tool without tags is covered only by a "*" grant.
#
# The rules are few and flat on purpose: every rule evaluated costs time on
# every call, and a tools/list evaluates the decision once per tool. They read
# neither input.time nor input.arguments, so the gateway may reuse a decision
# for the same caller and tool for a few seconds (a delegation's expiry is
# enforced where its token is verified: an expired token never gets here).
package harness

# Tools, resources and prompts of an upstream MCP server are governed like
# OpenAPI tools, by role: they carry the tags data.mcp_upstreams gives their
# upstream. An MCP upstream not listed there is denied to everyone.
mcp_kind if input.tool.kind == "mcp"

mcp_kind if input.resource

mcp_kind if input.prompt

upstream := input.resource.upstream if {
	input.resource
} else := input.prompt.upstream if {
	input.prompt
} else := input.tool.upstream

tags := data.mcp_upstreams[upstream].tags if {
	mcp_kind
} else := [] if {
	mcp_kind
} else := input.tool.tags

# Read is GET or HEAD, a tool annotated readOnlyHint, reading a resource or
# getting a prompt. Anything else, an MCP tool without the hint included,
# is a write: the stricter of the two.
access := "read" if {
	upper(input.tool.method) in {"GET", "HEAD"}
} else := "read" if {
	input.tool.annotations.readOnlyHint == true
} else := "read" if {
	input.resource
} else := "read" if {
	input.prompt
} else := "write"

# Roles of the caller granted this access on every tag of the tool.
granting_roles contains role if {
	some role in input.subject.roles
	"*" in data.grants[role][access]
}

granting_roles contains role if {
	tags != []
	some role in input.subject.roles
	granted := data.grants[role][access]
	every tag in tags {
		tag in granted
	}
}

# A delegated agent may use only the tools its scopes name: "tool:<glob>".
# An input without the delegation key is malformed, and covered by nothing.
delegation_covers if input.delegation == null

delegation_covers if {
	some scope in input.delegation.scopes
	startswith(scope, "tool:")
	glob.match(substring(scope, 5, -1), null, scoped_name)
}

# What a delegation's scopes are matched against: the tool's or prompt's
# name; for a resource, "<upstream>_" (so tool:docs_* covers docs' resources).
scoped_name := input.prompt.name if {
	input.prompt
} else := concat("", [input.resource.upstream, "_"]) if {
	input.resource
} else := input.tool.name

# Why the call is denied, the first reason that applies; undefined when it is
# allowed. Every value here is defined whenever its condition holds (hence
# object.get, on this cold path), so a malformed input cannot slip through.
denial := sprintf("upstream %v is not an MCP upstream the policy knows (data.mcp_upstreams)", [upstream]) if {
	mcp_kind
	not data.mcp_upstreams[upstream]
} else := sprintf("delegation %v does not grant %v", [
	object.get(input, ["delegation", "id"], "(none)"),
	object.get(input, ["tool", "name"], "(none)"),
]) if {
	not delegation_covers
} else := "the arguments carry a secret" if {
	access == "write"
	input.detections.secret > 0
} else := sprintf("no role of %s grants %s on %s", [who, access, topic]) if {
	granting_roles == set()
}

# What the tool is about, for reasons: its tags, else its name.
topic := concat(", ", tags) if {
	tags != []
} else := input.tool.name if {
	is_string(input.tool.name)
} else := "this tool"

# Who the caller is, for reasons: the most readable name available.
who := input.subject.name if {
	input.subject.name != ""
} else := input.subject.email if {
	input.subject.email != ""
} else := input.subject.sub if {
	input.subject.sub != ""
} else := "the caller"

# Obligations of an allowed call: only unredacted roles see card numbers,
# writes are rate limited, and a tenant claim confines results to its tenant.
redact := [] if {
	some role in input.subject.roles
	role in data.obligations.unredacted_roles
} else := data.obligations.redact

rate_limit := data.obligations.write_rate_limit if {
	access == "write"
} else := null

tenant_context := {"tenant_id": [input.subject.claims.tenant]} if {
	is_string(input.subject.claims.tenant)
	tenant_records
} else := {}

# Results hold tenant records: those of OpenAPI tools, and of MCP upstreams
# that say so (data.mcp_upstreams.<name>.tenant_records). Plain text cannot
# be confined to a tenant and is withheld under a context.
tenant_records if not mcp_kind

tenant_records if data.mcp_upstreams[upstream].tenant_records == true

# The decision. Listing needs only allow, a cheaper answer for each tool of a
# tools/list. An allowed call carries its obligations ("rate_limit": null and
# "context": {} mean none).
decision := {"allow": false} if {
	input.action == "list"
	denial
} else := {"allow": true} if {
	input.action == "list"
	granting_roles != set()
} else := {"allow": false, "reason": denial} if {
	denial
} else := {
	"allow": true,
	"reason": sprintf("%s may %s %s", [min(granting_roles), access, topic]),
	"redact": redact,
	"context": tenant_context,
	"rate_limit": rate_limit,
} if {
	granting_roles != set()
} else := {"allow": false, "reason": "no rule allows this call"}
