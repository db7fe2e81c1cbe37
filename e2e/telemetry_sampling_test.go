package e2e

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client/transport"
)

// TestTelemetryUnsampledCallerNoSpans: with OTLP export on, the calls of a
// caller whose traceparent says "not sampled" produce no span at all (the
// gateway skips otelhttp and the call and stage spans), yet the caller's
// trace id still reaches the upstream in traceparent and the audit record's
// trace_id, in both eras; a sampled caller's call in the same run is
// exported as before.
func TestTelemetryUnsampledCallerNoSpans(t *testing.T) {
	const unsampled, sampled = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"
	col := audStartCollector(t)
	st := startAuditStack(t, fmt.Sprintf("telemetry:\n  otlp_endpoint: %q\n", col.srv.URL))
	headers := func(trace, flags string) transport.StreamableHTTPCOption {
		return transport.WithHTTPHeaders(map[string]string{
			"Authorization": "Bearer " + st.tokens["bob"],
			"traceparent":   "00-" + trace + "-00f067aa0ba902b7-" + flags,
		})
	}
	for _, e := range eras {
		c := connect(t, st.gw.URL, st.tokens["bob"], e, headers(unsampled, "00"))
		if res := callTool(t, c, "probe_echo", map[string]any{"q": "quiet-" + e.name}); res.IsError {
			t.Fatalf("%s: probe_echo: %s", e.name, resultText(res))
		}
	}
	traced := connect(t, st.gw.URL, st.tokens["bob"], eras[0], headers(sampled, "01"))
	if res := callTool(t, traced, "probe_echo", map[string]any{"q": "traced"}); res.IsError {
		t.Fatalf("sampled probe_echo: %s", resultText(res))
	}
	lines := audWaitCalls(t, st.gw.AuditPath, 3)
	st.gw.stop() // SIGTERM flushes the span batch

	calls := audCalls(lines)
	if len(calls) != 3 {
		t.Fatalf("%d call records, want 3:\n%s", len(calls), audRawLines(lines))
	}
	for i, want := range []string{unsampled, unsampled, sampled} {
		if got := calls[i].str("trace_id"); got != want {
			t.Errorf("audit record %d: trace_id %q, want the caller's %s", i+1, got, want)
		}
	}
	tps := st.probe.traceparents("/echo")
	if len(tps) != 3 {
		t.Fatalf("the upstream got traceparents %q, want 3", tps)
	}
	for i, tp := range tps[:2] {
		if audTraceID(tp) != unsampled || !strings.HasSuffix(tp, "-00") {
			t.Errorf("unsampled call %d: the upstream got traceparent %q, want trace %s, unsampled", i+1, tp, unsampled)
		}
	}
	if audTraceID(tps[2]) != sampled {
		t.Errorf("sampled call: the upstream got traceparent %q", tps[2])
	}

	var sampledNames []string
	for _, s := range col.all() {
		switch hex.EncodeToString(s.GetTraceId()) {
		case unsampled:
			t.Errorf("span %q exported for the unsampled caller", s.GetName())
		case sampled:
			sampledNames = append(sampledNames, s.GetName())
		}
	}
	for _, want := range []string{"tools/call probe_echo", "policy", "upstream", "audit"} {
		if !strings.Contains(strings.Join(sampledNames, "\n")+"\n", want+"\n") {
			t.Errorf("the sampled call's spans %v lack %q", sampledNames, want)
		}
	}
}
