package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
	start time.Time
	p     *authn.Principal
	rec   audit.Record
	span  trace.Span
}

// callTool is the pipeline of one tool call (steps 3–8 of ARCHITECTURE.md):
// find the tool, decide, limit, invoke with an identity assertion, redact,
// record. Every outcome, allowed or not, leaves one audit record; every
// refusal before invoke keeps the upstream untouched.
func (s *Server) callTool(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	c := &call{start: time.Now(), p: principalFrom(ctx)}
	name := req.Params.Name
	c.rec = audit.Record{
		Action:      policy.ActionCall,
		Tool:        name,
		Environment: s.cfg.Environment,
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
	if p.Delegation != nil {
		c.rec.Delegation = p.Delegation.ID
	}

	tool, up, ok := s.catalog.Lookup(name)
	if !ok { // mcp-go answers unknown names itself; see auditUnknownTool
		return s.deny(ctx, c, "no such tool")
	}
	c.rec.Upstream = up.Name
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
		return s.finish(ctx, c, ref.decision, ref.reason, mcp.NewToolResultError(ref.message))
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
			return s.finish(ctx, c, decError, "invalid arguments", mcp.NewToolResultError(err.Error()))
		}
		s.log.WarnContext(ctx, "upstream call failed", "err", err, "tool", name)
		return s.fail(ctx, c, fmt.Sprintf("upstream %s failed: %s", up.Name, upstreamReason(err)))
	}
	c.rec.Status = resp.Status

	// 7 redact.
	_, end = s.stage(ctx, telemetry.StageRedact)
	result, rep := render(red, resp)
	end()
	c.rec.Redactions = rep.Total()
	if len(rep.Counts) > 0 {
		c.rec.RedactionKinds = rep.Counts
	}
	reason := orDefault(dec.Reason, "allowed by policy")
	if resp.Status >= 400 {
		return s.finish(ctx, c, decAllow, fmt.Sprintf("%s; upstream answered %d", reason, resp.Status), result)
	}
	return s.finish(ctx, c, decAllow, reason, result)
}

// refusal ends an operation before the upstream is called.
type refusal struct {
	decision, reason, message string
}

func denied(reason string) *refusal { return &refusal{decDeny, reason, "denied: " + reason} }

func failed(reason string) *refusal { return &refusal{decError, reason, "error: " + reason} }

// gate runs the steps every operation shares before its upstream is
// called (4 decide, 5 limit, and the audit trail's health) for the policy
// input in, about the tool, resource or prompt called name. listed reports
// whether the policy lists it for the caller (a delegation's scopes
// included). It returns the allowing decision and its redactor, or why
// the operation is refused.
func (s *Server) gate(ctx context.Context, c *call, in *policy.Input, name string, listed func() bool) (policy.Decision, *redact.Redactor, *refusal) {
	p := c.p
	in.CacheKey = tokenKeyFrom(ctx) // the policy may reuse a decision for this credential
	if found := redact.Scan(in.Arguments, s.cfg.Redaction.Detectors); len(found) > 0 {
		in.Detections = found
	}
	pctx, end := s.stage(ctx, telemetry.StagePolicy)
	policyStart := time.Now()
	dec, err := s.policy.Decide(pctx, in)
	if s.tel != nil {
		s.tel.RecordPolicyEval(pctx, time.Since(policyStart))
	}
	end()
	c.rec.PolicyDecisionID, c.rec.PolicyRevision = dec.ID, dec.Revision
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
	red, err := redact.Compile(redact.Rules{Paths: dec.Redact, Context: dec.Context, Detectors: s.detectors(dec)})
	if err != nil {
		s.log.ErrorContext(ctx, "policy decision has unusable redaction rules: refused", "err", err, "name", name)
		return dec, nil, failed("the policy decision's redaction rules are invalid")
	}

	// 5 limit.
	lim := s.limitFor(p, name, dec.RateLimit)
	lctx, end := s.stage(ctx, telemetry.StageRateLimit)
	res, err := s.limiter.Allow(lctx, []ratelimit.Limit{lim})
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
		msg := fmt.Sprintf("rate limited: %d requests per %s for %s; retry after %s", lim.Requests, lim.Per, name, retry)
		return dec, nil, &refusal{decRateLimited, msg, msg}
	}

	// Refuse rather than act unrecorded when the audit trail is failing.
	if err := s.auditHealthy(); err != nil && s.cfg.Audit.OnError != "allow" {
		return dec, nil, failed("the audit trail cannot be written, so calls are refused")
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
	c.rec = audit.Record{Action: policy.ActionCall, Tool: name, Environment: s.cfg.Environment, Session: sessionFrom(ctx)}
	if c.p != nil {
		c.rec.Subject, c.rec.Issuer, c.rec.Agent = c.p.Subject, humanIssuer(c.p), c.p.Agent
		if c.p.Delegation != nil {
			c.rec.Delegation = c.p.Delegation.ID
		}
	}
	_, _ = s.finish(ctx, c, decDeny, "no such tool", nil)
}

