# Argument-level rule: a support agent may act on a customer only when the
# call's customer_id argument is one of the caller's accounts, listed in the
# "accounts" claim of the human's token.
package harness

default has_customer_id := false

has_customer_id if input.arguments.customer_id != null

customer_id := sprintf("%v", [input.arguments.customer_id])

default accounts := []

accounts := input.subject.claims.accounts if is_array(input.subject.claims.accounts)

own_customer if customer_id in accounts

read if upper(input.tool.method) in {"GET", "HEAD"}

decision := {"allow": false, "reason": "only support may use the CRM tools"} if {
	not "support" in input.subject.roles
} else := {"allow": true, "reason": "support may see the CRM tools"} if {
	# Arguments are unknown when listing: the argument check happens per call.
	input.action == "list"
} else := {"allow": false, "reason": sprintf("customer %s is not one of your accounts", [customer_id])} if {
	has_customer_id
	not own_customer
} else := {"allow": true, "reason": sprintf("customer %s is one of your accounts", [customer_id])} if {
	has_customer_id
} else := {"allow": true, "reason": "a read that names no customer"} if {
	read
} else := {"allow": false, "reason": "a write must name one of your customers"}
