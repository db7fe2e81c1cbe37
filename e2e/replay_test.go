package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// Policy replay through the real binary: a gateway writes a trail of
// allowed, denied, rate-limited and redacted calls; `gateway policy replay`
// decides them again with the same policy (no change: the recorded inputs
// are complete), with a changed Rego rule and with a changed data.json
// (exactly the expected calls change), from the files and from the live
// gateway's admin endpoint.

// replayRego: support staff may use every tool; customers on legal hold
// (data.hold) are refused; results lose data.redact; list_tickets is
// limited to one call an hour. holdAll puts every customer on hold.
func replayRego(holdAll bool) string {
	hold := `input.arguments.customer_id in data.hold`
	if holdAll {
		hold = `input.arguments.customer_id != ""`
	}
	return `package harness

support if input.subject.claims.department == "support"

on_hold if {
	input.tool.name == "crm_get_customer"
	` + hold + `
}

decision := {"allow": false, "reason": "not support"} if {
	not support
} else := {"allow": false, "reason": "legal hold"} if {
	on_hold
} else := {"allow": true, "redact": data.redact, "rate_limit": {"requests": 1, "per": "1h"}} if {
	input.tool.name == "crm_list_tickets"
} else := {"allow": true, "redact": data.redact}
`
}

const replayData = `{"hold": ["c-2"], "redact": ["name"]}`

// replayReport is the part of the JSON report the tests compare.
type replayReport struct {
	Decisions, Replayed, Changed int
	Changes                      []struct {
		Change, Tool, Human string
		Count               int
	}
	NotReplayable []struct {
		Reason string
		Count  int
	} `json:"not_replayable"`
}

