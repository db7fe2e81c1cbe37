package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/approvals"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/redact"
	"github.com/agentharness/harness/policy"
)

// Approvals holds calls a decision says need a human's approval
// (*approvals.Service over the shared store).
type Approvals interface {
	Check(ctx context.Context, b approvals.Binding, tmpl approvals.Request, ttl time.Duration) (approvals.Outcome, error)
}

// ApprovalNotifier tells approvers about a new request (the webhook); it
// must not block.
type ApprovalNotifier interface {
	Notify(r approvals.Request, url string)
}

// protocolURLElicitation is the revision that answers a held call with
// -32042 (URLElicitationRequired).
const protocolURLElicitation = "2025-11-25"

// approvalGate runs after a tool call was allowed and limited: when the
// decision asks for approval, the call runs only as the exact call an
// approver approved, once. It returns nil when the call may run (c.rec
// then carries the approval it consumed), or why it does not.
func (s *Server) approvalGate(ctx context.Context, c *call, in *policy.Input, name string, dec policy.Decision, red *redact.Redactor) *refusal {
	if len(dec.Approval) == 0 || in.Action != policy.ActionCall || in.Resource != nil || in.Prompt != nil {
		return nil
	}
	ap, err := policy.ParseApproval(dec.Approval)
	if err != nil || ap == nil { // decodeDecision checked it: cannot happen
		return failed("the policy decision's approval is invalid")
	}
	if s.approvals == nil {
		return failed("the policy asks for approval, but this gateway has no approval store")
	}
	p := c.p
	digest, err := approvals.Digest(name, in.Arguments)
	if err != nil {
		return &refusal{decDeny, "arguments cannot be canonicalised for approval", "denied: the arguments cannot be bound to an approval (" + err.Error() + ")", true}
	}
	// The approver sees the arguments as the decision's redaction shows them.
	rawArgs, err := json.Marshal(in.Arguments)
	if err != nil {
		return failed("the arguments cannot be encoded")
	}
	masked, _, err := red.JSON(rawArgs)
	if err != nil {
		masked = json.RawMessage(`"(withheld: the arguments could not be masked)"`)
	}
	b := approvals.Binding{Digest: digest, Issuer: humanIssuer(p), Subject: p.Subject, Agent: p.Agent, Environment: s.envOf(ctx).label}
	tmpl := approvals.Request{Email: p.Email, Name: p.Name, Tool: name, Arguments: masked, Approvers: ap.Approvers, Reason: ap.Reason}
	// A 2026-07-28 retry echoes the requestState it was given: it must be
	// the gateway's, for this very call (human, agent, arguments).
	if c.requestState != "" {
		if ref := s.checkRequestState(ctx, c.requestState, b); ref != nil {
			return ref
		}
	}
	o, err := s.approvals.Check(ctx, b, tmpl, ap.TTL)
	if err != nil {
		s.log.ErrorContext(ctx, "approval store unavailable: refused", "err", err, "tool", name)
		return failed("the approval store is unavailable, so calls that need approval are refused")
	}
	r := o.Request
	switch {
	case o.Granted:
		c.rec.Approval = &audit.Approval{ID: r.ID, By: r.By}
		return nil
	case o.Denied:
		c.rec.Approval = &audit.Approval{ID: r.ID, By: r.By}
		why := fmt.Sprintf("%s declined the approval of this call (request %s)", r.By, r.ID)
		return &refusal{decDeny, why, "denied: " + why, true}
	}
	link := s.cfg.PublicURL + "/approvals/" + r.ID
	if o.Created && s.notifier != nil {
		s.notifier.Notify(r, link)
	}
	msg := fmt.Sprintf("approval required: %s. Approve at %s, then repeat the call.", r.Reason, link)
	ref := &refusal{decision: audit.DecisionApprovalRequired, reason: fmt.Sprintf("%s (approval %s)", r.Reason, r.ID), message: msg}
	el := mcp.ElicitationParams{
		Mode: mcp.ElicitationModeURL, ElicitationID: r.ID, URL: link,
		Message: fmt.Sprintf("Approval required: %s. Ask an approver to approve at the link, then repeat the call.", r.Reason),
	}
	if modernURLElicitation(ctx) {
		// 2026-07-28: an input_required result with one URL elicitation;
		// the client retries with inputResponses and the requestState.
		c.inputRequired = mcpserver.NewInputRequestBuilder(r.RequestState(b)).Elicit("approval", el).ToolResult()
		return ref
	}
	if wantsURLElicitation(ctx) {
		c.answer = mcp.URLElicitationRequiredError{Elicitations: []mcp.ElicitationParams{el}}
		s.watchElicitation(s.envOf(ctx), r.ID, sessionIDOf(ctx))
	}
	return ref
}

// wantsURLElicitation reports whether the request comes from a 2025-11-25
// session whose client declared elicitation.url.
func wantsURLElicitation(ctx context.Context) bool {
	if mcpserver.RequestProtocolVersion(ctx) != protocolURLElicitation {
		return false
	}
	cs, ok := mcpserver.ClientSessionFromContext(ctx).(mcpserver.SessionWithClientInfo)
	if !ok {
		return false
	}
	caps := cs.GetClientCapabilities()
	return caps.Elicitation != nil && caps.Elicitation.URL != nil
}

// modernURLElicitation reports whether the request is a 2026-07-28 one
// whose per-request client capabilities include elicitation.url.
func modernURLElicitation(ctx context.Context) bool {
	info := mcpserver.RequestProtocolInfoFromContext(ctx)
	if info == nil || !info.Modern || info.ClientCapabilities == nil {
		return false
	}
	e := info.ClientCapabilities.Elicitation
	return e != nil && e.URL != nil
}

// checkRequestState refuses a retry whose requestState names one of the
// gateway's approval requests but was not issued for this call. A state
// naming no live request (consumed, expired, or not the gateway's) is
// ignored: the approval store alone decides whether the call runs.
func (s *Server) checkRequestState(ctx context.Context, state string, b approvals.Binding) *refusal {
	lookup, ok := s.approvals.(ApprovalLookup)
	if !ok {
		return nil
	}
	// A state that names no request of ours may be a federated MCP
	// upstream's own multi round-trip state: it decides nothing here.
	id := approvals.StateID(state)
	if id == "" {
		return nil
	}
	r, found, err := lookup.Get(ctx, id)
	if err != nil {
		s.log.ErrorContext(ctx, "approval store unavailable: refused", "err", err)
		return failed("the approval store is unavailable, so calls that need approval are refused")
	}
	if found && !r.VerifyState(state, b) {
		return &refusal{decDeny, "requestState of another call (approval " + id + ")", "denied: the requestState belongs to another call; repeat the original call unchanged", true}
	}
	return nil
}
