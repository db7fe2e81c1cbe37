# Tenant context: every caller belongs to one tenant, named by the "tenant"
# claim of the human's token. Results are confined to that tenant (records with
# another tenant_id never reach the agent), and an argument naming another
# tenant is refused before the upstream is called.
package harness

tenant := input.subject.claims.tenant if {
	is_string(input.subject.claims.tenant)
	input.subject.claims.tenant != ""
}

default names_other_tenant := false

names_other_tenant if {
	some key in ["tenant", "tenant_id"]
	arg := input.arguments[key]
	arg != tenant
}

decision := {"allow": false, "reason": "the token names no tenant"} if {
	not tenant
} else := {"allow": false, "reason": sprintf("the arguments name another tenant than %s", [tenant])} if {
	names_other_tenant
} else := {
	"allow": true,
	"reason": sprintf("confined to tenant %s", [tenant]),
	"context": {"tenant_id": [tenant]},
}