// replayCLI runs `gateway policy replay args…`: stdout, stderr, exit code.
func replayCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(gatewayBin, append([]string{"policy", "replay"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("policy replay %v: %v", args, err)
		}
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func replayJSON(t *testing.T, wantCode int, args ...string) replayReport {
	t.Helper()
	out, errOut, code := replayCLI(t, append([]string{"--format", "json"}, args...)...)
	if code != wantCode {
		t.Fatalf("policy replay %v: exit %d, want %d\n%s%s", args, code, wantCode, out, errOut)
	}
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("policy replay %v: not JSON: %v\n%s", args, err, out)
	}
	sort.Slice(rep.Changes, func(i, j int) bool {
		a, b := rep.Changes[i], rep.Changes[j]
		return a.Change+a.Tool+a.Human < b.Change+b.Tool+b.Human
	})
	return rep
}

func startReplayGateway(t *testing.T, dir, recordInput, adminToken string) (*gateway, *policyStack) {
	t.Helper()
	ps := &policyStack{iss: startIssuer(t), up: polStartCRM(t), PolicyDir: dir}
	ps.gw = startGateway(t, fmt.Sprintf(`listen: "{{LISTEN}}"
public_url: "http://{{LISTEN}}"
environment: test
auth:
  issuers:
    - issuer: %q
policy:
  dir: %q
upstreams:
  - name: crm
    base_url: %q
    openapi: %q
redaction:
  detectors: [secret, credit_card]
server:
  admin_token: ${REPLAY_ADMIN_TOKEN}
audit:
  path: "{{DIR}}/audit.log"
  fsync: always
  record_input: %s
`, ps.iss.URL(), dir, ps.up.URL, ps.up.URL+"/openapi.json", recordInput), "REPLAY_ADMIN_TOKEN="+adminToken)
	ps.sam = mint(t, ps.iss, ps.gw.URL, map[string]any{"sub": "sam", "department": "support", "email": "sam@acme.example"})
	ps.sid = mint(t, ps.iss, ps.gw.URL, map[string]any{"sub": "sid", "department": "sales", "email": "sid@acme.example"})
	return ps.gw, ps
}

func policyFiles(t *testing.T, rego, data string) string {
	t.Helper()
	dir := t.TempDir()
	writePolicyFile(t, filepath.Join(dir, "harness.rego"), rego)
	writePolicyFile(t, filepath.Join(dir, "data.json"), data)
	return dir
}

const cardNumber = "4111 1111 1111 1111"

func TestPolicyReplay(t *testing.T) {
	old := policyFiles(t, replayRego(false), replayData)
	// Every e2e gateway gets e2eAdminToken from the environment
	// (HARNESS_SERVER_ADMIN_TOKEN overrides the file), so the file names it too.
	const adminToken = e2eAdminToken
	gw, ps := startReplayGateway(t, old, "redacted", adminToken)

	sam := connect(t, gw.URL, ps.sam, eras[0])
	sid := connect(t, gw.URL, ps.sid, eras[1])
	polWantAllowed(t, "sam reads c-1", callTool(t, sam, "crm_get_customer", map[string]any{"customer_id": "c-1"}), "c-1")
	polWantDenied(t, "sam reads c-2", callTool(t, sam, "crm_get_customer", map[string]any{"customer_id": "c-2"}), "legal hold")
	polWantDenied(t, "sid reads c-1", callTool(t, sid, "crm_get_customer", map[string]any{"customer_id": "c-1"}), "not support")
	polWantAllowed(t, "sam lists tickets", callTool(t, sam, "crm_list_tickets", nil), "t-1")
	if res := callTool(t, sam, "crm_list_tickets", nil); !res.IsError || !strings.Contains(resultText(res), "rate limited") {
		t.Fatalf("second list_tickets: want rate limited, got %q", resultText(res))
	}
	polWantAllowed(t, "sam creates a ticket", callTool(t, sam, "crm_create_ticket", map[string]any{"subject": "refund card " + cardNumber}), "t-2")

	trail := readFile(t, gw.AuditPath)
	for _, want := range []string{`"decision":"allow"`, `"decision":"deny"`, `"decision":"rate_limited"`, `"redaction_kinds"`} {
		if !strings.Contains(trail, want) {
			t.Fatalf("trail lacks %s:\n%s", want, trail)
		}
	}

	t.Run("privacy: the card number is masked and replay still works", func(t *testing.T) {
		if strings.Contains(trail, cardNumber) {
			t.Errorf("the card number entered the audit trail:\n%s", trail)
		}
		for _, tok := range []string{ps.sam, ps.sid} {
			if strings.Contains(trail, tok[strings.LastIndexByte(tok, '.')+1:]) {
				t.Error("a token's signature is in the audit trail")
			}
		}
		if !strings.Contains(trail, `"subject":"refund card [REDACTED:credit_card]"`) || !strings.Contains(trail, `"detections":{"credit_card":1}`) {
			t.Errorf("the recorded input does not carry the masked argument and its detection:\n%s", trail)
		}
	})

	t.Run("same policy: no change", func(t *testing.T) {
		rep := replayJSON(t, 0, "--dir", old, gw.AuditPath)
		if rep.Decisions != 6 || rep.Replayed != 6 || rep.Changed != 0 || len(rep.NotReplayable) != 0 {
			t.Errorf("report %+v, want 6 decisions replayed without change", rep)
		}
		out, _, code := replayCLI(t, "--dir", old, "--baseline", old, gw.AuditPath)
		if code != 0 || !strings.Contains(out, "no change in 6 replayed decisions") {
			t.Errorf("baseline = new: exit %d\n%s", code, out)
		}
	})

	type change struct {
		Change, Tool, Human string
		Count               int
	}
	changes := func(rep replayReport) []change {
		var out []change
		for _, c := range rep.Changes {
			out = append(out, change(c))
		}
		return out
	}

	t.Run("changed rule", func(t *testing.T) {
		newDir := policyFiles(t, replayRego(true), replayData)
		rep := replayJSON(t, 1, "--dir", newDir, gw.AuditPath)
		want := []change{{"allow→deny", "crm_get_customer", "sam@acme.example", 1}}
		if got := changes(rep); rep.Changed != 1 || !reflect.DeepEqual(got, want) {
			t.Errorf("changes %+v (changed %d), want %+v", got, rep.Changed, want)
		}
	})

	t.Run("changed data.json", func(t *testing.T) {
		newDir := policyFiles(t, replayRego(false), `{"hold": [], "redact": ["name", "email"]}`)
		want := []change{
			{"deny→allow", "crm_get_customer", "sam@acme.example", 1},
			{"redact", "crm_create_ticket", "sam@acme.example", 1},
			{"redact", "crm_get_customer", "sam@acme.example", 1},
			{"redact", "crm_list_tickets", "sam@acme.example", 2},
		}
		for _, args := range [][]string{{"--dir", newDir}, {"--dir", newDir, "--baseline", old}} {
			rep := replayJSON(t, 1, append(args, gw.AuditPath)...)
			if got := changes(rep); rep.Changed != 5 || !reflect.DeepEqual(got, want) {
				t.Errorf("%v: changes %+v (changed %d), want %+v", args, got, rep.Changed, want)
			}
		}
		md, _, code := replayCLI(t, "--dir", newDir, "--format", "markdown", gw.AuditPath)
		if code != 1 || !strings.Contains(md, "### Policy replay: 5 of 6 replayed decisions change") ||
			!strings.Contains(md, "| deny → allow | crm\\_get\\_customer | sam\\@acme.example |") {
			t.Errorf("markdown report: exit %d\n%s", code, md)
		}
	})

	t.Run("live gateway", func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		newDir := policyFiles(t, replayRego(true), replayData)
		rep := replayJSON(t, 1, "--dir", newDir, "--url", gw.URL, "--token-file", tokenFile)
		if rep.Decisions != 6 || rep.Changed != 1 {
			t.Errorf("live replay: %+v, want 6 decisions, 1 changed", rep)
		}
		bad := filepath.Join(t.TempDir(), "bad")
		if err := os.WriteFile(bad, []byte("replay-admin-token-wrong-00000"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := replayCLI(t, "--dir", newDir, "--url", gw.URL, "--token-file", bad)
		if code != 2 || !strings.Contains(errOut, "401") {
			t.Errorf("wrong admin token: exit %d, want 2 naming 401\n%s%s", code, out, errOut)
		}
	})

	t.Run("usage and errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{gw.AuditPath}, // no --dir
			{"--dir", old}, // no trail
			{"--dir", old, "--format", "yaml", gw.AuditPath},
			{"--dir", filepath.Join(old, "missing"), gw.AuditPath},
			{"--dir", old, filepath.Join(old, "missing.log")},
		} {
			if out, errOut, code := replayCLI(t, args...); code != 2 {
				t.Errorf("%v: exit %d, want 2\n%s%s", args, code, out, errOut)
			}
		}
	})
}

