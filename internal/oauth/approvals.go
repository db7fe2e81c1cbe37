package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/approvals"
)

// Approvals is what the approval pages need of the approval requests
// (*approvals.Service).
type Approvals interface {
	Get(ctx context.Context, id string) (approvals.Request, bool, error)
	Decide(ctx context.Context, id string, approve bool, by string) (approvals.Request, error)
	Open(ctx context.Context) ([]approvals.Request, error)
}

// approvalID is the shape of a request id (22 base64url characters).
var approvalID = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

func approverOf(h Human) approvals.Approver {
	return approvals.Approver{Issuer: h.Issuer, Subject: h.Subject, Email: h.Email, Roles: h.Roles}
}

// approvalRequest loads request id for the signed-in human and answers the
// error page itself when it cannot be shown to them.
func (s *Server) approvalRequest(w http.ResponseWriter, r *http.Request, h Human, id string) (approvals.Request, bool) {
	req, ok, err := s.o.Approvals.Get(r.Context(), id)
	switch {
	case err != nil:
		s.log.ErrorContext(r.Context(), "approvals: reading a request failed", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Harness cannot reach its state store.")
		return req, false
	case !ok:
		s.errorPage(w, r, http.StatusNotFound, "No such request", "This approval request does not exist or has expired. The agent has to make its call again.")
		return req, false
	case !req.MayDecide(approverOf(h)):
		s.log.WarnContext(r.Context(), "approvals: not an approver", "request", id, "subject", h.Subject)
		s.errorPage(w, r, http.StatusForbidden, "You cannot decide this request", "You are not one of its approvers (a call made by your own agent needs someone else, unless the policy lists you as approver).")
		return req, false
	}
	return req, true
}

// approvalPage serves GET /approvals/{id}.
func (s *Server) approvalPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !approvalID.MatchString(id) {
		s.errorPage(w, r, http.StatusNotFound, "No such request", "This approval request does not exist.")
		return
	}
	ss, ok := s.currentSession(r)
	if !ok {
		s.startLogin(w, r, loginState{Return: "approvals/" + id}, r.URL.Query().Get("login_hint"))
		return
	}
	req, ok := s.approvalRequest(w, r, ss.Human, id)
	if !ok {
		return
	}
	s.showApproval(w, r, ss, req, http.StatusOK)
}

func (s *Server) showApproval(w http.ResponseWriter, r *http.Request, ss *session, req approvals.Request, status int) {
	var args bytes.Buffer
	if err := json.Indent(&args, req.Arguments, "", "  "); err != nil {
		args.Reset()
		args.Write(req.Arguments)
	}
	htmlHeaders(w)
	s.render(w, r, status, "approval", map[string]any{
		"Title": "Approve " + req.Tool,
		"Human": ss.Human,
		"CSRF":  ss.CSRF,
		"Req":   req,
		"Args":  args.String(),
		"Left":  max(req.Expires.Sub(s.now()), 0).Round(time.Minute),
	})
}

// approvalDecision serves POST /approvals/{id}: approve or deny, with the
// session's CSRF token, by a listed approver.
func (s *Server) approvalDecision(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	ss, ok := s.postedForm(w, r, "Sign in again to decide this request.",
		"The decision did not come from the Harness page (CSRF check failed). Nothing was decided.")
	if !ok {
		return
	}
	if !approvalID.MatchString(id) {
		s.errorPage(w, r, http.StatusNotFound, "No such request", "This approval request does not exist.")
		return
	}
	if _, ok := s.approvalRequest(w, r, ss.Human, id); !ok {
		return
	}
	var approve bool
	switch r.PostForm.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		s.errorPage(w, r, http.StatusBadRequest, "Invalid form", "Choose Approve or Deny.")
		return
	}
	// The approver appears in audit records and answers by email, else sub.
	req, err := s.o.Approvals.Decide(ctx, id, approve, displayName(ss.Human.Email, ss.Human.Subject))
	switch {
	case errors.Is(err, approvals.ErrDecided):
		s.showApproval(w, r, ss, req, http.StatusConflict)
		return
	case errors.Is(err, approvals.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, "No such request", "This approval request has expired.")
		return
	case err != nil:
		s.log.ErrorContext(ctx, "approvals: recording a decision failed", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Not decided — try again", "Harness could not record your decision.")
		return
	}
	s.log.InfoContext(ctx, "approvals: request decided", "request", id, "status", req.Status, "by", req.By, "tool", req.Tool, "subject", req.Subject)
	s.showApproval(w, r, ss, req, http.StatusOK)
}

// approvalsInbox serves GET /approvals: what waits for the signed-in human.
func (s *Server) approvalsInbox(w http.ResponseWriter, r *http.Request) {
	ss, ok := s.currentSession(r)
	if !ok {
		s.startLogin(w, r, loginState{Return: "approvals"}, r.URL.Query().Get("login_hint"))
		return
	}
	open, err := s.o.Approvals.Open(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "approvals: listing requests failed", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again shortly", "Harness cannot reach its state store.")
		return
	}
	a := approverOf(ss.Human)
	var items []approvals.Request
	for _, req := range open {
		if req.Status == approvals.StatusPending && req.MayDecide(a) {
			items = append(items, req)
		}
	}
	htmlHeaders(w)
	s.render(w, r, http.StatusOK, "approvals", map[string]any{"Title": "Approvals", "Human": ss.Human, "CSRF": ss.CSRF, "Items": items})
}

// returnPath is where a sign-in started by a page returns to: only the
// pages that start one.
func returnPath(ret string) string {
	if ret == "approvals" {
		return "/approvals"
	}
	if id, ok := strings.CutPrefix(ret, "approvals/"); ok && approvalID.MatchString(id) {
		return "/approvals/" + id
	}
	return "/oauth/agents"
}
