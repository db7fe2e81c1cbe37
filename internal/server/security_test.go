package server

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/audit"
)

func securityRecords(recs []audit.Record, event string) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.Kind == audit.KindSecurity && r.Event == event {
			out = append(out, r)
		}
	}
	return out
}

func postMCP(t *testing.T, url, token, session, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set(mcpserver.HeaderKeySessionID, session)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestRefusedTokenFloodIsOneRecordPerKey: a flood of bad tokens is counted,
// and the minute's flush writes one record per reason, issuer and client IP.
func TestRefusedTokenFloodIsOneRecordPerKey(t *testing.T) {
	var sec *audit.Security
	f := newFixture(t, fixtureOpts{security: func(a AuditLog) SecurityEvents {
		sec = audit.NewSecurity(a, "test", nil)
		return sec
	}})
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://evil.example"}`))
	jwt := "eyJhbGciOiJub25lIn0." + payload + ".c2ln"
	for range 300 {
		if resp := postMCP(t, f.url, "not-a-token", "", `{}`); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range 40 {
		postMCP(t, f.url, jwt, "", `{}`)
	}
	if got := securityRecords(f.audit.records(), audit.EventTokenRefused); len(got) != 0 {
		t.Fatalf("%d records before the flush: refusals must be aggregated", len(got))
	}
	sec.Flush(context.Background())
	got := securityRecords(f.audit.records(), audit.EventTokenRefused)
	if len(got) != 2 {
		t.Fatalf("%d token_refused records, want 2 (one per issuer): %+v", len(got), got)
	}
	counts := map[string]int{}
	for _, r := range got {
		if r.ClientIP != "127.0.0.1" || r.Decision != audit.DecisionDeny || r.Reason == "" {
			t.Errorf("record %+v", r)
		}
		if strings.Contains(r.Reason, "not-a-token") {
			t.Errorf("the token entered the trail: %q", r.Reason)
		}
		counts[r.Issuer] = r.Count
	}
	if counts[""] != 300 || counts["https://evil.example"] != 40 {
		t.Errorf("counts by issuer %v, want 300 and 40", counts)
	}
	sec.Flush(context.Background())
	if n := len(securityRecords(f.audit.records(), audit.EventTokenRefused)); n != 2 {
		t.Errorf("an empty minute wrote records: %d", n)
	}
}

// TestSessionHijackIsRecorded: a legacy session presented by another
// principal is refused as unknown and leaves a security record.
func TestSessionHijackIsRecorded(t *testing.T) {
	f := newFixture(t, fixtureOpts{security: func(a AuditLog) SecurityEvents {
		return audit.NewSecurity(a, "test", nil)
	}})
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, f.url+"/mcp", strings.NewReader(init))
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sid := resp.Header.Get(mcpserver.HeaderKeySessionID)
	if sid == "" {
		t.Fatal("no legacy session opened")
	}
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	if resp := postMCP(t, f.url, "bob", sid, ping); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bob with alice's session: status %d, want 404", resp.StatusCode)
	}
	got := securityRecords(f.audit.records(), audit.EventSessionOtherPrincipal)
	if len(got) != 1 || got[0].Subject != "bob" || got[0].Session != sid || got[0].Decision != audit.DecisionDeny {
		t.Fatalf("session records %+v", got)
	}
}
