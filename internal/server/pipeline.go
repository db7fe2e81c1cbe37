package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/internal/redact"
	"github.com/agentharness/harness/internal/telemetry"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

// Decision values of the audit record.
const (
	decAllow       = "allow"
	decDeny        = "deny"
	decRateLimited = "rate_limited"
	decError       = "error"
)

// call is the state of one tools/call as it moves through the pipeline.
type call struct {
	start   time.Time
	p       *authn.Principal
	rec     audit.Record
	span    trace.Span
	known   bool // the tool exists: its name may be a metric label
	refused bool // refused before the upstream: charged to the refusal budget
	// answer, when set, answers a refused call instead of its tool error
	// (a JSON-RPC error such as -32042 URLElicitationRequired).
	answer error
	// requestState is a 2026-07-28 retry's requestState; inputRequired,
	// when set, answers a held call instead of its tool error (approval.go).
	requestState  string
	inputRequired *mcp.CallToolResult
}

// callTool is the pipeline of one tool call (steps 3–8 of ARCHITECTURE.md):
// find the tool, decide, limit, invoke with an identity assertion, redact,
// record. Every outcome, allowed or not, leaves one audit record; every
// refusal before invoke keeps the upstream untouched.
func (s *Server) callTool(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	c := &call{start: time.Now(), p: principalFrom(ctx), requestState: req.Params.RequestState}
	name := req.Params.Name
	e := s.envOf(ctx)
	c.rec = audit.Record{
		Action:      policy.ActionCall,
		Tool:        name,
		Environment: e.label,
		Session:     sessionFrom(ctx),
	}
	if info := mcpserver.RequestProtocolInfoFromContext(ctx); info != nil {
		c.rec.Protocol = info.ProtocolVersion
	}
	ctx = s.startCall(ctx, c)
	if c.p == nil { // cannot happen behind authenticate; refuse anyway
		return s.finish(ctx, c, decDeny, "no authenticated principal", mcp.NewToolResultError("denied: no authenticated principal"))
	}
	p := c.p
	c.rec.Subject, c.rec.Issuer, c.rec.Agent = p.Subject, humanIssuer(p), p.Agent
	c.rec.Email, c.rec.Name = p.Email, p.Name
	if p.Delegation != nil {
		c.rec.Delegation = p.Delegation.ID
	}

	tool, up, ok := e.catalog.Lookup(name)
	if !ok { // mcp-go answers unknown names itself; see auditUnknownTool
		return s.deny(ctx, c, "no such tool")
	}
	c.rec.Upstream, c.known = up.Name, true
	args := req.GetArguments()
	if args == nil {
		args = map[string]any{}
	}

	if why, held := s.withheldTools(ctx)[name]; held { // a changed definition awaits approval
		return s.deny(ctx, c, why)
	}

	// 4 decide, 5 limit.
	in := s.input(ctx, p, policy.ActionCall)
	in.Tool = policyTool(tool)
	in.Arguments = args
	dec, red, ref := s.gate(ctx, c, in, name, func() bool { return s.visible(ctx, p)[name] })
	if ref != nil {
		res, err := s.finish(ctx, c, ref.decision, ref.reason, mcp.NewToolResultError(ref.message))
		if c.answer != nil && err == nil { // -32042: see approval.go
			return nil, c.answer
		}
		if c.inputRequired != nil && err == nil { // input_required: see approval.go
			return c.inputRequired, nil
		}
		return res, err
	}
	if tool.Kind == tools.KindMCP { // 6–7 for a tool of an upstream MCP server
		return s.invokeMCPTool(ctx, c, req, tool, up, args, dec, red)
	}

	// 6 invoke, with the gateway's assertion of who is calling.
	hdr := http.Header{}
	if err := s.attachIdentity(ctx, hdr, p, up.Name); err != nil {
		var ie *identityError
		if errors.As(err, &ie) {
			s.log.WarnContext(ctx, "no identity the upstream accepts: call refused", "err", err, "cause", ie.cause, "tool", name)
			return s.fail(ctx, c, ie.msg)
		}
		s.log.ErrorContext(ctx, "cannot sign the upstream identity assertion", "err", err)
		return s.fail(ctx, c, "the gateway could not sign the identity assertion")
	}
	uctx, end := s.stage(ctx, telemetry.StageUpstream)
	resp, err := tools.Invoke(uctx, s.client, up, tool, args, hdr)
	end()
	if err != nil {
		if errors.Is(err, tools.ErrInvalidArguments) {
			c.refused = true
			return s.finish(ctx, c, decError, "invalid arguments", mcp.NewToolResultError(err.Error()))
		}
		s.log.WarnContext(ctx, "upstream call failed", "err", err, "tool", name)
		return s.fail(ctx, c, fmt.Sprintf("upstream %s failed: %s", up.Name, upstreamReason(err)))
	}
	c.rec.Status = resp.Status

	// 7 redact.
	_, end = s.stage(ctx, telemetry.StageRedact)
	result, rep, withheld := render(red, resp)
	end()
	c.rec.Redactions = rep.Total()
	if len(rep.Counts) > 0 {
		c.rec.RedactionKinds = rep.Counts
	}
	reason := orDefault(dec.Reason, "allowed by policy")
	if withheld != "" {
		reason += "; " + withheld
	}
	if resp.Status >= 400 {
		return s.finish(ctx, c, decAllow, fmt.Sprintf("%s; upstream answered %d", reason, resp.Status), result)
	}
	return s.finish(ctx, c, decAllow, reason, result)
}

