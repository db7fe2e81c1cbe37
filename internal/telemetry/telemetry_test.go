package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// fakeCollector is an OTLP/HTTP trace receiver.
type fakeCollector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	res   []*commonpb.KeyValue
	paths []string
}

func newFakeCollector(t *testing.T) *fakeCollector {
	t.Helper()
	c := &fakeCollector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.paths = append(c.paths, r.Method+" "+r.URL.Path)
		c.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			c.res = append(c.res, rs.GetResource().GetAttributes()...)
			for _, ss := range rs.GetScopeSpans() {
				c.spans = append(c.spans, ss.GetSpans()...)
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
		}
	}
	return m
}

func clearOTLPEnv(tb testing.TB) {
	tb.Helper()
	tb.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	tb.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
}

// newLocalTelemetry sets up telemetry with no exporter (the OTLP variables
// cleared), shut down when the test ends.
func newLocalTelemetry(tb testing.TB) *Telemetry {
	tb.Helper()
	clearOTLPEnv(tb)
	tel, err := Setup(context.Background(), Config{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

func TestSetupExportsSpans(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(url string) Config
		env   func(t *testing.T, url string)
		wantN string
	}{
		{"endpoint in config", func(url string) Config {
			return Config{OTLPEndpoint: url, ServiceName: "harness-test", ServiceVersion: "1.2.3", Environment: "ci"}
		}, nil, "harness-test"},
		{"endpoint in config with a trailing slash", func(url string) Config {
			return Config{OTLPEndpoint: url + "/", Environment: "ci"}
		}, nil, "harness"},
		{"standard environment variable", func(string) Config { return Config{Environment: "ci"} },
			func(t *testing.T, url string) { t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url) }, "harness"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTLPEnv(t)
			c := newFakeCollector(t)
			if tt.env != nil {
				tt.env(t, c.srv.URL)
			}
			tel, err := Setup(context.Background(), tt.cfg(c.srv.URL), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !tel.Exporting() {
				t.Fatal("Exporting() = false with an endpoint")
			}
			_, span := tel.StartToolCall(context.Background(), "crm_get_customer",
				AttrEndUserID.String("alice"), AttrGenAIAgentID.String("copilot"),
				AttrMCPProtocolVersion.String("2026-07-28"), AttrHarnessPolicyDecisionID.String("d-42"))
			span.SetAttributes(AttrHarnessDecision.String("allow"))
			traceID := span.SpanContext().TraceID().String()
			span.End()
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.spans) != 1 {
				t.Fatalf("collector got %d spans (requests %v), want 1", len(c.spans), c.paths)
			}
			s := c.spans[0]
			if s.GetName() != "tools/call crm_get_customer" {
				t.Errorf("span name = %q", s.GetName())
			}
			if got := trace.TraceID(s.GetTraceId()).String(); got != traceID {
				t.Errorf("trace id = %s, want %s", got, traceID)
			}
			got := attrMap(s.GetAttributes())
			want := map[string]string{
				"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
				"gen_ai.tool.name": "crm_get_customer", "enduser.id": "alice", "gen_ai.agent.id": "copilot",
				"mcp.protocol.version": "2026-07-28", "harness.policy.decision_id": "d-42", "harness.decision": "allow",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("attribute %s = %q, want %q", k, got[k], v)
				}
			}
			res := attrMap(c.res)
			if res["service.name"] != tt.wantN || res["deployment.environment.name"] != "ci" {
				t.Errorf("resource = %v", res)
			}
		})
	}
}

