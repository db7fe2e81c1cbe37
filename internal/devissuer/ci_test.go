package devissuer

import (
	"context"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// TestCIClaimPresets: the GitHub Actions and GitLab CI presets carry the
// claims their issuers put in a job's token, survive Mint and verify.
func TestCIClaimPresets(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   map[string]string
	}{
		{"github pull request", GitHubActionsClaims(GitHubActions{Repository: "acme/crm", Actor: "alice", PullRequest: 42, HeadRef: "feat-x", RunID: 99, Audience: "https://harness.example.com"}),
			map[string]string{
				"sub": "repo:acme/crm:pull_request", "repository": "acme/crm", "repository_owner": "acme", "actor": "alice",
				"ref": "refs/pull/42/merge", "event_name": "pull_request", "head_ref": "feat-x", "base_ref": "main", "run_id": "99",
				"job_workflow_ref": "acme/crm/.github/workflows/preview.yml@refs/pull/42/merge", "aud": "https://harness.example.com",
			}},
		{"github push", GitHubActionsClaims(GitHubActions{Repository: "acme/crm"}),
			map[string]string{"sub": "repo:acme/crm:ref:refs/heads/main", "event_name": "push", "actor": "octocat", "ref": "refs/heads/main", "head_ref": ""}},
		{"gitlab merge request", GitLabCIClaims(GitLabCI{ProjectPath: "acme/platform/crm", UserLogin: "bob", Ref: "feat-y", Audience: "https://harness.example.com"}),
			map[string]string{
				"sub": "project_path:acme/platform/crm:ref_type:branch:ref:feat-y", "project_path": "acme/platform/crm",
				"namespace_path": "acme/platform", "user_login": "bob", "ref": "feat-y", "pipeline_source": "merge_request_event",
				"aud": "https://harness.example.com",
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := start(t, Options{})
			tok, err := i.Mint(tc.claims, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			p, err := oidc.NewProvider(ctx, i.URL())
			if err != nil {
				t.Fatal(err)
			}
			idt, err := p.Verifier(&oidc.Config{SkipClientIDCheck: true}).Verify(ctx, tok)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			var got map[string]any
			if err := idt.Claims(&got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				v := got[k]
				if k == "aud" {
					if s, ok := v.([]any); ok && len(s) == 1 {
						v = s[0]
					}
				}
				if v != want {
					t.Errorf("%s = %v, want %q", k, v, want)
				}
			}
			if got["iss"] != i.URL() {
				t.Errorf("iss = %v, want the issuer's", got["iss"])
			}
		})
	}
}
