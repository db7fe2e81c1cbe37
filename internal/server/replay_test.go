package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/policy"
)

// TestRecordDecision: the record carries the input as audit.record_input
// says — detected values masked by default — and always the outcome.
func TestRecordDecision(t *testing.T) {
	in := &policy.Input{
		Action: policy.ActionCall, Subject: policy.Subject{Sub: "alice"}, Tool: policy.Tool{Name: "crm_issue_refund"},
		Arguments:   map[string]any{"card": "4111 1111 1111 1111", "amount": 120.5, "nested": map[string]any{"k": "sk_live_abcdefghijklmnopqrstuvwx"}},
		Environment: "test", Time: "2026-11-02T09:00:00Z", CacheKey: "credential-hash",
	}
	dec := policy.Decision{Allow: true, Redact: []string{"iban"}, RateLimit: &policy.RateLimit{Requests: 5, Per: time.Minute}}
	for _, tc := range []struct {
		mode      string
		err       error
		wantIn    []string // substrings of the recorded input
		notIn     []string
		wantNoIn  bool
		wantAllow bool
	}{
		{mode: config.RecordInputRedacted, wantIn: []string{`"card":"[REDACTED:credit_card]"`, `"k":"[REDACTED:secret]"`, `"amount":120.5`}, notIn: []string{"4111", "sk_live", "credential-hash"}, wantAllow: true},
		{mode: config.RecordInputFull, wantIn: []string{`"card":"4111 1111 1111 1111"`}, notIn: []string{"credential-hash"}, wantAllow: true},
		{mode: config.RecordInputNone, wantNoIn: true, wantAllow: true},
		{mode: config.RecordInputRedacted, err: errors.New("eval_conflict_error"), wantIn: []string{`"time":"2026-11-02T09:00:00Z"`}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := config.Default()
			cfg.Audit.RecordInput = tc.mode
			s := &Server{cfg: &cfg, log: slog.New(slog.DiscardHandler)}
			var rec audit.Record
			s.recordDecision(context.Background(), &rec, in, dec, tc.err)
			if tc.wantNoIn != (rec.Input == nil) {
				t.Fatalf("input recorded: %s", rec.Input)
			}
			for _, w := range tc.wantIn {
				if !strings.Contains(string(rec.Input), w) {
					t.Errorf("input %s lacks %s", rec.Input, w)
				}
			}
			for _, w := range tc.notIn {
				if strings.Contains(string(rec.Input), w) {
					t.Errorf("input %s holds %s", rec.Input, w)
				}
			}
			if rec.Input != nil {
				if _, err := policy.ParseInput(rec.Input); err != nil {
					t.Errorf("recorded input does not parse: %v", err)
				}
			}
			var o policy.Outcome
			if err := json.Unmarshal(rec.PolicyDecision, &o); err != nil || o.Allow != tc.wantAllow {
				t.Errorf("policy_decision %s: %v", rec.PolicyDecision, err)
			}
		})
	}
	if in.Arguments["card"] != "4111 1111 1111 1111" {
		t.Error("masking modified the arguments the call uses")
	}
}

// TestAdminAuditRecords: the admin endpoint serves the trail's decided
// records, rotated files included, only with server.admin_token.
func TestAdminAuditRecords(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(context.Background(), audit.Config{Path: path, Fsync: audit.FsyncNever, MaxSize: 1200}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for i := range 8 {
		r := audit.Record{ID: "r" + string(rune('0'+i)), Time: t0.Add(time.Duration(i) * time.Hour), Action: audit.ActionCall, Decision: audit.DecisionAllow, Tool: "crm_get_customer"}
		if err := l.Write(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := audit.Files(path); len(files) < 2 {
		t.Fatalf("want a rotated trail, got %v", files)
	}
	f := newFixture(t, fixtureOpts{mutate: func(c *config.Config) {
		c.Audit.Path = path
		c.Server.AdminToken = token
	}})
	get := func(query, tok string) (*http.Response, []string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, f.url+"/admin/audit/records"+query, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ids []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if resp.StatusCode != http.StatusOK {
				continue
			}
			r, err := audit.ParseLine(sc.Bytes())
			if err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			ids = append(ids, r.ID)
		}
		return resp, ids
	}
	for _, tc := range []struct {
		name, query, token string
		status             int
		ids                string
		truncated          string
	}{
		{"no token", "", "", 401, "", ""},
		{"wrong token", "", token + "x", 401, "", ""},
		{"prefix of the token", "", token[:10], 401, "", ""},
		{"all, rotated files first", "", token, 200, "r0 r1 r2 r3 r4 r5 r6 r7", "false"},
		{"newest two", "?limit=2", token, 200, "r6 r7", "true"},
		{"window", "?since=2026-11-02T11:00:00Z&until=2026-11-02T13:00:00Z", token, 200, "r2 r3", "false"},
		{"bad limit", "?limit=0", token, 400, "", ""},
		{"limit too large", "?limit=100001", token, 400, "", ""},
		{"bad since", "?since=yesterday", token, 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, ids := get(tc.query, tc.token)
			if resp.StatusCode != tc.status || strings.Join(ids, " ") != tc.ids {
				t.Fatalf("status %d ids %v, want %d %q", resp.StatusCode, ids, tc.status, tc.ids)
			}
			if tc.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Error("401 without a Bearer challenge")
			}
			if tc.truncated != "" && resp.Header.Get("Harness-Truncated") != tc.truncated {
				t.Errorf("Harness-Truncated %q, want %s", resp.Header.Get("Harness-Truncated"), tc.truncated)
			}
		})
	}
	t.Run("off without a token configured", func(t *testing.T) {
		off := newFixture(t, fixtureOpts{mutate: func(c *config.Config) { c.Audit.Path = path }})
		req, _ := http.NewRequest(http.MethodGet, off.url+"/admin/audit/records", nil)
		req.Header.Set("Authorization", "Bearer ")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		rr := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodDelete, "/admin/audit/records", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		f.srv.Handler().ServeHTTP(rr, req)
		if rr.Code == http.StatusOK {
			t.Error("DELETE answered 200")
		}
	})
}
