package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/delegation"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/redact"
	"github.com/agentharness/harness/internal/telemetry"
	"github.com/agentharness/harness/policy"
	"github.com/agentharness/harness/tools"
)

// Federation: the tools, resources and prompts of upstream MCP servers go
// through the same pipeline as OpenAPI tools (gate in pipeline.go); only
// invoking the upstream and rendering its answer differ by kind.

// upstreamIdentity is the credential an upstream gets for p's call: the
// gateway's assertion, or for an upstream with token_exchange a token of
// the company IdP. Never the agent's own token.
func (s *Server) upstreamIdentity(ctx context.Context, p *authn.Principal, upstream, name string) (string, *refusal) {
	hdr := http.Header{}
	if err := s.attachIdentity(ctx, hdr, p, upstream); err != nil {
		var ie *identityError
		if errors.As(err, &ie) {
			s.log.WarnContext(ctx, "no identity the upstream accepts: refused", "err", err, "cause", ie.cause, "name", name)
			return "", failed(ie.msg)
		}
		s.log.ErrorContext(ctx, "cannot sign the upstream identity assertion", "err", err)
		return "", failed("the gateway could not sign the identity assertion")
	}
	return strings.TrimPrefix(hdr.Get("Authorization"), "Bearer "), nil
}

// mcpCall is what an upstream call carries for the call ctx belongs to:
// identity, and the relay of progress, log messages and the upstream's
// requests to its client (sampling, elicitation, roots) to this client.
func (s *Server) mcpCall(ctx context.Context, assertion string, meta *mcp.Meta) *tools.MCPCall {
	c := &tools.MCPCall{Assertion: assertion, Requests: clientRelay{s: s, ctx: ctx}}
	if meta != nil && meta.ProgressToken != nil {
		c.ProgressToken = meta.ProgressToken
	}
	if info := mcpserver.RequestProtocolInfoFromContext(ctx); info != nil {
		c.Legacy = !info.Modern
		if info.Modern && info.ClientCapabilities != nil {
			caps := *info.ClientCapabilities
			c.ClientCapabilities = &caps
		}
	}
	if srv := mcpserver.ServerFromContext(ctx); srv != nil {
		c.Notify = func(method string, params map[string]any) {
			if method == "notifications/progress" && c.ProgressToken == nil {
				return
			}
			if method == "notifications/message" {
				// Filtered by this session's level (logging/setLevel of a
				// 2025-11-25 session, the request's logLevel in 2026-07-28).
				_ = s.envOf(ctx).mcp.SendLogMessageToClient(ctx, logMessage(params))
				return
			}
			_ = srv.SendNotificationToClient(ctx, method, params)
		}
	}
	return c
}

// logMessage is the notifications/message of an upstream's params.
func logMessage(params map[string]any) mcp.LoggingMessageNotification {
	lvl, _ := params["level"].(string)
	logger, _ := params["logger"].(string)
	return mcp.NewLoggingMessageNotification(mcp.LoggingLevel(lvl), logger, params["data"])
}

// clientRelay passes an upstream's request to its client on to the agent
// whose call caused it (over a legacy session's stream).
type clientRelay struct {
	s   *Server
	ctx context.Context
}

func (r clientRelay) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	//lint:ignore SA1019 relaying a legacy upstream's sampling request is the point
	return r.s.envOf(r.ctx).mcp.RequestSampling(r.ctx, req)
}

func (r clientRelay) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return r.s.envOf(r.ctx).mcp.RequestElicitation(r.ctx, req)
}

func (r clientRelay) ListRoots(_ context.Context, req mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	return r.s.envOf(r.ctx).mcp.RequestRoots(r.ctx, req)
}

