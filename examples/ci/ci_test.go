// Package ci holds only tests: they check that the example CI files parse
// and still do what docs/previews.md says they do.
package ci

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func load(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type ghStep struct {
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

type ghJob struct {
	If    string   `yaml:"if"`
	Steps []ghStep `yaml:"steps"`
}

// TestGitHubActionsPreview: on pull requests the workflow asks for an OIDC
// token with the gateway's audience, tests the policy, creates the preview
// and comments its MCP URL; on close it retires it.
func TestGitHubActionsPreview(t *testing.T) {
	var wf struct {
		On struct {
			PullRequest struct {
				Types []string `yaml:"types"`
			} `yaml:"pull_request"`
		} `yaml:"on"`
		Permissions map[string]string `yaml:"permissions"`
		Env         map[string]string `yaml:"env"`
		Jobs        map[string]ghJob  `yaml:"jobs"`
	}
	load(t, "github-actions.yml", &wf)
	for _, typ := range []string{"opened", "synchronize", "reopened", "closed"} {
		if !contains(wf.On.PullRequest.Types, typ) {
			t.Errorf("on.pull_request.types lacks %s: %v", typ, wf.On.PullRequest.Types)
		}
	}
	if wf.Permissions["id-token"] != "write" || wf.Permissions["pull-requests"] != "write" {
		t.Errorf("permissions = %v, want id-token: write and pull-requests: write", wf.Permissions)
	}
	if wf.Env["PREVIEW"] != "pr-${{ github.event.number }}" || wf.Env["HARNESS_URL"] == "" {
		t.Errorf("env = %v", wf.Env)
	}

	preview, retire := wf.Jobs["preview"], wf.Jobs["retire"]
	if !strings.Contains(preview.If, "!= 'closed'") || !strings.Contains(retire.If, "== 'closed'") {
		t.Errorf("job conditions: preview %q, retire %q", preview.If, retire.If)
	}
	order := []string{"Deploy the preview", "gateway policy test policy/", "ACTIONS_ID_TOKEN_REQUEST_URL", "gateway env create \"$PREVIEW\"", "createComment"}
	at := stepIndex(t, preview.Steps, order)
	for i := 1; i < len(at); i++ {
		if at[i] <= at[i-1] {
			t.Errorf("%q comes before %q", order[i], order[i-1])
		}
	}
	token := preview.Steps[at[2]].Run
	if !strings.Contains(token, `audience=$HARNESS_AUDIENCE`) || !strings.Contains(token, "umask 077") {
		t.Errorf("the token step does not ask for the gateway's audience into a private file:\n%s", token)
	}
	create := preview.Steps[at[3]]
	for _, flag := range []string{"--token-file", "--branch", "--pr", "--repository", "--owner", "--upstream", "--policy-bundle", "--ttl"} {
		if !strings.Contains(create.Run, flag) {
			t.Errorf("gateway env create lacks %s", flag)
		}
	}
	// Values from the pull request go through env, never into the script.
	if strings.Contains(create.Run, "${{") {
		t.Errorf("the create step interpolates expressions into the script (injection):\n%s", create.Run)
	}
	comment := preview.Steps[at[4]]
	if !strings.HasPrefix(comment.Uses, "actions/github-script@") || !strings.Contains(comment.Env["MCP_URL"], "steps.env.outputs.mcp_url") {
		t.Errorf("comment step = %+v", comment)
	}
	r := stepIndex(t, retire.Steps, []string{"ACTIONS_ID_TOKEN_REQUEST_URL", "gateway env retire \"$PREVIEW\""})
	if !strings.Contains(retire.Steps[r[1]].Run, "--missing-ok") {
		t.Error("the retire step fails when the webhook retired the preview first (no --missing-ok)")
	}
}

// TestGitLabCIPreview: merge request pipelines get an ID token with the
// gateway's audience, create the preview in an environment whose on_stop
// job retires it.
func TestGitLabCIPreview(t *testing.T) {
	type job struct {
		Extends  string `yaml:"extends"`
		IDTokens map[string]struct {
			Aud string `yaml:"aud"`
		} `yaml:"id_tokens"`
		Rules []struct {
			If   string `yaml:"if"`
			When string `yaml:"when"`
		} `yaml:"rules"`
		BeforeScript []string          `yaml:"before_script"`
		Script       []string          `yaml:"script"`
		Variables    map[string]string `yaml:"variables"`
		Environment  struct {
			Name   string `yaml:"name"`
			URL    string `yaml:"url"`
			OnStop string `yaml:"on_stop"`
			Action string `yaml:"action"`
		} `yaml:"environment"`
	}
	var ci map[string]job
	load(t, "gitlab-ci.yml", &ci)
	base, create, retire := ci[".harness-gateway"], ci["preview-environment"], ci["retire-preview-environment"]
	if base.IDTokens["HARNESS_ID_TOKEN"].Aud != "$HARNESS_AUDIENCE" {
		t.Errorf("id_tokens = %+v, want HARNESS_ID_TOKEN with aud $HARNESS_AUDIENCE", base.IDTokens)
	}
	if !strings.Contains(strings.Join(base.BeforeScript, "\n"), `umask 077 && printf '%s' "$HARNESS_ID_TOKEN" > "$HARNESS_TOKEN_FILE"`) {
		t.Errorf("before_script does not write the ID token to a private file: %v", base.BeforeScript)
	}
	if base.Variables["PREVIEW"] != "mr-$CI_MERGE_REQUEST_IID" {
		t.Errorf("variables = %v", base.Variables)
	}
	for name, j := range map[string]job{"preview-environment": create, "retire-preview-environment": retire} {
		if j.Extends != ".harness-gateway" || len(j.Rules) == 0 || j.Rules[0].If != `$CI_PIPELINE_SOURCE == "merge_request_event"` {
			t.Errorf("%s: extends %q, rules %+v", name, j.Extends, j.Rules)
		}
	}
	script := strings.Join(create.Script, "\n")
	for _, want := range []string{"gateway policy test policy/", `gateway env create "$PREVIEW"`, "--pr \"$CI_MERGE_REQUEST_IID\"", "--repository \"$CI_PROJECT_PATH\"", "--policy-bundle", "merge_requests/$CI_MERGE_REQUEST_IID/notes"} {
		if !strings.Contains(script, want) {
			t.Errorf("preview-environment script lacks %q", want)
		}
	}
	if strings.Index(script, "gateway policy test") > strings.Index(script, "gateway env create") {
		t.Error("the policy is tested after the preview is created")
	}
	if create.Environment.OnStop != "retire-preview-environment" || create.Environment.URL != "$MCP_URL" || create.Environment.Name != retire.Environment.Name {
		t.Errorf("environment = %+v (retire job's %+v)", create.Environment, retire.Environment)
	}
	if retire.Environment.Action != "stop" || !strings.Contains(strings.Join(retire.Script, "\n"), `gateway env retire "$PREVIEW" --missing-ok`) {
		t.Errorf("retire job: environment %+v, script %v", retire.Environment, retire.Script)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// stepIndex finds, for each needle, the first step whose name, uses, run or
// script mentions it.
func stepIndex(t *testing.T, steps []ghStep, needles []string) []int {
	t.Helper()
	var at []int
	for _, n := range needles {
		found := -1
		for i, s := range steps {
			if strings.Contains(s.Name+"\n"+s.Uses+"\n"+s.Run+"\n"+s.With["script"], n) {
				found = i
				break
			}
		}
		if found < 0 {
			t.Fatalf("no step mentions %q", n)
		}
		at = append(at, found)
	}
	return at
}
