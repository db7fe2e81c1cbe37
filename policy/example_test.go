package policy_test

import (
	"context"
	"fmt"

	"github.com/agentharness/harness/policy"
)

// The embedded default policy grants roles tools by tag and method.
func ExampleEngine_Decide() {
	ctx := context.Background()
	e, err := policy.New(ctx, policy.Options{}) // the embedded default policy
	if err != nil {
		panic(err)
	}
	in := &policy.Input{
		Action:  policy.ActionCall,
		Subject: policy.Subject{Sub: "u-1", Name: "alice", Roles: []string{"support"}},
		Tool:    policy.Tool{Name: "crm_create_refund", Method: "POST", Tags: []string{"refunds"}},
	}
	d, err := e.Decide(ctx, in)
	fmt.Println(d.Allow, d.Reason, err)

	in.Tool = policy.Tool{Name: "crm_get_customer", Method: "GET", Tags: []string{"customers"}}
	d, err = e.Decide(ctx, in)
	fmt.Println(d.Allow, d.Reason, d.Redact, err)
	// Output:
	// false no role of alice grants write on refunds <nil>
	// true support may read customers [card_number] <nil>
}

// Allowed filters a whole tools/list in one evaluation.
func ExampleEngine_Allowed() {
	ctx := context.Background()
	e, err := policy.New(ctx, policy.Options{})
	if err != nil {
		panic(err)
	}
	in := &policy.Input{Subject: policy.Subject{Sub: "u-2", Roles: []string{"viewer"}}}
	allowed, err := e.Allowed(ctx, in, []policy.Tool{
		{Name: "crm_list_orders", Method: "GET", Tags: []string{"orders"}},
		{Name: "crm_create_ticket", Method: "POST", Tags: []string{"tickets"}},
	})
	fmt.Println(allowed["crm_list_orders"], allowed["crm_create_ticket"], err)
	// Output: true false <nil>
}

// Replay decides recorded inputs again (at their recorded time, without
// decision reuse) and Changes compares outcomes.
func ExampleEngine_Replay() {
	ctx := context.Background()
	e, err := policy.New(ctx, policy.Options{})
	if err != nil {
		panic(err)
	}
	in, err := policy.ParseInput([]byte(`{"action": "call", "time": "2026-11-02T09:00:00Z",
		"subject": {"sub": "u-1", "roles": ["support"]}, "delegation": null,
		"tool": {"name": "crm_update_ticket", "method": "POST", "tags": ["tickets"]}}`))
	if err != nil {
		panic(err)
	}
	recorded := policy.Outcome{Allow: false}
	for _, r := range e.Replay(ctx, []*policy.Input{in}) {
		fmt.Println(r.Outcome.Allow, r.Outcome.RateLimit.Requests, recorded.Changes(r.Outcome), r.Err)
	}
	// Output:
	// true 10 [allow] <nil>
}
