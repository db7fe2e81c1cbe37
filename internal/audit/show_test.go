package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 42, 7, 0, time.UTC)
	tests := []struct {
		name string
		r    *Record
		want string
	}{
		{"deny", &Record{Time: at, Decision: DecisionDeny, Subject: "alice", Agent: "copilot",
			Tool: "crm_issue_refund", Reason: "support staff may not write"},
			"10:42:07 DENY alice via copilot → crm_issue_refund — support staff may not write"},
		{"allow with details", &Record{Time: at, Decision: DecisionAllow, Subject: "bob", Agent: "cursor",
			Tool: "crm_get_customer", Status: 200, DurationMS: 12.4, Redactions: 3},
			"10:42:07 ALLOW bob via cursor → crm_get_customer (status 200, 12ms, 3 redactions)"},
		{"fast call, one redaction", &Record{Time: at, Decision: DecisionAllow, Subject: "bob",
			Tool: "t", DurationMS: 0.25, Redactions: 1},
			"10:42:07 ALLOW bob → t (0.2ms, 1 redaction)"},
		{"slow call", &Record{Time: at, Decision: DecisionError, Subject: "bob", Tool: "t", Status: 504, DurationMS: 12500},
			"10:42:07 ERROR bob → t (status 504, 12.5s)"},
		{"list", &Record{Time: at, Decision: DecisionAllow, Action: ActionList, Subject: "bob"},
			"10:42:07 ALLOW bob → tools/list"},
		{"rate limited, no subject", &Record{Time: at.In(time.FixedZone("x", 7200)), Decision: DecisionRateLimited, Tool: "t"},
			"10:42:07 RATE_LIMITED - → t"},
		{"gap", &Record{Time: at, Kind: KindGap, Reason: "torn write"}, "10:42:07 GAP — torn write"},
		{"escape sequences", &Record{Time: at, Decision: DecisionDeny, Subject: "eve\x1b[2J", Tool: "x\u202ey", Reason: "a\nb"},
			`10:42:07 DENY eve\x1b[2J → x\u202ey — a\nb`},
		{"named human", &Record{Time: at, Decision: DecisionAllow, Subject: "CiQwOGE4Njg0Yi1kYjg4", Email: "alice@acme.example", Name: "Alice Support",
			Agent: "cursor", Tool: "t"},
			"10:42:07 ALLOW Alice Support <alice@acme.example> (CiQwOGE4Njg0Yi1kYjg4) via cursor → t"},
		{"email only, grant", &Record{Time: at, Kind: KindGrant, Subject: "u-1", Email: "bob@acme.example", Agent: "copilot"},
			"10:42:07 GRANT <bob@acme.example> (u-1) → copilot"},
		{"escaped name", &Record{Time: at, Decision: DecisionDeny, Subject: "u", Name: "M\x1b[2Jallory", Tool: "t"},
			`10:42:07 DENY M\x1b[2Jallory (u) → t`},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Format(tt.r); got != tt.want {
				t.Errorf("Format() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	r := &Record{Time: at, Subject: "alice", Agent: "copilot", Tool: "crm_get_customer", Decision: DecisionDeny}
	special := &Record{Time: at, Kind: KindStart}
	tests := []struct {
		name string
		f    Filter
		r    *Record
		want bool
	}{
		{"empty", Filter{}, r, true},
		{"subject", Filter{Subject: "alice"}, r, true},
		{"other subject", Filter{Subject: "bob"}, r, false},
		{"email", Filter{Subject: "Alice@Acme.example"}, &Record{Time: at, Subject: "u-8f3a", Email: "alice@acme.example"}, true},
		{"other email", Filter{Subject: "bob@acme.example"}, &Record{Time: at, Subject: "u-8f3a", Email: "alice@acme.example"}, false},
		{"no email to match", Filter{Subject: ""}, &Record{Time: at, Subject: "u-8f3a"}, true},
		{"agent", Filter{Agent: "cursor"}, r, false},
		{"tool exact", Filter{Tool: "crm_get_customer"}, r, true},
		{"tool prefix", Filter{Tool: "crm_*"}, r, true},
		{"tool other prefix", Filter{Tool: "hr_*"}, r, false},
		{"tool is not a prefix without star", Filter{Tool: "crm_"}, r, false},
		{"decision case-insensitive", Filter{Decision: "DENY"}, r, true},
		{"decision other", Filter{Decision: DecisionAllow}, r, false},
		{"since before", Filter{Since: at.Add(-time.Second)}, r, true},
		{"since equal", Filter{Since: at}, r, true},
		{"since after", Filter{Since: at.Add(time.Second)}, r, false},
		{"all", Filter{Subject: "alice", Agent: "copilot", Tool: "crm_*", Decision: "deny", Since: at}, r, true},
		{"special, empty filter", Filter{}, special, true},
		{"special, subject filter", Filter{Subject: "alice"}, special, false},
		{"nil", Filter{}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(tt.r); got != tt.want {
				t.Errorf("Match() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestShow(t *testing.T) {
	path, lines := writeChain(t, 2)
	lines[1] = strings.Replace(lines[1], `"alice"`, `"mallory"`, 1)
	lines = append(lines, `{"torn`)
	writeLines(t, path, lines)
	var out bytes.Buffer
	if err := Show(&out, path); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != 5 {
		t.Fatalf("Show printed %d lines, want date + 4:\n%s", len(got), out.String())
	}
	checks := []struct {
		line int
		want string
	}{
		{0, "── " + time.Now().UTC().Format(time.DateOnly) + " ──"},
		{1, "START — audit log opened"},
		{2, "EDITED "},
		{2, "mallory via copilot → crm_get_customer_0"},
		{3, "ALLOW alice via copilot → crm_get_customer_1 — support may read customers (status 200, 12ms, 2 redactions)"},
		{4, "?? " + path + ":4: not a complete record (6 bytes)"},
	}
	for _, c := range checks {
		if !strings.Contains(got[c.line], c.want) {
			t.Errorf("line %d = %q, want it to contain %q", c.line, got[c.line], c.want)
		}
	}
	if err := Show(&out, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Show of a missing file succeeded")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTailNoFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path})
	for _, subj := range []string{"alice", "bob", "alice"} {
		r := callRecord(0)
		r.Subject = subj
		if err := l.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Tail(context.Background(), &out, path, Filter{Subject: "alice"}, false); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "ALLOW alice"); n != 2 || strings.Contains(out.String(), "bob") {
		t.Errorf("Tail output:\n%s", out.String())
	}
}

func TestTailFollowAcrossRotation(t *testing.T) {
	old := tailPoll
	tailPoll = 5 * time.Millisecond
	t.Cleanup(func() { tailPoll = old })

	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, Config{Path: path, MaxSize: 1500})
	t.Cleanup(func() { _ = l.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Tail(ctx, out, path, Filter{Tool: "crm_*"}, true) }()

	const n = 25
	// Tail starts at the live file: let it open that file before the
	// writes rotate it away.
	if err := l.Write(context.Background(), callRecord(0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "crm_get_customer_0 ") })
	for i := 1; i < n; i++ {
		if err := l.Write(context.Background(), callRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := Files(path); len(files) < 3 {
		t.Fatalf("expected several rotations, got %v", files)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "crm_get_customer_24 ") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Tail: %v", err)
	}
	got := out.String()
	for i := range n {
		want := "crm_get_customer_" + strconv.Itoa(i) + " "
		if c := strings.Count(got, want); c != 1 {
			t.Errorf("%q printed %d times, want once", want, c)
		}
	}
	if strings.Contains(got, "ROTATE") || strings.Contains(got, "??") {
		t.Errorf("unexpected lines in output:\n%s", got)
	}
}

// waitFor polls cond until it holds; it fails the test after a generous
// deadline (a hang guard, not a timing assertion).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTailMissingFile(t *testing.T) {
	if err := Tail(context.Background(), &bytes.Buffer{}, filepath.Join(t.TempDir(), "x"), Filter{}, false); err == nil {
		t.Error("Tail of a missing file succeeded")
	}
}

func TestFilesIgnoresOtherNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a[1].log")
	for _, name := range []string{"a[1].log", "a[1].log.bak", "a[1].log.20260101T000000.000000000Z", "a[1].log.20250101T000000.000000000Z"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{path + ".20250101T000000.000000000Z", path + ".20260101T000000.000000000Z", path}
	if strings.Join(files, ",") != strings.Join(want, ",") {
		t.Errorf("Files = %v, want %v", files, want)
	}
}

// TestFormatEnvironment: an environment record reads as what happened to
// which preview, by whom and why.
func TestFormatEnvironment(t *testing.T) {
	r := &Record{Time: time.Date(2026, 1, 1, 10, 42, 9, 0, time.UTC), Kind: KindEnvironment, Action: EnvironmentRetire,
		Subject: "github-webhook", Reason: "webhook: pull_request #42 closed (merged)", Preview: &Preview{Name: "pr-42", Actor: "carol\x1b[2J"}}
	want := "10:42:09 ENVIRONMENT retire pr-42 by github-webhook (carol\\x1b[2J) — webhook: pull_request #42 closed (merged)"
	if got := Format(r); got != want {
		t.Fatalf("Format = %q\nwant       %q", got, want)
	}
}