// TestPolicyReplayRecordInputNone: with audit.record_input: none the
// records carry no input, and replay says they cannot be replayed.
func TestPolicyReplayRecordInputNone(t *testing.T) {
	old := policyFiles(t, replayRego(false), replayData)
	gw, ps := startReplayGateway(t, old, "none", "replay-admin-token-0123456789")
	sam := connect(t, gw.URL, ps.sam, eras[0])
	polWantAllowed(t, "sam creates a ticket", callTool(t, sam, "crm_create_ticket", map[string]any{"subject": "card " + cardNumber}), "t-2")
	polWantDenied(t, "sam reads c-2", callTool(t, sam, "crm_get_customer", map[string]any{"customer_id": "c-2"}), "legal hold")
	trail := readFile(t, gw.AuditPath)
	if strings.Contains(trail, `"input"`) || strings.Contains(trail, cardNumber) { // not "4111": random hex ids may hold it
		t.Errorf("record_input none: the trail holds inputs:\n%s", trail)
	}
	out, errOut, code := replayCLI(t, "--dir", old, "--format", "json", gw.AuditPath)
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if code != 2 || rep.Replayed != 0 || len(rep.NotReplayable) != 1 || rep.NotReplayable[0].Count != 2 ||
		!strings.Contains(rep.NotReplayable[0].Reason, "no input recorded") || !strings.Contains(errOut, "none of 2 decision record(s) could be replayed") {
		t.Errorf("exit %d, report %+v, stderr %s", code, rep, errOut)
	}
}
