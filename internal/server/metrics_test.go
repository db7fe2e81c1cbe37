package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/telemetry"
)

// TestUnknownToolsShareOneLabel: tool names the gateway does not serve are
// counted under one "_unknown" label, so an agent spraying made-up names
// cannot use up the label budget of the real tools (the attack: after 1300
// junk names, real calls were counted as {tool="_other"}).
func TestUnknownToolsShareOneLabel(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	f := newFixture(t, fixtureOpts{tel: tel})
	c := f.client(t, "bob")
	for i := range 25 {
		req := mcp.CallToolRequest{}
		req.Params.Name = "junk_" + strconv.Itoa(i)
		_, _ = c.CallTool(context.Background(), req) // refused by mcp-go; audited by the hook
	}
	if res := callT(t, c, "crm_get_customer", map[string]any{"id": "c-1"}); res.IsError {
		t.Fatalf("real call: %s", text(res))
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`harness_tool_calls_total{decision="deny",tool="_unknown"} 25`,
		`harness_tool_calls_total{decision="allow",tool="crm_get_customer"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `tool="junk_`) {
		t.Error("a made-up tool name got its own label")
	}
}

// BenchmarkStage is one pipeline stage's timing (histogram sample; no span
// when the call is not sampled, as without an OTLP endpoint).
func BenchmarkStage(b *testing.B) {
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	s := &Server{tel: tel}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, end := s.stage(ctx, telemetry.StagePolicy)
		end()
	}
}
