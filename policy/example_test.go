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
