package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentharness/harness/policy"
)

// The demo runs the default policy plus an approval rule: support may issue
// refunds, and one over demoRefundLimit cents is held until an admin
// approves it. It is a policy dir of its own (written at start) rather than
// a change of the default policy: a rule that reads input.arguments turns
// off decision reuse for every call (policy/memo.go), a price the demo may
// pay but a deployment of the default policy should not.
const demoRefundLimit = 2000

// demoApprovalRego adds the approval table to package harness.
const demoApprovalRego = `package harness

# Approvals (demo): data.approvals names, by operation id, the roles a
# rule applies to, the numeric argument and its threshold, the approvers,
# the reason and the ttl. A missing or non-numeric argument needs approval.
approval_rule := data.approvals[input.tool.operation]

needs_approval if {
	input.action == "call"
	some role in input.subject.roles
	role in approval_rule.roles
	not below_approval_threshold
}

below_approval_threshold if {
	v := input.arguments[approval_rule.argument]
	is_number(v)
	v <= approval_rule.over
}

approval := {"approvers": approval_rule.approvers, "reason": approval_rule.reason, "ttl": approval_rule.ttl} if needs_approval

else := null
`

// writeDemoPolicy writes the demo's policy into dir.
func writeDemoPolicy(dir string) error {
	def := policy.DefaultFS()
	rego, err := fs.ReadFile(def, "harness.rego")
	if err != nil {
		return err
	}
	const tail = "\t\"rate_limit\": rate_limit,\n}"
	if strings.Count(string(rego), tail) != 1 {
		return fmt.Errorf("demo policy: the default decision no longer ends with %q", tail)
	}
	rego = []byte(strings.Replace(string(rego), tail, "\t\"rate_limit\": rate_limit,\n\t\"approval\": approval,\n}", 1))
	raw, err := fs.ReadFile(def, "data.json")
	if err != nil {
		return err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return fmt.Errorf("demo policy: %w", err)
	}
	support, ok := data["grants"].(map[string]any)["support"].(map[string]any)
	if !ok {
		return fmt.Errorf("demo policy: the default data has no support grants")
	}
	support["write"] = append(support["write"].([]any), "refunds", "orders") // crm_issue_refund is tagged refunds, orders
	data["approvals"] = map[string]any{
		"issue_refund": map[string]any{
			"roles": []string{"support"}, "argument": "amount_cents", "over": demoRefundLimit,
			"approvers": []string{"role:admin"}, "reason": fmt.Sprintf("refunds over %d.%02d need an admin's approval", demoRefundLimit/100, demoRefundLimit%100), "ttl": "15m",
		},
	}
	out, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"harness.rego": rego, "approvals.rego": []byte(demoApprovalRego), "data.json": out} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("demo policy: %w", err)
		}
	}
	return nil
}

// demoPreviewRoles is appended to the default policy in the demo preview's
// bundle: the branch's author (the preview's owner, matched on the
// subject or the e-mail's local part) is an admin there; everyone else
// keeps the roles of their token.
const demoPreviewRoles = `
# Preview (demo): the branch's author, input.preview.owner, is an admin in
# their own preview; everyone else keeps their roles (a viewer stays
# read-only). Outside a preview input.preview is null and nothing changes.
roles := array.concat(input.subject.roles, ["admin"]) if {
	is_author
} else := input.subject.roles

is_author if {
	input.preview.owner != ""
	input.preview.owner == input.subject.sub
}

is_author if {
	input.preview.owner != ""
	input.preview.owner == split(input.subject.email, "@")[0]
}
`

// demoPreviewBundle is the policy bundle (.tar.gz, as `opa build` writes
// it) the demo's "CI" sends with the preview: the default policy whose
// roles make the branch's author an admin (demoPreviewRoles).
func demoPreviewBundle() ([]byte, error) {
	def := policy.DefaultFS()
	rego, err := fs.ReadFile(def, "harness.rego")
	if err != nil {
		return nil, err
	}
	const uses = "some role in input.subject.roles"
	if n := strings.Count(string(rego), uses); n != 3 {
		return nil, fmt.Errorf("demo preview policy: the default policy reads input.subject.roles %d times, want 3", n)
	}
	src := strings.ReplaceAll(string(rego), uses, "some role in roles") + demoPreviewRoles
	data, err := fs.ReadFile(def, "data.json")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		name string
		body []byte
	}{{"policy/harness.rego", []byte(src)}, {"data.json", data}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
