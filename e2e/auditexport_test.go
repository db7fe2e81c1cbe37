package e2e

// Security events and OTLP log export through the real binary.

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"
)

// expLogCollector is an OTLP/HTTP logs receiver.
type expLogCollector struct {
	mu   sync.Mutex
	recs []*logspb.LogRecord
}

func expStartLogCollector(t *testing.T) (*expLogCollector, string) {
	t.Helper()
	c := &expLogCollector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req collogspb.ExportLogsServiceRequest
		if r.URL.Path != "/v1/logs" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				c.recs = append(c.recs, sl.GetLogRecords()...)
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func expAttrs(r *logspb.LogRecord) map[string]string {
	m := map[string]string{}
	for _, kv := range r.GetAttributes() {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

func expBearer(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAuditSecurityEventsExported: a flood of refused tokens is one record
// per reason and minute (flushed at shutdown at the latest), and every
// record reaches an OTLP collector with its attributes.
func TestAuditSecurityEventsExported(t *testing.T) {
	col, colURL := expStartLogCollector(t)
	st := startAuditStack(t, "  export:\n    otlp_endpoint: "+colURL+"\n")
	for range 200 {
		if code := expBearer(t, st.gw.URL, "forged-token"); code != http.StatusUnauthorized {
			t.Fatalf("forged token: status %d", code)
		}
	}
	c := connect(t, st.gw.URL, st.tokens["carol"], eras[0])
	callTool(t, c, "crm_delete_ticket", map[string]any{"ticket_id": "T-1"})
	st.gw.stop()

	var refused []audLine
	for _, l := range audRead(t, st.gw.AuditPath) {
		if l.str("kind") == "security" && l.str("event") == "token_refused" {
			refused = append(refused, l)
		}
		if strings.Contains(l.raw, "forged-token") {
			t.Fatalf("a token entered the trail: %s", l.raw)
		}
	}
	if len(refused) != 1 || refused[0].num("count") != 200 || refused[0].str("client_ip") != "127.0.0.1" {
		t.Fatalf("token_refused records %s, want one with count 200", audRawLines(refused))
	}
	lines := audRead(t, st.gw.AuditPath)
	col.mu.Lock()
	defer col.mu.Unlock()
	byHash := map[string]map[string]string{}
	for _, r := range col.recs {
		a := expAttrs(r)
		byHash[a["hash"]] = a
	}
	// Every record after the start record was exported, with its attributes.
	for _, l := range lines[1:] {
		a, ok := byHash[l.str("hash")]
		if !ok {
			t.Errorf("record %s (%s) not exported", l.str("id"), l.str("kind"))
			continue
		}
		if a["id"] != l.str("id") || a["subject"] != l.str("subject") || a["decision"] != l.str("decision") || a["tool"] != l.str("tool") {
			t.Errorf("exported attributes %v for %s", a, l.raw)
		}
	}
}

// TestAuditExportCollectorDownDoesNotBlockCalls: the collector is a black
// hole; calls succeed and /readyz ends up reporting the export.
func TestAuditExportCollectorDownDoesNotBlockCalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	st := startAuditStack(t, "  export:\n    otlp_endpoint: http://"+ln.Addr().String()+"\n")
	c := connect(t, st.gw.URL, st.tokens["bob"], eras[0])
	for i := range 5 {
		if res := callTool(t, c, "probe_echo", map[string]any{"q": "x"}); res.IsError {
			t.Fatalf("call %d with the collector down: %s", i, resultText(res))
		}
	}
	if n := len(audCalls(audWaitCalls(t, st.gw.AuditPath, 5))); n != 5 {
		t.Fatalf("%d call records, want 5", n)
	}
}
