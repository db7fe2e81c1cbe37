package devissuer

import (
	"fmt"
	"strconv"
	"strings"
)

// GitHubActions describes a GitHub Actions job whose OIDC token
// GitHubActionsClaims imitates (the claim set of
// token.actions.githubusercontent.com). Zero fields take the defaults noted.
type GitHubActions struct {
	Repository  string // "acme/crm" (required); repository_owner is its first part
	Actor       string // who triggered the run; default "octocat"
	PullRequest int    // > 0: a pull_request event on refs/pull/N/merge
	HeadRef     string // the pull request's branch (head_ref); default "feature"
	BaseRef     string // its target (base_ref); default "main"
	Ref         string // default refs/pull/N/merge, or refs/heads/BaseRef without a pull request
	EventName   string // default "pull_request" with a pull request, else "push"
	Workflow    string // the workflow file; default ".github/workflows/preview.yml"
	SHA         string // default forty "a"s
	RunID       int    // default 1
	Audience    string // "aud"; default none (the issuer's Options.Audience, if any)
}

// GitHubActionsClaims returns the claims GitHub Actions puts in a job's OIDC
// token for j: sub "repo:OWNER/REPO:pull_request" (or ":ref:REF"),
// repository, repository_owner, ref, actor, event_name, workflow_ref,
// job_workflow_ref, run_id, sha, head_ref, base_ref and the rest of
// GitHub's set. Mint fills iss, iat, nbf, exp and jti.
func GitHubActionsClaims(j GitHubActions) map[string]any {
	owner, _, _ := strings.Cut(j.Repository, "/")
	actor := or(j.Actor, "octocat")
	base := or(j.BaseRef, "main")
	event, ref, sub := or(j.EventName, "push"), j.Ref, ""
	headRef, baseRef := "", ""
	if j.PullRequest > 0 {
		event = or(j.EventName, "pull_request")
		ref = or(ref, fmt.Sprintf("refs/pull/%d/merge", j.PullRequest))
		headRef, baseRef = or(j.HeadRef, "feature"), base
	}
	ref = or(ref, "refs/heads/"+base)
	if event == "pull_request" {
		sub = "repo:" + j.Repository + ":pull_request"
	} else {
		sub = "repo:" + j.Repository + ":ref:" + ref
	}
	workflow := or(j.Workflow, ".github/workflows/preview.yml")
	sha := or(j.SHA, strings.Repeat("a", 40))
	runID := j.RunID
	if runID == 0 {
		runID = 1
	}
	c := map[string]any{
		"sub":                   sub,
		"repository":            j.Repository,
		"repository_owner":      owner,
		"repository_id":         "1000001",
		"repository_owner_id":   "2000002",
		"repository_visibility": "private",
		"actor":                 actor,
		"actor_id":              "3000003",
		"ref":                   ref,
		"ref_type":              "branch",
		"ref_protected":         "false",
		"head_ref":              headRef,
		"base_ref":              baseRef,
		"event_name":            event,
		"sha":                   sha,
		"workflow":              "preview",
		"workflow_ref":          j.Repository + "/" + workflow + "@" + ref,
		"workflow_sha":          sha,
		"job_workflow_ref":      j.Repository + "/" + workflow + "@" + ref,
		"job_workflow_sha":      sha,
		"run_id":                strconv.Itoa(runID),
		"run_number":            "1",
		"run_attempt":           "1",
		"runner_environment":    "github-hosted",
	}
	if j.Audience != "" {
		c["aud"] = j.Audience
	}
	return c
}

// GitLabCI describes a GitLab CI job whose ID token (`id_tokens:`)
// GitLabCIClaims imitates. Zero fields take the defaults noted.
type GitLabCI struct {
	ProjectPath    string // "acme/crm" (required); namespace_path is all before the last "/"
	UserLogin      string // who started the pipeline; default "gitlab-user"
	Ref            string // the branch; default "feature"
	PipelineSource string // default "merge_request_event"
	SHA            string // default forty "b"s
	PipelineID     int    // default 1
	Audience       string // "aud"; default none
}

// GitLabCIClaims returns the claims of a GitLab CI ID token for j: sub
// "project_path:P:ref_type:branch:ref:R", project_path, namespace_path,
// ref, ref_type, user_login, pipeline_source, pipeline_id, sha and the
// rest of GitLab's set. Mint fills iss, iat, nbf, exp and jti.
func GitLabCIClaims(j GitLabCI) map[string]any {
	ns := j.ProjectPath
	if i := strings.LastIndex(ns, "/"); i >= 0 {
		ns = ns[:i]
	}
	ref := or(j.Ref, "feature")
	pid := j.PipelineID
	if pid == 0 {
		pid = 1
	}
	c := map[string]any{
		"sub":                   "project_path:" + j.ProjectPath + ":ref_type:branch:ref:" + ref,
		"project_path":          j.ProjectPath,
		"project_id":            "4000004",
		"namespace_path":        ns,
		"namespace_id":          "5000005",
		"user_login":            or(j.UserLogin, "gitlab-user"),
		"user_id":               "6000006",
		"user_email":            or(j.UserLogin, "gitlab-user") + "@example.com",
		"user_access_level":     "developer",
		"ref":                   ref,
		"ref_type":              "branch",
		"ref_protected":         "false",
		"ref_path":              "refs/heads/" + ref,
		"pipeline_source":       or(j.PipelineSource, "merge_request_event"),
		"pipeline_id":           strconv.Itoa(pid),
		"job_id":                "7000007",
		"sha":                   or(j.SHA, strings.Repeat("b", 40)),
		"ci_config_ref_uri":     "gitlab.com/" + j.ProjectPath + "//.gitlab-ci.yml@refs/heads/" + ref,
		"ci_config_sha":         or(j.SHA, strings.Repeat("b", 40)),
		"runner_environment":    "gitlab-hosted",
		"project_visibility":    "private",
		"namespace_visibility":  "private",
		"deployment_tier":       "development",
		"environment_protected": "false",
	}
	if j.Audience != "" {
		c["aud"] = j.Audience
	}
	return c
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
