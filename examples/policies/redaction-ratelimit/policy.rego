# Redaction and rate limits by role. The caller's strongest role picks a
# profile: what to mask in results and how many calls per minute. Writes are
# limited further, in one bucket per tenant shared by all its users. Tools
# tagged "tickets" (free text written by customers) also run the email
# detector on their results.
package harness

# The caller's strongest role that has a profile.
profile := p if {
	ranks := [data.profiles[r].rank | some r in input.subject.roles; data.profiles[r]]
	count(ranks) > 0
	some r in input.subject.roles
	p := data.profiles[r]
	p.rank == max(ranks)
}

write if not upper(input.tool.method) in {"GET", "HEAD"}

default tenant := "none"

tenant := input.subject.claims.tenant if is_string(input.subject.claims.tenant)

rate_limit := object.union(data.write_limit, {"key": sprintf("tenant:%s:writes", [tenant])}) if write

else := profile.rate_limit

detectors := ["secret", "credit_card", "email"] if "tickets" in input.tool.tags

else := ["secret", "credit_card"]

decision := {"allow": false, "reason": "no role with a profile"} if {
	not profile
} else := {
	"allow": true,
	"reason": "allowed with the role's redaction and limits",
	"redact": profile.redact,
	"rate_limit": rate_limit,
	"detectors": detectors,
}
