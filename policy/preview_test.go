package policy

import (
	"context"
	"testing"
)

// TestInputPreview: input.preview is null outside a preview and the
// preview's record inside one; a memoized decision of one preview is never
// reused for another.
func TestInputPreview(t *testing.T) {
	e := engineFromRego(t, `package harness

decision := {"allow": true, "reason": "outside"} if input.preview == null
decision := {"allow": input.preview.owner == input.subject.name, "reason": sprintf("%s %s %d %s %s %s %s", [input.preview.name, input.preview.branch, input.preview.pull_request, input.preview.repository, input.preview.owner, input.preview.created_by, input.preview.expires_at])} if input.preview != null
`)
	ctx := context.Background()
	in := callInput([]string{"viewer"}, "GET", nil, nil)
	in.CacheKey = "k"
	d, err := e.Decide(ctx, in)
	if err != nil || !d.Allow || d.Reason != "outside" {
		t.Fatalf("production: %+v %v, want allowed as outside (preview null)", d, err)
	}
	in.Environment = "pr-42"
	in.Preview = &Preview{Name: "pr-42", Branch: "feat-x", PullRequest: 42, Repository: "acme/crm", Owner: "alice",
		CreatedBy: "ci-bot", ExpiresAt: "2026-01-02T00:00:00Z"}
	d, err = e.Decide(ctx, in)
	want := "pr-42 feat-x 42 acme/crm alice ci-bot 2026-01-02T00:00:00Z"
	if err != nil || !d.Allow || d.Reason != want {
		t.Fatalf("preview: %+v %v, want allowed with reason %q", d, err, want)
	}
	other := *in.Preview
	other.Owner = "bob"
	in.Preview = &other
	if d, err = e.Decide(ctx, in); err != nil || d.Allow {
		t.Fatalf("preview owned by bob: %+v %v, want denied (not a reused decision)", d, err)
	}
}