// invokeMCPTool is steps 6–7 for a tool of an upstream MCP server: call it
// with the caller's identity, redact what it answers, record.
func (s *Server) invokeMCPTool(ctx context.Context, c *call, req mcp.CallToolRequest, tool *tools.Tool, up *tools.Upstream,
	args map[string]any, dec policy.Decision, red *redact.Redactor) (*mcp.CallToolResult, error) {
	assertion, ref := s.upstreamIdentity(ctx, c.p, up.Name, tool.Name)
	if ref != nil {
		return s.finish(ctx, c, ref.decision, ref.reason, mcp.NewToolResultError(ref.message))
	}
	mc := s.mcpCall(ctx, assertion, req.Params.Meta)
	// The retry of an upstream's input_required result: the requestState
	// must be the one the gateway sealed for this principal and call.
	e := s.envOf(ctx)
	retry, err := s.mrtr.upstreamRetry(c.p, e.qualify(tool.Name), args, req.Params.MultiRoundTripParams)
	if err != nil {
		s.log.WarnContext(ctx, "retry with a requestState the gateway did not issue: refused", "tool", tool.Name)
		_, _ = s.finish(ctx, c, decDeny, errBadState.Error(), nil)
		return nil, mcpserver.NewHandlerError(rpcErr{code: mcp.INVALID_PARAMS, msg: "invalid params: " + errBadState.Error()})
	}
	mc.Retry = retry
	uctx, end := s.stage(ctx, telemetry.StageUpstream)
	res, err := e.catalog.CallMCP(uctx, tool, args, mc)
	end()
	if err != nil {
		s.log.WarnContext(ctx, "upstream call failed", "err", err, "tool", tool.Name)
		if mc.Retry != nil && errors.Is(err, mcp.ErrInvalidParams) {
			// The upstream refused the agent's answers: a protocol error
			// the agent must see as one.
			_, _ = s.fail(ctx, c, fmt.Sprintf("upstream %s refused the input responses", up.Name))
			return nil, mcpserver.NewHandlerError(rpcErr{code: mcp.INVALID_PARAMS, msg: "invalid params: the upstream refused the input responses"})
		}
		if mcp.IsMissingRequiredClientCapability(err) {
			// The agent did not declare what the tool needs: it learns so
			// as the upstream said it (-32021), not as a tool failure.
			_, _ = s.fail(ctx, c, fmt.Sprintf("upstream %s refused: the client lacks a capability the tool requires", up.Name))
			return nil, mcpserver.NewHandlerError(missingCapability{undeclared(ctx)})
		}
		return s.fail(ctx, c, fmt.Sprintf("upstream %s failed: %s", up.Name, mcpUpstreamReason(err)))
	}
	if res.ResultType == mcp.ResultTypeInputRequired {
		// Relayed to the agent, whose retry is a new call; the upstream's
		// requestState sealed to this principal and call.
		out := &mcp.CallToolResult{Content: []mcp.Content{}}
		out.ResultType = mcp.ResultTypeInputRequired
		out.InputRequests = res.InputRequests
		out.RequestState = s.mrtr.seal(c.p, e.qualify(tool.Name), args, res.RequestState)
		return s.finish(ctx, c, decAllow, orDefault(dec.Reason, "allowed by policy")+"; the upstream asks the agent for input", out)
	}
	_, end = s.stage(ctx, telemetry.StageRedact)
	out, rep := renderMCP(red, res)
	end()
	c.rec.Redactions = rep.Total()
	if len(rep.Counts) > 0 {
		c.rec.RedactionKinds = rep.Counts
	}
	reason := orDefault(dec.Reason, "allowed by policy")
	if res.IsError {
		reason += "; the upstream tool answered with an error"
	}
	return s.finish(ctx, c, decAllow, reason, out)
}

// missingCapability relays an upstream's -32021 to the agent. mcp-go's
// client keeps no error data, so requiredCapabilities names every
// capability an upstream may ask of its client (sampling, elicitation,
// roots) that this request did not declare.
type missingCapability struct{ required map[string]any }

func (e missingCapability) Error() string { return "missing required client capability" }

