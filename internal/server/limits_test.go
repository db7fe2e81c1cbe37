package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/config"
)

// TestRateLimitNotMultipliedByAgents: the human chooses the agent, so a new
// agent must not bring a new bucket. The attack: once the copilot's bucket
// was empty, an exchange with actor_token = the human's own token, or a
// freshly registered client, got a fresh one.
func TestRateLimitNotMultipliedByAgents(t *testing.T) {
	f := newFixture(t, fixtureOpts{mutate: func(c *config.Config) {
		c.RateLimit.Default = config.Rate{Requests: 2, Per: config.Duration(time.Hour)}
	}})
	args := map[string]any{"id": "c-1"}
	for i := range 2 {
		if res := callT(t, f.client(t, "bob"), "crm_get_customer", args); res.IsError {
			t.Fatalf("call %d: %s", i, text(res))
		}
	}
	for _, tok := range []string{"bob-self", "bob-fresh", "bob-deleg"} {
		res := callT(t, f.client(t, tok), "crm_get_customer", args)
		if !res.IsError || !strings.HasPrefix(text(res), "rate limited: ") {
			t.Errorf("%s got a fresh bucket: %v %s", tok, res.IsError, text(res))
		}
	}
	if f.hits.Load() != 2 {
		t.Errorf("upstream hits = %d, want 2", f.hits.Load())
	}
	// Another tool has its own bucket.
	if res := callT(t, f.client(t, "bob-fresh"), "crm_list", nil); res.IsError {
		t.Errorf("another tool limited: %s", text(res))
	}
}

// TestRateLimitKeysEscapeSeparator: sub "victim|x" with agent "copilot"
// must not use up the bucket of sub "victim" with agent "x|copilot".
func TestRateLimitKeysEscapeSeparator(t *testing.T) {
	f := newFixture(t, fixtureOpts{mutate: func(c *config.Config) {
		c.RateLimit.Default = config.Rate{Requests: 1, Per: config.Duration(time.Hour)}
	}})
	args := map[string]any{"id": "c-1"}
	attacker := f.client(t, "victim-x")
	callT(t, attacker, "crm_get_customer", args)
	if res := callT(t, attacker, "crm_get_customer", args); !res.IsError {
		t.Fatalf("the attacker's own bucket is not limited: %s", text(res))
	}
	if res := callT(t, f.client(t, "victim"), "crm_get_customer", args); res.IsError {
		t.Errorf("the victim's bucket was used up by another identity: %s", text(res))
	}
}

// TestRefusalsBoundTheAuditTrail: refused calls skip the upstream and the
// tool's rate limit, yet each wrote an audit record (the attack: 1300 in
// seconds). Beyond the per-human refusal budget they are still answered but
// recorded as one aggregate record.
func TestRefusalsBoundTheAuditTrail(t *testing.T) {
	f := newFixture(t, fixtureOpts{mutate: func(c *config.Config) {
		c.RateLimit.Refusals = config.Rate{Requests: 3, Per: config.Duration(time.Hour)}
	}})
	c := f.client(t, "alice")
	const spins = 40
	for i := range spins {
		req := mcp.CallToolRequest{}
		req.Params.Name = "junk_" + strconv.Itoa(i)
		if i%2 == 1 {
			req.Params.Name = "crm_issue_refund" // denied: support may not refund
		}
		res, err := c.CallTool(context.Background(), req)
		if err == nil && !res.IsError {
			t.Fatalf("refusal %d was not answered as one: %s", i, text(res))
		}
	}
	recs := f.audit.records()
	if len(recs) != 3 {
		t.Fatalf("%d audit records for %d refusals, want the budget of 3", len(recs), spins)
	}
	// Another human has a budget of his own.
	if res, err := f.client(t, "bob").CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "crm_nope"}}); err == nil && !res.IsError {
		t.Fatal("unknown tool answered")
	}
	if n := len(f.audit.records()); n != 4 {
		t.Fatalf("bob's refusal: %d records, want 4", n)
	}
	// alice's next recorded call first writes the aggregate of the rest.
	if res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
		t.Fatalf("allowed call: %s", text(res))
	}
	recs = f.audit.records()
	if len(recs) != 6 {
		t.Fatalf("%d records, want 6: %+v", len(recs), recs)
	}
	agg, last := recs[4], recs[5]
	if agg.Kind != audit.KindRefusals || agg.Subject != "alice" || !strings.HasPrefix(agg.Reason, "37 refused calls of alice") {
		t.Errorf("aggregate record: %+v", agg)
	}
	if last.Kind != "" || last.Decision != decAllow || last.Tool != "crm_get_customer" {
		t.Errorf("the allowed call's record: %+v", last)
	}
}
