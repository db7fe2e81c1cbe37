package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// policyDir writes the embedded default policy to a directory, with data
// replaced by data when given.
func policyDir(t testing.TB, rego, data string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"harness.rego", "data.json"} {
		b, err := fs.ReadFile(policy.DefaultFS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "harness.rego" && rego != "" {
			b = []byte(rego)
		}
		if name == "data.json" && data != "" {
			b = []byte(data)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func engine(t testing.TB, dir string) *policy.Engine {
	t.Helper()
	e, err := policy.New(context.Background(), policy.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// call is one synthetic call for a trail.
type call struct {
	id, sub, agent, tool, method string
	tags, roles                  []string
	args                         map[string]any
}

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// record decides c with e, as the gateway does, and returns its record.
func record(t testing.TB, e *policy.Engine, c call, at time.Time) audit.Record {
	t.Helper()
	in := &policy.Input{
		Action:      policy.ActionCall,
		Subject:     policy.Subject{Iss: "https://idp", Sub: c.sub, Email: c.sub + "@example.com", Roles: c.roles},
		Agent:       policy.Agent{ID: c.agent},
		Tool:        policy.Tool{Name: c.tool, Upstream: "crm", Method: c.method, Path: "/x", Tags: c.tags},
		Arguments:   c.args,
		Environment: "production",
		Time:        at.Format(time.RFC3339),
	}
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	inJSON, _ := json.Marshal(in)
	outJSON, _ := json.Marshal(policy.OutcomeOf(d))
	dec := audit.DecisionDeny
	if d.Allow {
		dec = audit.DecisionAllow
	}
	return audit.Record{
		ID: c.id, Time: at, Action: audit.ActionCall, Decision: dec, Subject: c.sub, Agent: c.agent, Tool: c.tool,
		PolicyDecisionID: d.ID, Input: inJSON, PolicyDecision: outJSON,
	}
}

// writeTrail writes recs through the real audit log and returns its lines.
func writeTrail(t testing.TB, recs []audit.Record) (string, []Line) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(context.Background(), audit.Config{Path: path, Fsync: audit.FsyncNever}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := l.Write(context.Background(), &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, readTrail(t, path)
}

func readTrail(t testing.TB, path string) []Line {
	t.Helper()
	var lines []Line
	err := audit.ReadLines([]string{path}, func(f string, n int, b []byte) error {
		lines = append(lines, Line{Source: f, N: n, Data: b})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

var calls = []call{
	{id: "r1", sub: "bob", agent: "cursor", tool: "crm_update_ticket", method: "POST", tags: []string{"tickets"}, roles: []string{"support"}},
	{id: "r2", sub: "bob", agent: "cursor", tool: "crm_update_ticket", method: "POST", tags: []string{"tickets"}, roles: []string{"support"}},
	{id: "r3", sub: "bob", agent: "cursor", tool: "crm_get_customer", method: "GET", tags: []string{"customers"}, roles: []string{"support"}},
	{id: "r4", sub: "carol", agent: "claude", tool: "crm_refund", method: "POST", tags: []string{"payments"}, roles: []string{"support"}},
	{id: "r5", sub: "alice", agent: "claude", tool: "crm_get_customer", method: "GET", tags: []string{"customers"}, roles: []string{"viewer"}},
}

// dataNew: support no longer writes tickets, but may refund; viewers'
// results lose IBANs too.
const dataNew = `{
  "grants": {
    "admin": {"read": ["*"], "write": ["*"]},
    "support": {"read": ["customers", "orders", "tickets"], "write": ["payments"]},
    "viewer": {"read": ["*"], "write": []}
  },
  "obligations": {
    "redact": ["card_number", "iban"],
    "unredacted_roles": ["admin"],
    "write_rate_limit": {"requests": 10, "per": "1m"}
  }
}`

func trail(t testing.TB, e *policy.Engine) []Line {
	t.Helper()
	var recs []audit.Record
	for i, c := range calls {
		recs = append(recs, record(t, e, c, t0.Add(time.Duration(i)*time.Minute)))
	}
	_, lines := writeTrail(t, recs)
	return lines
}

type got struct {
	Change, Tool, Human string
	Count               int
	IDs                 string
}

func summarize(rep *Report) []got {
	var out []got
	for _, g := range rep.Changes {
		var ids []string
		for _, e := range g.Examples {
			ids = append(ids, e.ID)
		}
		out = append(out, got{g.Change, g.Tool, g.Human, g.Count, strings.Join(ids, ",")})
	}
	return out
}

func TestRun(t *testing.T) {
	old := policyDir(t, "", "")
	lines := trail(t, engine(t, old))
	wantData := []got{
		{AllowToDeny, "crm_update_ticket", "bob@example.com", 2, "r1,r2"},
		{DenyToAllow, "crm_refund", "carol@example.com", 1, "r4"},
		{policy.ChangeRedact, "crm_get_customer", "alice@example.com", 1, "r5"},
		{policy.ChangeRedact, "crm_get_customer", "bob@example.com", 1, "r3"},
	}
	for _, tc := range []struct {
		name          string
		newDir, base  string
		want          []got
		wantBaseline  bool
		wantReplayed  int
		wantChanged   int
		wantOtherRecs int
	}{
		{name: "same policy, recorded decisions", newDir: old, wantReplayed: 5},
		{name: "same policy, baseline", newDir: old, base: old, wantReplayed: 5},
		{name: "changed data.json, recorded decisions", newDir: policyDir(t, "", dataNew), want: wantData, wantReplayed: 5, wantChanged: 5},
		{name: "changed data.json, baseline", newDir: policyDir(t, "", dataNew), base: old, want: wantData, wantReplayed: 5, wantChanged: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{New: engine(t, tc.newDir)}
			if tc.base != "" {
				o.Baseline = engine(t, tc.base)
			}
			rep, err := Run(context.Background(), o, lines)
			if err != nil {
				t.Fatal(err)
			}
			if g := summarize(rep); !reflect.DeepEqual(tc.want, g) {
				t.Errorf("changes:\n got %+v\nwant %+v", g, tc.want)
			}
			if rep.Replayed != tc.wantReplayed || rep.Changed != tc.wantChanged || rep.Decisions != 5 || rep.Other != 1 || len(rep.NotReplayable) != 0 {
				t.Errorf("replayed %d changed %d decisions %d other %d not replayable %v", rep.Replayed, rep.Changed, rep.Decisions, rep.Other, rep.NotReplayable)
			}
		})
	}
}

func TestRunWindow(t *testing.T) {
	old := policyDir(t, "", "")
	lines := trail(t, engine(t, old))
	rep, err := Run(context.Background(), Options{New: engine(t, policyDir(t, "", dataNew)), Since: t0.Add(time.Minute), Until: t0.Add(4 * time.Minute)}, lines)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Decisions != 3 || rep.OutsideWindow != 2 || rep.Changed != 3 {
		t.Errorf("decisions %d outside %d changed %d, want 3, 2, 3", rep.Decisions, rep.OutsideWindow, rep.Changed)
	}
}

// TestNotReplayable: every record that cannot be replayed is counted under
// its reason and named.
func TestNotReplayable(t *testing.T) {
	e := engine(t, policyDir(t, "", ""))
	noInput := record(t, e, calls[0], t0)
	noInput.ID, noInput.Input = "no-input", nil
	notDecided := audit.Record{ID: "unknown-tool", Time: t0, Action: audit.ActionCall, Decision: audit.DecisionDeny, Tool: "crm_nope", Reason: "no such tool"}
	noTool := record(t, e, calls[1], t0)
	noTool.ID, noTool.Input = "no-tool", bytes.Replace(noTool.Input, []byte(`"name":"crm_update_ticket"`), []byte(`"name":""`), 1)
	future := record(t, e, calls[2], t0)
	future.ID, future.Input = "future", bytes.Replace(future.Input, []byte(`{"action"`), []byte(`{"newfield":1,"action"`), 1)
	noDecision := record(t, e, calls[3], t0)
	noDecision.ID, noDecision.PolicyDecision = "no-decision", nil
	altered := record(t, e, calls[4], t0)
	altered.ID = "altered"
	envChange := audit.Record{ID: "env", Time: t0, Kind: "environment", Action: "create", Reason: "pr 42"} // not a decision
	path, _ := writeTrail(t, []audit.Record{noInput, notDecided, noTool, future, noDecision, altered, envChange})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"subject":"alice"`), []byte(`"subject":"alicf"`), 1) // altered
	b = append(b, []byte(`{"time":"2026-11-02T09:00:00Z","id":"torn"`)...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Options{New: e}, readTrail(t, path))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range rep.NotReplayable {
		var ids []string
		for _, ex := range s.Examples {
			ids = append(ids, ex.ID)
		}
		got[s.Reason] = strings.Join(ids, ",")
	}
	want := map[string]string{
		ReasonNoInput:    "no-input",
		ReasonNotDecided: "unknown-tool",
		ReasonNoTool:     "no-tool",
		ReasonBadInput:   "future",
		ReasonNoDecision: "no-decision",
		ReasonAltered:    "altered",
		ReasonUnreadable: "",
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("not replayable:\n got %q\nwant %q", got, want)
	}
	if rep.Replayed != 0 || rep.NotReplayableCount() != 7 || rep.Decisions != 7 || rep.Other != 2 {
		t.Errorf("replayed %d, not replayable %d, decisions %d, other %d; want 0, 7, 7, 2", rep.Replayed, rep.NotReplayableCount(), rep.Decisions, rep.Other)
	}
}

// TestWriteGolden pins the three formats of one report.
func TestWriteGolden(t *testing.T) {
	at := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)
	rep := &Report{
		Policy: "4f9a1c2e7b3d5a6f", Decisions: 1210, Replayed: 1200, Changed: 215,
		From: at.Add(-7 * 24 * time.Hour), To: at, OutsideWindow: 4, Other: 12,
		Changes: []Group{
			{Change: AllowToDeny, Tool: "crm_update_ticket", Human: "bob@example.com", Agent: "cursor", Count: 212,
				Examples: []Example{{ID: "0190a1b2-0001", Time: at}, {ID: "0190a1b2-0002", Time: at.Add(time.Minute)}}},
			{Change: DenyToAllow, Tool: "crm_refund", Human: "carol@example.com", Agent: "claude|desktop", Count: 2,
				Examples: []Example{{ID: "0190a1b2-0003", Time: at}}},
			{Change: policy.ChangeRateLimit, Tool: "crm_create_order", Human: "dave@example.com", Agent: "<script>", Count: 1,
				Examples: []Example{{ID: "0190a1b2-0004", Time: at, Note: "new policy failed: x"}}},
		},
		NotReplayable: []Skipped{{Reason: ReasonNoInput, Count: 10, Examples: []Example{{ID: "0190a1b2-0005", Time: at, Note: "crm_get_customer"}}}},
	}
	l := Labels{New: "policy/", Source: "audit.log"}
	for _, f := range []string{FormatMarkdown, FormatText, FormatJSON} {
		t.Run(f, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, rep, f, l); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "report."+f+".golden")
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != string(want) {
				t.Errorf("%s report:\n%s\nwant (%s):\n%s", f, b.String(), golden, want)
			}
		})
	}
	if err := Write(&bytes.Buffer{}, rep, "yaml", l); err == nil {
		t.Error("unknown format accepted")
	}
}