func (e missingCapability) JSONRPCError() mcp.JSONRPCError {
	return mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, Error: mcp.JSONRPCErrorDetails{
		Code: mcp.MISSING_REQUIRED_CLIENT_CAPABILITY, Message: "missing required client capability: the upstream tool needs a capability this request did not declare",
		Data: map[string]any{"requiredCapabilities": e.required},
	}}
}

// undeclared is the client capabilities an upstream may need that the
// request of ctx did not declare.
func undeclared(ctx context.Context) map[string]any {
	var caps mcp.ClientCapabilities
	if info := mcpserver.RequestProtocolInfoFromContext(ctx); info != nil && info.ClientCapabilities != nil {
		caps = *info.ClientCapabilities
	}
	out := map[string]any{}
	if caps.Sampling == nil {
		out["sampling"] = map[string]any{}
	}
	if caps.Elicitation == nil {
		out["elicitation"] = map[string]any{}
	}
	if caps.Roots == nil {
		out["roots"] = map[string]any{}
	}
	return out
}

// mcpUpstreamReason is what the agent learns of a failed upstream call.
func mcpUpstreamReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, tools.ErrTooLarge):
		return "the response is larger than the gateway accepts"
	}
	if strings.Contains(err.Error(), "not connected") || strings.Contains(err.Error(), "connection lost") {
		return "unreachable"
	}
	return "it answered with an error"
}

// redactor is the part of *redact.Redactor rendering uses.
type redactor interface {
	JSON([]byte) ([]byte, redact.Report, error)
	Text(string) (string, redact.Report)
	HasContext() bool
}

// reports sums redaction reports.
type reports struct{ redact.Report }

func (r *reports) add(o redact.Report) {
	if len(o.Counts) > 0 && r.Counts == nil {
		r.Counts = map[string]int{}
	}
	for k, v := range o.Counts {
		r.Counts[k] += v
	}
	r.ContextEmpty = r.ContextEmpty || o.ContextEmpty
}

// redactText redacts one text: as JSON when it is JSON, else by the
// detectors. Text outside the caller's context cannot be confined unless
// it is JSON: withheld (ok false) when the decision names a context.
func redactText(red redactor, text string, rep *reports) (string, bool) {
	if t := strings.TrimSpace(text); t != "" && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(t)) {
		out, r, err := red.JSON([]byte(t))
		if err == nil {
			rep.add(r)
			return string(out), !r.ContextEmpty
		}
	}
	if red.HasContext() && text != "" {
		return "", false
	}
	out, r := red.Text(text)
	rep.add(r)
	return out, true
}

// redactResourceContents redacts the text of embedded or read resource
// contents; blobs pass as they are.
func redactResourceContents(red redactor, rc mcp.ResourceContents, rep *reports) (mcp.ResourceContents, bool) {
	if t, ok := rc.(mcp.TextResourceContents); ok {
		text, ok := redactText(red, t.Text, rep)
		t.Text = text
		return t, ok
	}
	return rc, true
}

// renderMCP redacts an upstream tool result, keeping every content type:
// text and embedded text resources are redacted (as JSON when they are
// JSON), structuredContent as JSON; images, audio, blobs and resource
// links pass. A result that cannot be confined to the caller's context is
// withheld.
func renderMCP(red redactor, res *mcp.CallToolResult) (*mcp.CallToolResult, redact.Report) {
	var rep reports
	withheld := func() (*mcp.CallToolResult, redact.Report) {
		return mcp.NewToolResultError(redact.NoRecordInContext + ": the result belongs to a context you may not see, or cannot be confined to yours, and is withheld"), rep.Report
	}
	out := &mcp.CallToolResult{IsError: res.IsError}
	for _, ct := range res.Content {
		switch v := ct.(type) {
		case mcp.TextContent:
			text, ok := redactText(red, v.Text, &rep)
			if !ok {
				return withheld()
			}
			v.Text = text
			out.Content = append(out.Content, v)
		case mcp.EmbeddedResource:
			rc, ok := redactResourceContents(red, v.Resource, &rep)
			if !ok {
				return withheld()
			}
			v.Resource = rc
			out.Content = append(out.Content, v)
		default: // image, audio, resource_link
			out.Content = append(out.Content, ct)
		}
	}
	if res.StructuredContent != nil {
		b, err := json.Marshal(res.StructuredContent)
		if err != nil {
			return withheld()
		}
		red2, r, err := red.JSON(b)
		if err != nil || r.ContextEmpty {
			return withheld()
		}
		rep.add(r)
		out.StructuredContent = json.RawMessage(red2)
	}
	if out.Content == nil {
		out.Content = []mcp.Content{}
	}
	return out, rep.Report
}