func (s *Server) deny(ctx context.Context, c *call, reason string) (*mcp.CallToolResult, error) {
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
	actx, end := s.stage(ctx, telemetry.StageAudit)
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

// limitFor is the bucket of one call: per subject, agent and tool unless
// the decision names a key. The hash tag keeps one call's keys in one Redis
// Cluster slot.
func (s *Server) limitFor(p *authn.Principal, tool string, rl *policy.RateLimit) ratelimit.Limit {
	lim := ratelimit.Limit{Requests: s.cfg.RateLimit.Default.Requests, Per: s.cfg.RateLimit.Default.Per.D()}
	key := ""
	if rl != nil {
		if rl.Requests > 0 && rl.Per > 0 {
			lim.Requests, lim.Per = rl.Requests, rl.Per
		}
		key = rl.Key
	}
	if key == "" {
		lim.Key = ratelimit.Key(humanIssuer(p)+"|"+p.Subject+"|"+p.Agent, tool) // a delegation shares its human's bucket
	} else {
		lim.Key = ratelimit.Key("policy:" + key)
	}
	return lim
}

// render turns an upstream response into an MCP result, redacted. JSON is
// parsed once; the same redacted bytes become the text content and the
// structured content.
func render(red *redact.Redactor, resp *tools.Response) (*mcp.CallToolResult, redact.Report) {
	if len(resp.Body) > 0 && !redact.IsText(resp.ContentType, resp.Body) {
		return mcp.NewToolResultError(fmt.Sprintf("error: the upstream answered with binary content (%s), which is not passed to agents", resp.ContentType)), redact.Report{}
	}
	isErr := resp.Status >= 400
	prefix := ""
	if isErr {
		prefix = fmt.Sprintf("upstream returned %d %s: ", resp.Status, http.StatusText(resp.Status))
	}
	if isJSON(resp.ContentType) && len(resp.Body) > 0 {
		out, rep, err := red.JSON(resp.Body)
		if err == nil {
			if rep.ContextEmpty {
				return mcp.NewToolResultError(redact.NoRecordInContext + ": the result belongs to a context you may not see"), rep
			}
			res := &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(prefix + string(out))}, IsError: isErr}
			if !isErr {
				res.StructuredContent = structured(out)
			}
			return res, rep
		}
	}
	if red.HasContext() && len(resp.Body) > 0 {
		// Records outside the caller's context can only be removed from
		// JSON; anything else is withheld rather than passed through.
		return mcp.NewToolResultError(prefix + "the result is not JSON, so it cannot be confined to your context and is withheld"), redact.Report{}
	}
	text, rep := red.Text(string(resp.Body))
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(prefix + text)}, IsError: isErr}, rep
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

func isJSON(ct string) bool {
	ct = strings.ToLower(ct)
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