// refusal ends an operation before the upstream is called.
type refusal struct {
	decision, reason, message string
	// budget marks refusals charged to the human's refusal budget
	// (denials and rate limits), not failures of the gateway.
	budget bool
}

func denied(reason string) *refusal { return &refusal{decDeny, reason, "denied: " + reason, true} }

func failed(reason string) *refusal { return &refusal{decError, reason, "error: " + reason, false} }

// gate runs the steps every operation shares before its upstream is
// called (4 decide, 5 limit, and the audit trail's health) for the policy
// input in, about the tool, resource or prompt called name. listed reports
// whether the policy lists it for the caller (a delegation's scopes
// included). It returns the allowing decision and its redactor, or why
// the operation is refused.
func (s *Server) gate(ctx context.Context, c *call, in *policy.Input, name string, listed func() bool) (dec policy.Decision, red *redact.Redactor, ref *refusal) {
	defer func() {
		if ref != nil && ref.budget {
			c.refused = true // charged to the human's refusal budget
		}
	}()
	p := c.p
	in.CacheKey = tokenKeyFrom(ctx) // the policy may reuse a decision for this credential
	if found := redact.Scan(in.Arguments, s.cfg.Redaction.Detectors); len(found) > 0 {
		in.Detections = found
	}
	pctx, end := s.stage(ctx, telemetry.StagePolicy)
	policyStart := time.Now()
	dec, err := s.envOf(ctx).policy.Decide(pctx, in)
	if s.tel != nil {
		s.tel.RecordPolicyEval(pctx, time.Since(policyStart))
	}
	end()
	c.rec.PolicyDecisionID, c.rec.PolicyRevision = dec.ID, dec.Revision
	s.recordDecision(ctx, &c.rec, in, dec, err) // for policy replay
	if err != nil {
		s.log.ErrorContext(ctx, "policy evaluation failed: refused", "err", err, "name", name, "subject", p.Subject)
		return dec, nil, denied("the policy could not decide this call")
	}
	if !dec.Allow {
		return dec, nil, denied(orDefault(dec.Reason, "the policy does not allow this call"))
	}
	if d := p.Delegation; d != nil && in.Resource == nil && !delegation.ScopeAllows(d.Scopes, name) {
		return dec, nil, denied(fmt.Sprintf("delegation %s does not include %s", d.ID, name))
	}
	if !listed() {
		what := "tool"
		switch {
		case in.Resource != nil:
			what = "resource"
		case in.Prompt != nil:
			what = "prompt"
		}
		return dec, nil, denied("the policy does not list this " + what + " for you")
	}

	// The redaction rules are checked before the upstream is called: a
	// decision the gateway cannot apply must not release data.
	red, err = redact.Compile(redact.Rules{Paths: dec.Redact, Context: dec.Context, Detectors: s.detectors(dec)})
	if err != nil {
		s.log.ErrorContext(ctx, "policy decision has unusable redaction rules: refused", "err", err, "name", name)
		return dec, nil, failed("the policy decision's redaction rules are invalid")
	}

	// 5 limit.
	// A preview's buckets are its own: testing a branch never spends the
	// human's production budget (qualify keeps production's keys as they were).
	lims := s.limitsFor(p, s.envOf(ctx).qualify(name), dec.RateLimit)
	lctx, end := s.stage(ctx, telemetry.StageRateLimit)
	res, err := s.limiter.Allow(lctx, lims)
	end()
	switch {
	case errors.Is(err, ratelimit.ErrInvalidLimit):
		s.log.ErrorContext(ctx, "rate limit from the policy decision is invalid: refused", "err", err)
		return dec, nil, failed("the policy decision's rate limit is invalid")
	case err != nil && s.cfg.RateLimit.OnError != "allow":
		s.log.ErrorContext(ctx, "rate limiter unavailable: refused", "err", err)
		return dec, nil, failed("the rate limiter is unavailable, so calls are refused")
	case err != nil:
		s.log.WarnContext(ctx, "rate limiter unavailable: allowed by ratelimit.on_error", "err", err)
	case !res.Allowed:
		retry := res.RetryAfter.Round(time.Millisecond)
		msg := fmt.Sprintf("rate limited: %d requests per %s for %s; retry after %s", res.Limit.Requests, res.Limit.Per, name, retry)
		return dec, nil, &refusal{decRateLimited, msg, msg, true}
	}

	// Refuse rather than act unrecorded when the audit trail is failing.
	if err := s.auditHealthy(); err != nil && s.cfg.Audit.OnError != "allow" {
		return dec, nil, failed("the audit trail cannot be written, so calls are refused")
	}
	// A call the policy allows only with a human's approval (approval.go);
	// after the limit, so that held calls are charged like any other.
	if ref := s.approvalGate(ctx, c, in, name, dec, red); ref != nil {
		return dec, nil, ref
	}
	return dec, red, nil
}