// op starts the audit record and span of a resource read or prompt get.
func (s *Server) op(ctx context.Context, action, name, upstream string) (context.Context, *call) {
	c := &call{start: time.Now(), p: principalFrom(ctx)}
	c.rec = audit.Record{Action: action, Tool: name, Upstream: upstream, Environment: s.envOf(ctx).label, Session: sessionFrom(ctx)}
	if info := mcpserver.RequestProtocolInfoFromContext(ctx); info != nil {
		c.rec.Protocol = info.ProtocolVersion
	}
	ctx = s.startCall(ctx, c)
	if p := c.p; p != nil {
		c.rec.Subject, c.rec.Issuer, c.rec.Agent = p.Subject, humanIssuer(p), p.Agent
		if p.Delegation != nil {
			c.rec.Delegation = p.Delegation.ID
		}
	}
	return ctx, c
}

// opError ends a refused or failed resource read or prompt get: audited,
// and answered with a JSON-RPC error.
func (s *Server) opError(ctx context.Context, c *call, ref *refusal) error {
	_, _ = s.finish(ctx, c, ref.decision, ref.reason, nil)
	return errors.New(ref.message)
}

// policyResource describes what serves uri to the policy.
func policyResource(uri string, r *tools.Resource, t *tools.ResourceTemplate) *policy.Resource {
	if r != nil {
		return &policy.Resource{URI: uri, Upstream: r.Upstream, Name: r.Name, MimeType: r.MIMEType}
	}
	return &policy.Resource{URI: uri, Upstream: t.Upstream, Name: t.Name, MimeType: t.MIMEType}
}

// readResource is the pipeline of resources/read: the URI is routed to the
// upstream that listed it (or a matching template), decided (action read),
// limited, read with the caller's identity, redacted and audited.
func (s *Server) readResource(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	uri := req.Params.URI
	e := s.envOf(ctx)
	r, t, ok := e.catalog.LookupResource(uri)
	upstream := ""
	if ok {
		upstream = policyResource(uri, r, t).Upstream
	}
	ctx, c := s.op(ctx, policy.ActionRead, uri, upstream)
	if c.p == nil {
		return nil, s.opError(ctx, c, denied("no authenticated principal"))
	}
	if !ok {
		return nil, s.opError(ctx, c, denied("no such resource"))
	}
	in := s.input(ctx, c.p, policy.ActionRead)
	in.Resource = policyResource(uri, r, t)
	listed := func() bool { return s.resourceAllowed(ctx, c.p, in.Resource) }
	dec, red, ref := s.gate(ctx, c, in, uri, listed)
	if ref != nil {
		return nil, s.opError(ctx, c, ref)
	}
	assertion, ref := s.upstreamIdentity(ctx, c.p, upstream, uri)
	if ref != nil {
		return nil, s.opError(ctx, c, ref)
	}
	uctx, end := s.stage(ctx, telemetry.StageUpstream)
	res, err := e.catalog.ReadResource(uctx, upstream, uri, s.mcpCall(ctx, assertion, req.Params.Meta))
	end()
	if err != nil {
		s.log.WarnContext(ctx, "upstream read failed", "err", err, "uri", uri)
		return nil, s.opError(ctx, c, failed(fmt.Sprintf("upstream %s failed: %s", upstream, mcpUpstreamReason(err))))
	}
	var rep reports
	out := make([]mcp.ResourceContents, 0, len(res.Contents))
	for _, rc := range res.Contents {
		rc, ok := redactResourceContents(red, rc, &rep)
		if !ok {
			return nil, s.opError(ctx, c, denied(redact.NoRecordInContext+": the resource belongs to a context you may not see"))
		}
		out = append(out, rc)
	}
	c.rec.Redactions = rep.Total()
	if len(rep.Counts) > 0 {
		c.rec.RedactionKinds = rep.Counts
	}
	_, _ = s.finish(ctx, c, decAllow, orDefault(dec.Reason, "allowed by policy"), nil)
	return out, nil
}

