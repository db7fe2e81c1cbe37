// Package redact removes data an agent must not see from tool results.
//
// A [Redactor] is compiled from [Rules] (usually the policy decision's
// "redact", "context" and "detectors") and applies three things in one pass
// over a result:
//
//   - context filtering: any object holding a context key (for example
//     "tenant_id") whose value is outside the allowed list is removed: an
//     array element is dropped, an object member is dropped, and when the
//     result itself is out of context [Report.ContextEmpty] is set and the
//     data is replaced by null, so the caller can answer [NoRecordInContext];
//   - field masking: a bare key ("card_number") masks that key at any depth,
//     a dotted path ("orders[*].iban") masks from the root; the value, whatever
//     its type, becomes the string "[REDACTED:field]";
//   - detectors: every string (object keys included) and every integer
//     literal is scanned for secrets and PII by a single hand-written pass
//     that only validates locally around trigger bytes; each finding is
//     replaced by [Mask] of its kind, e.g. "[REDACTED:credit_card]".
//
// Everything fails closed: an object whose context value cannot be compared
// (null, an object, an array holding a non-allowed value) is out of context,
// and invalid JSON is an error, never passed through.
package redact