// maxAuditedName bounds a tool name an agent made up, as it enters the
// audit record.
const maxAuditedName = 128

// auditUnknownTool records a tools/call for a name the gateway does not
// serve: mcp-go refuses it before the pipeline runs, but an agent probing
// for tools is exactly what the audit trail is for.
func (s *Server) auditUnknownTool(ctx context.Context, _ any, method mcp.MCPMethod, message any, err error) {
	if method != mcp.MethodToolsCall || !errors.Is(err, mcpserver.ErrToolNotFound) {
		return
	}
	name := ""
	if req, ok := message.(*mcp.CallToolRequest); ok {
		name = req.Params.Name
	}
	if len(name) > maxAuditedName {
		name = name[:maxAuditedName] + "…"
	}
	c := &call{start: time.Now(), p: principalFrom(ctx)}
	c.rec = audit.Record{Action: policy.ActionCall, Tool: name, Environment: s.envOf(ctx).label, Session: sessionFrom(ctx)}
	c.refused = true
	if c.p != nil {
		c.rec.Subject, c.rec.Issuer, c.rec.Agent = c.p.Subject, humanIssuer(c.p), c.p.Agent
		c.rec.Email, c.rec.Name = c.p.Email, c.p.Name
		if c.p.Delegation != nil {
			c.rec.Delegation = c.p.Delegation.ID
		}
	}
	_, _ = s.finish(ctx, c, decDeny, "no such tool", nil)
}

func (s *Server) deny(ctx context.Context, c *call, reason string) (*mcp.CallToolResult, error) {
	c.refused = true
	return s.finish(ctx, c, decDeny, reason, mcp.NewToolResultError("denied: "+reason))
}

func (s *Server) fail(ctx context.Context, c *call, reason string) (*mcp.CallToolResult, error) {
	return s.finish(ctx, c, decError, reason, mcp.NewToolResultError("error: "+reason))
}

// finish writes the audit record (step 8) and returns the result. When the
// record cannot be written and audit.on_error is deny, the result is
// withheld: no access goes unrecorded.
func (s *Server) finish(ctx context.Context, c *call, decision, reason string, res *mcp.CallToolResult) (*mcp.CallToolResult, error) {
	c.rec.Decision, c.rec.Reason = decision, reason
	d := time.Since(c.start)
	c.rec.DurationMS = float64(d.Microseconds()) / 1000
	if c.refused && c.p != nil && !s.refusalAudited(ctx, c.p) {
		// Over the human's refusal budget: answered, counted in the
		// metrics and in the aggregate record, not audited one by one.
		s.endCall(ctx, c, decision, d)
		return res, nil
	}
	actx, end := s.stage(ctx, telemetry.StageAudit)
	s.flushRefusals(actx, c.p, time.Now())
	err := s.audit.Write(actx, &c.rec)
	end()
	if err != nil {
		s.setAuditErr(err)
		s.log.ErrorContext(ctx, "audit record not written", "err", err, "tool", c.rec.Tool, "decision", decision)
		if s.cfg.Audit.OnError != "allow" {
			return mcp.NewToolResultError("error: the call could not be recorded in the audit trail, so its result is withheld"), nil
		}
	} else {
		s.setAuditErr(nil)
	}
	s.endCall(ctx, c, decision, d)
	return res, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// upstreamReason is what the agent learns of a transport failure.
func upstreamReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, tools.ErrTooLarge):
		return "the response is larger than the gateway accepts"
	default:
		return "unreachable"
	}
}