// getPrompt is the pipeline of prompts/get (action prompt).
func (s *Server) getPrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	name := req.Params.Name
	e := s.envOf(ctx)
	pr, ok := e.catalog.LookupPrompt(name)
	upstream := ""
	if ok {
		upstream = pr.Upstream
	}
	ctx, c := s.op(ctx, policy.ActionPrompt, name, upstream)
	if c.p == nil {
		return nil, s.opError(ctx, c, denied("no authenticated principal"))
	}
	if !ok {
		return nil, s.opError(ctx, c, denied("no such prompt"))
	}
	in := s.input(ctx, c.p, policy.ActionPrompt)
	in.Prompt = &policy.Prompt{Name: pr.Name, Upstream: pr.Upstream, Operation: pr.Operation}
	args := map[string]any{}
	for k, v := range req.Params.Arguments {
		args[k] = v
	}
	in.Arguments = args
	listed := func() bool { return s.promptAllowed(ctx, c.p, pr) }
	dec, red, ref := s.gate(ctx, c, in, name, listed)
	if ref != nil {
		return nil, s.opError(ctx, c, ref)
	}
	assertion, ref := s.upstreamIdentity(ctx, c.p, upstream, name)
	if ref != nil {
		return nil, s.opError(ctx, c, ref)
	}
	mc := s.mcpCall(ctx, assertion, req.Params.Meta)
	retry, err := s.mrtr.upstreamRetry(c.p, e.qualify("prompt:"+name), args, req.Params.MultiRoundTripParams)
	if err != nil { // not sealed for this principal, prompt and arguments
		s.log.WarnContext(ctx, "retry with a requestState the gateway did not issue: refused", "prompt", name)
		_, _ = s.finish(ctx, c, decDeny, errBadState.Error(), nil)
		return nil, mcpserver.NewHandlerError(rpcErr{code: mcp.INVALID_PARAMS, msg: "invalid params: " + errBadState.Error()})
	}
	mc.Retry = retry
	uctx, end := s.stage(ctx, telemetry.StageUpstream)
	res, err := e.catalog.GetPrompt(uctx, pr, req.Params.Arguments, mc)
	end()
	if err != nil {
		s.log.WarnContext(ctx, "upstream prompt failed", "err", err, "prompt", name)
		if mc.Retry != nil && errors.Is(err, mcp.ErrInvalidParams) {
			_, _ = s.finish(ctx, c, decError, fmt.Sprintf("upstream %s refused the input responses", upstream), nil)
			return nil, mcpserver.NewHandlerError(rpcErr{code: mcp.INVALID_PARAMS, msg: "invalid params: the upstream refused the input responses"})
		}
		return nil, s.opError(ctx, c, failed(fmt.Sprintf("upstream %s failed: %s", upstream, mcpUpstreamReason(err))))
	}
	if res.ResultType == mcp.ResultTypeInputRequired {
		out := &mcp.GetPromptResult{Messages: []mcp.PromptMessage{}}
		out.ResultType = mcp.ResultTypeInputRequired
		out.InputRequests = res.InputRequests
		out.RequestState = s.mrtr.seal(c.p, e.qualify("prompt:"+name), args, res.RequestState)
		_, _ = s.finish(ctx, c, decAllow, orDefault(dec.Reason, "allowed by policy")+"; the upstream asks the agent for input", nil)
		return out, nil
	}
	var rep reports
	out := &mcp.GetPromptResult{Description: res.Description, Messages: make([]mcp.PromptMessage, 0, len(res.Messages))}
	for _, m := range res.Messages {
		switch v := m.Content.(type) {
		case mcp.TextContent:
			text, ok := redactText(red, v.Text, &rep)
			if !ok {
				return nil, s.opError(ctx, c, denied(redact.NoRecordInContext+": the prompt belongs to a context you may not see"))
			}
			v.Text = text
			m.Content = v
		case mcp.EmbeddedResource:
			rc, ok := redactResourceContents(red, v.Resource, &rep)
			if !ok {
				return nil, s.opError(ctx, c, denied(redact.NoRecordInContext+": the prompt belongs to a context you may not see"))
			}
			v.Resource = rc
			m.Content = v
		}
		out.Messages = append(out.Messages, m)
	}
	c.rec.Redactions = rep.Total()
	if len(rep.Counts) > 0 {
		c.rec.RedactionKinds = rep.Counts
	}
	_, _ = s.finish(ctx, c, decAllow, orDefault(dec.Reason, "allowed by policy"), nil)
	return out, nil
}