func TestSetupWithoutEndpoint(t *testing.T) {
	clearOTLPEnv(t)
	tel, err := Setup(context.Background(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tel.Exporting() {
		t.Error("Exporting() = true without an endpoint")
	}
	ctx, span := tel.Tracer().Start(context.Background(), "x")
	if span.IsRecording() {
		t.Error("span is recording without an exporter")
	}
	if !trace.SpanContextFromContext(ctx).HasTraceID() {
		t.Error("span has no trace id; audit records could not be correlated")
	}
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestSetupRejectsBadEndpoint(t *testing.T) {
	clearOTLPEnv(t)
	for _, ep := range []string{"ftp://x", "http://", "http://u:p@host:4318", "https://host/?q=1"} {
		t.Run(ep, func(t *testing.T) {
			if tel, err := Setup(context.Background(), Config{OTLPEndpoint: ep}, nil); err == nil {
				_ = tel.Shutdown(context.Background())
				t.Errorf("Setup(%q) succeeded", ep)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in       string
		host     string
		path     string
		insecure bool
	}{
		{"http://127.0.0.1:4318", "127.0.0.1:4318", "/v1/traces", true},
		{"https://otel.example.com", "otel.example.com", "/v1/traces", false},
		{"https://otel.example.com/otlp/", "otel.example.com", "/otlp/v1/traces", false},
		{"http://c:4318/v1/traces", "c:4318", "/v1/traces", true},
		{"localhost:4318", "localhost:4318", "/v1/traces", true},
		{"[::1]:4318", "[::1]:4318", "/v1/traces", true},
		{"collector.internal:4318", "collector.internal:4318", "/v1/traces", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			host, path, insecure, err := parseEndpoint(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if host != tt.host || path != tt.path || insecure != tt.insecure {
				t.Errorf("parseEndpoint = %q %q %v, want %q %q %v", host, path, insecure, tt.host, tt.path, tt.insecure)
			}
		})
	}
}

func scrape(t *testing.T, tel *Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics status %d", rec.Code)
	}
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	tel := newLocalTelemetry(t)
	ctx := context.Background()
	tel.RecordCall(ctx, "crm_get_customer", "allow", 12*time.Millisecond)
	tel.RecordCall(ctx, "crm_get_customer", "allow", 30*time.Millisecond)
	tel.RecordCall(ctx, "crm_issue_refund", "deny", time.Millisecond)
	tel.RecordStage(ctx, StagePolicy, 40*time.Microsecond)
	tel.RecordStage(ctx, StageUpstream, 20*time.Millisecond)
	tel.RecordRateLimited(ctx, "crm_get_customer")
	tel.RecordRedactions(ctx, map[string]int{"secret": 2, "path": 1, "none": 0})
	tel.RecordRedactions(ctx, map[string]int{"secret": 1})
	tel.RecordPolicyEval(ctx, 45*time.Microsecond)
	tel.RecordUpstream(ctx, "crm", 200)
	tel.RecordUpstream(ctx, "crm", 200)
	tel.RecordUpstream(ctx, "crm", 503)
	body := scrape(t, tel)
	for _, want := range []string{
		`harness_tool_calls_total{decision="allow",tool="crm_get_customer"} 2`,
		`harness_tool_calls_total{decision="deny",tool="crm_issue_refund"} 1`,
		`harness_tool_call_duration_seconds_count{decision="allow",tool="crm_get_customer"} 2`,
		`harness_stage_duration_seconds_bucket{stage="policy",le="0.0001"} 1`,
		`harness_stage_duration_seconds_count{stage="upstream"} 1`,
		`harness_ratelimit_limited_total{tool="crm_get_customer"} 1`,
		`harness_redactions_total{kind="secret"} 3`,
		`harness_redactions_total{kind="path"} 1`,
		`harness_policy_evaluation_duration_seconds_count 1`,
		`harness_upstream_responses_total{status="200",upstream="crm"} 2`,
		`harness_upstream_responses_total{status="503",upstream="crm"} 1`,
		`go_goroutines`,
		`target_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `kind="none"`) {
		t.Error("a zero redaction count created a series")
	}
}

func TestMetricsCardinalityIsBounded(t *testing.T) {
	tel := newLocalTelemetry(t)
	for i := range maxAttrSets + 50 {
		tel.RecordRateLimited(context.Background(), "tool_"+strconv.Itoa(i))
	}
	body := scrape(t, tel)
	if !strings.Contains(body, `harness_ratelimit_limited_total{tool="_other"} 50`) {
		t.Error("overflowing tool names were not folded into _other")
	}
	if n := strings.Count(body, "harness_ratelimit_limited_total{"); n != maxAttrSets+1 {
		t.Errorf("%d series, want %d", n, maxAttrSets+1)
	}
}

// TestMetricsOverflowKeepsDecision: once junk has used up the label budget,
// real calls still tell allowed from refused (the attack folded them all
// into {tool="_other", decision="_other"}).
func TestMetricsOverflowKeepsDecision(t *testing.T) {
	tel := newLocalTelemetry(t)
	ctx := context.Background()
	for i := range maxAttrSets + 300 {
		tel.RecordCall(ctx, "junk_"+strconv.Itoa(i), "deny", time.Millisecond)
	}
	tel.RecordCall(ctx, "crm_get_customer", "allow", time.Millisecond)
	tel.RecordCall(ctx, "crm_get_customer", "allow", time.Millisecond)
	body := scrape(t, tel)
	for _, want := range []string{
		`harness_tool_calls_total{decision="allow",tool="_other"} 2`,
		`harness_tool_calls_total{decision="deny",tool="_other"} 300`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `decision="_other"`) {
		t.Error("the decision label was folded")
	}
}

func TestHTTPClientInjectsTraceparent(t *testing.T) {
	clearOTLPEnv(t)
	for _, exporting := range []bool{false, true} {
		t.Run("exporting="+strconv.FormatBool(exporting), func(t *testing.T) {
			cfg := Config{}
			if exporting {
				cfg.OTLPEndpoint = newFakeCollector(t).srv.URL
			}
			tel, err := Setup(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
			got := make(chan string, 1)
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- r.Header.Get("traceparent")
			}))
			t.Cleanup(upstream.Close)

			ctx, span := tel.StartToolCall(context.Background(), "crm_get_customer")
			defer span.End()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, upstream.URL, nil)
			resp, err := tel.HTTPClient(nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			tp := <-got
			parts := strings.Split(tp, "-")
			if len(parts) != 4 || parts[1] != span.SpanContext().TraceID().String() {
				t.Errorf("traceparent = %q, want trace id %s", tp, span.SpanContext().TraceID())
			}
		})
	}
}

func TestHTTPHandlerContinuesTrace(t *testing.T) {
	tel := newLocalTelemetry(t)
	var seen trace.SpanContext
	h := tel.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = trace.SpanContextFromContext(r.Context())
	}), "mcp")
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if seen.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("handler saw trace %s, want the caller's", seen.TraceID())
	}
}

func TestNilTelemetry(t *testing.T) {
	var tel *Telemetry
	ctx := context.Background()
	tel.RecordCall(ctx, "t", "allow", time.Second)
	tel.RecordStage(ctx, StageTotal, time.Second)
	tel.RecordRateLimited(ctx, "t")
	tel.RecordRedactions(ctx, map[string]int{"x": 1})
	tel.RecordPolicyEval(ctx, time.Second)
	tel.RecordUpstream(ctx, "u", 200)
	_, span := tel.StartToolCall(ctx, "t", attribute.String("k", "v"))
	span.End()
	if tel.Exporting() || tel.Shutdown(ctx) != nil {
		t.Error("nil Telemetry misbehaves")
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil MetricsHandler status %d", rec.Code)
	}
	if c := tel.HTTPClient(nil); c == nil {
		t.Error("nil HTTPClient")
	}
}

func BenchmarkRecordCall(b *testing.B) {
	tel := newLocalTelemetry(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tel.RecordCall(ctx, "crm_get_customer", "allow", 12*time.Millisecond)
		tel.RecordStage(ctx, StagePolicy, 40*time.Microsecond)
	}
}

// traceRoundTrip sends one request with traceparent tp (none if empty)
// through tel.HTTPHandler; the handler starts a tool call and calls an
// upstream through tel.HTTPClient. It returns the span context the handler
// saw, whether any span was recording, whether otelhttp did its work on
// either side (its labeler in the handler's context, its wrapper around the
// upstream's response body), and the traceparent the upstream received.
func traceRoundTrip(t *testing.T, tel *Telemetry, tp string) (seen trace.SpanContext, recording, otelhttpWork bool, upstreamTP string) {
	t.Helper()
	body := io.NopCloser(strings.NewReader("ok"))
	client := tel.HTTPClient(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		upstreamTP = r.Header.Get("traceparent")
		if r.Header.Get("X-Caller") != "kept" {
			t.Error("the caller's header was lost")
		}
		return &http.Response{StatusCode: 200, Body: body, Request: r}, nil
	}))
	h := tel.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		seen = trace.SpanContextFromContext(ctx)
		recording = trace.SpanFromContext(ctx).IsRecording()
		_, otelhttpWork = otelhttp.LabelerFromContext(ctx)
		ctx, span := tel.StartToolCall(ctx, "crm_get_customer", AttrEndUserID.String("alice"))
		recording = recording || span.IsRecording()
		defer span.End()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.test/x", nil)
		req.Header.Set("X-Caller", "kept")
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		otelhttpWork = otelhttpWork || resp.Body != body
		_ = resp.Body.Close()
		if req.Header.Get("traceparent") != "" {
			t.Error("the transport wrote traceparent into the caller's request")
		}
	}), "mcp")
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	if tp != "" {
		req.Header.Set("traceparent", tp)
	}
	h.ServeHTTP(httptest.NewRecorder(), req)
	return seen, recording, otelhttpWork, upstreamTP
}

// TestNoSpanWorkWhenNotSampled: with export on, a request whose caller's
// trace is not sampled gets no span (no otelhttp server or client span, no
// tool-call span), yet its trace context still reaches the handler and the
// upstream; a sampled caller's request is traced as before.
func TestNoSpanWorkWhenNotSampled(t *testing.T) {
	clearOTLPEnv(t)
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	c := newFakeCollector(t)
	tel, err := Setup(context.Background(), Config{OTLPEndpoint: c.srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	seen, recording, work, up := traceRoundTrip(t, tel, unsampled)
	if recording || work {
		t.Errorf("span work for an unsampled caller: recording %v, otelhttp %v", recording, work)
	}
	if seen.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("handler saw trace %s, want the caller's", seen.TraceID())
	}
	if parts := strings.Split(up, "-"); len(parts) != 4 || parts[1] != "4bf92f3577b34da6a3ce929d0e0e4736" || parts[3] != "00" {
		t.Errorf("upstream traceparent %q, want the caller's trace, unsampled", up)
	}
	const sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	seen, recording, work, up = traceRoundTrip(t, tel, sampled)
	if !recording || !work {
		t.Errorf("a sampled caller's request was not traced: recording %v, otelhttp %v", recording, work)
	}
	if parts := strings.Split(up, "-"); len(parts) != 4 || parts[1] != seen.TraceID().String() || seen.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("upstream traceparent %q, handler trace %s", up, seen.TraceID())
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	names := map[string]bool{}
	for _, s := range c.spans {
		if trace.TraceID(s.GetTraceId()).String() != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("span %q of trace %x exported; only the sampled trace may be", s.GetName(), s.GetTraceId())
		}
		names[s.GetName()] = true
	}
	if !names["tools/call crm_get_customer"] || len(c.spans) != 3 {
		t.Errorf("exported spans %v (%d), want the server, tool call and client spans", names, len(c.spans))
	}
}

// TestNoExportStillAssignsTraceIDs: without an endpoint nothing is traced,
// but every request still gets a trace id (a fresh one per request when the
// caller sent none) that reaches the upstream, so audit records and
// upstream logs can be correlated; a caller's trace id is kept.
func TestNoExportStillAssignsTraceIDs(t *testing.T) {
	tel := newLocalTelemetry(t)
	ids := map[string]bool{}
	for range 3 {
		seen, recording, work, up := traceRoundTrip(t, tel, "")
		if recording || work {
			t.Errorf("span work without an exporter: recording %v, otelhttp %v", recording, work)
		}
		if !seen.IsValid() || ids[seen.TraceID().String()] {
			t.Errorf("trace id %s missing or repeated", seen.TraceID())
		}
		ids[seen.TraceID().String()] = true
		if parts := strings.Split(up, "-"); len(parts) != 4 || parts[1] != seen.TraceID().String() {
			t.Errorf("upstream traceparent %q, want trace id %s", up, seen.TraceID())
		}
	}
	seen, _, _, up := traceRoundTrip(t, tel, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if seen.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !strings.Contains(up, "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("caller's trace not continued: handler %s, upstream %q", seen.TraceID(), up)
	}
}

func TestRecordingFollowsTheSampler(t *testing.T) {
	sampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true}))
	unsampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true}))
	for _, tt := range []struct {
		env                          string
		root, sampled, unsampledWant bool
	}{
		{"", true, true, false},
		{"parentbased_traceidratio", true, true, false},
		{"PARENTBASED_ALWAYS_OFF", true, true, false},
		{"no_such_sampler", true, true, false}, // the SDK falls back to its default
		{"always_on", true, true, true},
		{"traceidratio", true, true, true},
		{"always_off", false, false, false},
	} {
		sampling, parentBased := samplerKind(tt.env)
		tel := &Telemetry{sampling: sampling, parentBased: parentBased}
		if got := tel.Recording(context.Background()); got != tt.root {
			t.Errorf("%q: root Recording = %v", tt.env, got)
		}
		if got := tel.Recording(sampledParent); got != tt.sampled {
			t.Errorf("%q: under a sampled parent Recording = %v", tt.env, got)
		}
		if got := tel.Recording(unsampledParent); got != tt.unsampledWant {
			t.Errorf("%q: under an unsampled parent Recording = %v", tt.env, got)
		}
	}
	var none *Telemetry
	if none.Recording(sampledParent) {
		t.Error("nil Telemetry records")
	}
	noExport := &Telemetry{}
	if noExport.Recording(sampledParent) || noExport.Recording(context.Background()) {
		t.Error("Recording without an exporter")
	}
}

// BenchmarkUntracedRequest is one request through HTTPHandler with a tool
// call span and an upstream call through HTTPClient (to a no-op
// RoundTripper), with no exporter: the work the gateway adds per call for
// tracing when nothing is sampled.
func BenchmarkUntracedRequest(b *testing.B) {
	tel := newLocalTelemetry(b)
	client := tel.HTTPClient(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	}))
	h := tel.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tel.StartToolCall(r.Context(), "crm_get_customer")
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream/x", nil)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
		span.End()
	}), "mcp")
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