// detectors is the detector set for one call: the decision's when it names
// one, else the configured set.
func (s *Server) detectors(dec policy.Decision) []string {
	if dec.Detectors != nil {
		return dec.Detectors
	}
	return s.cfg.Redaction.Detectors
}

// humanTag is the rate-limit hash tag of the human behind p: a delegation
// and every agent of one human share it (the human chooses the agent, so
// the agent cannot be what separates buckets).
func humanTag(p *authn.Principal) string { return ratelimit.Tag(humanIssuer(p), p.Subject) }

// limitsFor is the buckets of one call: per human and tool, and per human,
// agent and tool, both charged at once (a fresh agent or client of the
// same human finds the human's bucket as full as before), unless the
// decision names a key: then the one bucket of that key. The hash tag (the
// human) keeps one call's keys in one Redis Cluster slot.
func (s *Server) limitsFor(p *authn.Principal, tool string, rl *policy.RateLimit) []ratelimit.Limit {
	requests, per := s.cfg.RateLimit.Default.Requests, s.cfg.RateLimit.Default.Per.D()
	if rl != nil && rl.Requests > 0 && rl.Per > 0 {
		requests, per = rl.Requests, rl.Per
	}
	if rl != nil && rl.Key != "" {
		return []ratelimit.Limit{{Key: ratelimit.Key("policy:" + rl.Key), Requests: requests, Per: per}}
	}
	tag := humanTag(p)
	return []ratelimit.Limit{
		{Key: ratelimit.Key(tag, "tool", tool), Requests: requests, Per: per},
		{Key: ratelimit.Key(tag, "agent", p.Agent, "tool", tool), Requests: requests, Per: per},
	}
}

// utf8BOM is stripped before a body is parsed: a byte-order mark must not
// turn JSON into "not JSON".
var utf8BOM = []byte("\xef\xbb\xbf")

// render turns an upstream response into an MCP result, redacted. Any body
// that parses as JSON is redacted as JSON, whatever its declared content
// type (text/plain, text/json, application/x-json, a leading byte-order
// mark); the same redacted bytes become the text content and the
// structured content. A body that is not JSON gets the detectors only, so
// it is withheld whenever the decision has field masks or a context
// filter: masks that cannot be applied must not release data. withheld
// says why the result was withheld, for the audit reason ("" when it was
// released).
func render(red *redact.Redactor, resp *tools.Response) (res *mcp.CallToolResult, rep redact.Report, withheld string) {
	body := bytes.TrimPrefix(resp.Body, utf8BOM)
	if len(body) > 0 && !redact.IsText(resp.ContentType, body) {
		return mcp.NewToolResultError(fmt.Sprintf("error: the upstream answered with binary content (%s), which is not passed to agents", resp.ContentType)), redact.Report{}, "result withheld: binary content"
	}
	isErr := resp.Status >= 400
	prefix := ""
	if isErr {
		prefix = fmt.Sprintf("upstream returned %d %s: ", resp.Status, http.StatusText(resp.Status))
	}
	blank := len(bytes.TrimSpace(body)) == 0
	if !blank {
		out, rep, err := red.JSON(body)
		if err == nil {
			if rep.ContextEmpty {
				return mcp.NewToolResultError(redact.NoRecordInContext + ": the result belongs to a context you may not see"), rep, ""
			}
			res := &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(prefix + string(out))}, IsError: isErr}
			if !isErr {
				res.StructuredContent = structured(out)
			}
			return res, rep, ""
		}
	}
	if red.NeedsJSON() && !blank {
		// Field masks and records outside the caller's context can only
		// be removed from JSON; anything else (NDJSON, JSON followed by
		// more data, HTML, prose) is withheld rather than passed through.
		return mcp.NewToolResultError(prefix + "the result is not JSON, so the policy's redaction rules cannot be applied to it and it is withheld"), redact.Report{}, "result withheld: not JSON, so the redaction rules could not be applied"
	}
	text, rep := red.Text(string(body))
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(prefix + text)}, IsError: isErr}, rep, ""
}

// structured is the structuredContent for a JSON result: objects as they
// are, anything else wrapped as {"result": …} (MCP wants an object).
func structured(out []byte) json.RawMessage {
	for _, b := range out {
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return json.RawMessage(out)
		}
		break
	}
	wrapped := make([]byte, 0, len(out)+12)
	wrapped = append(wrapped, `{"result":`...)
	wrapped = append(wrapped, out...)
	return append(wrapped, '}')
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