// listDecision asks the policy whether p may see one resource or prompt
// (action list); a failure shows nothing.
func (s *Server) listDecision(ctx context.Context, p *authn.Principal, in *policy.Input) bool {
	in.CacheKey = tokenKeyFrom(ctx)
	dec, err := s.envOf(ctx).policy.Decide(ctx, in)
	if err != nil {
		s.log.ErrorContext(ctx, "policy failed to filter a list: hiding", "err", err)
		return false
	}
	return dec.Allow
}

func (s *Server) resourceAllowed(ctx context.Context, p *authn.Principal, r *policy.Resource) bool {
	if d := p.Delegation; d != nil && !delegation.ScopeAllows(d.Scopes, r.Upstream+"_") {
		return false
	}
	in := s.input(ctx, p, policy.ActionList)
	in.Resource = r
	return s.listDecision(ctx, p, in)
}

func (s *Server) promptAllowed(ctx context.Context, p *authn.Principal, pr *tools.Prompt) bool {
	if d := p.Delegation; d != nil && !delegation.ScopeAllows(d.Scopes, pr.Name) {
		return false
	}
	in := s.input(ctx, p, policy.ActionList)
	in.Prompt = &policy.Prompt{Name: pr.Name, Upstream: pr.Upstream, Operation: pr.Operation}
	return s.listDecision(ctx, p, in)
}

// filterResources hides every resource the policy does not list.
func (s *Server) filterResources(ctx context.Context, _ any, _ *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
	if res == nil {
		return
	}
	p := principalFrom(ctx)
	kept := res.Resources[:0]
	if p == nil { // cannot happen behind authenticate; show nothing
		res.Resources = kept
		return
	}
	for _, r := range res.Resources {
		if rr, _, ok := s.envOf(ctx).catalog.LookupResource(r.URI); ok && rr != nil && s.resourceAllowed(ctx, p, policyResource(r.URI, rr, nil)) {
			kept = append(kept, r)
		}
	}
	res.Resources = kept
}

// filterTemplates hides every resource template the policy does not list.
func (s *Server) filterTemplates(ctx context.Context, _ any, _ *mcp.ListResourceTemplatesRequest, res *mcp.ListResourceTemplatesResult) {
	if res == nil {
		return
	}
	p := principalFrom(ctx)
	byRaw := map[string]*tools.ResourceTemplate{}
	for _, t := range s.envOf(ctx).catalog.ResourceTemplates() {
		byRaw[t.URITemplate.Raw()] = t
	}
	kept := res.ResourceTemplates[:0]
	if p == nil {
		res.ResourceTemplates = kept
		return
	}
	for _, rt := range res.ResourceTemplates {
		if rt.URITemplate == nil {
			continue
		}
		t := byRaw[rt.URITemplate.Raw()]
		if t != nil && s.resourceAllowed(ctx, p, policyResource(rt.URITemplate.Raw(), nil, t)) {
			kept = append(kept, rt)
		}
	}
	res.ResourceTemplates = kept
}

