// Package policy decides, with an embedded Open Policy Agent, whether a tool
// may be listed or called, and with which obligations (redaction, tenant
// context, rate limit, detectors).
//
// An [Engine] loads Rego files and data documents from a directory, an OPA
// bundle, or the embedded default policy ([DefaultFS]), compiles them once and
// evaluates the configured query (data.harness.decision by default) for every
// call ([Engine.Decide]) and once for a whole tools/list ([Engine.Allowed]).
//
// The engine fails closed: an evaluation error, an undefined decision or a
// malformed one is a denial with a non-nil error, never an allow. Policy
// changes are built to the side and swapped in atomically ([Engine.Reload],
// [Engine.Watch]); a broken policy never replaces a working one.
//
// Replay: [Engine.Replay] decides recorded inputs again, in parallel, each at
// its recorded time and never from reused decisions, and [Outcome.Changes]
// compares what two decisions do to a call (`gateway policy replay`).
// [ParseInput] decodes a recorded input strictly.
//
// The input and decision documents follow the contract in ARCHITECTURE.md:
//
//	{"action": "call", "subject": {...}, "agent": {...}, "delegation": null,
//	 "tool": {...}, "arguments": {...}, "environment": "production",
//	 "time": "2026-01-01T00:00:00Z"}
//
//	{"allow": true, "reason": "support may read customers",
//	 "redact": ["card_number"], "context": {"tenant_id": ["acme"]},
//	 "rate_limit": {"requests": 5, "per": "1m"}, "detectors": ["secret"]}
package policy