// filterPrompts hides every prompt the policy does not list.
func (s *Server) filterPrompts(ctx context.Context, _ any, _ *mcp.ListPromptsRequest, res *mcp.ListPromptsResult) {
	if res == nil {
		return
	}
	p := principalFrom(ctx)
	kept := res.Prompts[:0]
	if p == nil {
		res.Prompts = kept
		return
	}
	for _, pr := range res.Prompts {
		if tp, ok := s.envOf(ctx).catalog.LookupPrompt(pr.Name); ok && s.promptAllowed(ctx, p, tp) {
			kept = append(kept, pr)
		}
	}
	res.Prompts = kept
}

// syncFederated registers the catalogue's resources, templates and
// prompts with mcp-go (which tells sessions their lists changed).
func (s *Server) syncFederated(e *env) {
	var rs []mcpserver.ServerResource
	for _, r := range e.catalog.Resources() {
		rs = append(rs, mcpserver.ServerResource{Resource: r.Resource, Handler: cancellable(s.readResource)})
	}
	var ts []mcpserver.ServerResourceTemplate
	for _, t := range e.catalog.ResourceTemplates() {
		ts = append(ts, mcpserver.ServerResourceTemplate{Template: t.ResourceTemplate, Handler: cancellable(s.readResource)})
	}
	var ps []mcpserver.ServerPrompt
	for _, p := range e.catalog.Prompts() {
		ps = append(ps, mcpserver.ServerPrompt{Prompt: p.Prompt, Handler: cancellable(s.getPrompt)})
	}
	e.mcp.SetResources(rs...)
	e.mcp.SetResourceTemplates(ts...)
	e.mcp.SetPrompts(ps...)
}

// CompletePromptArgument relays completion/complete for a prompt the
// caller may get to its upstream (under the server's own name).
func (s *Server) CompletePromptArgument(ctx context.Context, name string, arg mcp.CompleteArgument, cc mcp.CompleteContext) (*mcp.Completion, error) {
	ctx, stop := cancelScope(ctx)
	defer stop()
	p := principalFrom(ctx)
	e := s.envOf(ctx)
	pr, ok := e.catalog.LookupPrompt(name)
	if p == nil || !ok || !s.promptAllowed(ctx, p, pr) {
		return &mcp.Completion{Values: []string{}}, nil
	}
	params := mcp.CompleteParams{Ref: mcp.PromptReference{Type: "ref/prompt", Name: pr.Operation}, Argument: arg, Context: cc}
	res, err := e.catalog.Complete(ctx, pr.Upstream, params, nil)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: completion failed", pr.Upstream)
	}
	return &res.Completion, nil
}

// CompleteResourceArgument relays completion/complete for a resource
// template the caller may read.
func (s *Server) CompleteResourceArgument(ctx context.Context, uri string, arg mcp.CompleteArgument, cc mcp.CompleteContext) (*mcp.Completion, error) {
	ctx, stop := cancelScope(ctx)
	defer stop()
	p := principalFrom(ctx)
	e := s.envOf(ctx)
	for _, t := range e.catalog.ResourceTemplates() {
		if t.URITemplate.Raw() != uri || p == nil || !s.resourceAllowed(ctx, p, policyResource(uri, nil, t)) {
			continue
		}
		params := mcp.CompleteParams{Ref: mcp.ResourceReference{Type: "ref/resource", URI: uri}, Argument: arg, Context: cc}
		res, err := e.catalog.Complete(ctx, t.Upstream, params, nil)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: completion failed", t.Upstream)
		}
		return &res.Completion, nil
	}
	return &mcp.Completion{Values: []string{}}, nil
}
