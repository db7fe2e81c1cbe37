// Package telemetry sets up OpenTelemetry for the gateway: traces exported
// over OTLP/HTTP when an endpoint is configured, metrics exposed in the
// Prometheus format on a private registry, W3C trace-context propagation,
// and the attribute keys the gateway puts on its spans.
//
// Nothing here touches the OpenTelemetry globals unless InstallGlobal is
// called; the HTTP helpers on *Telemetry use its own providers.
package telemetry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// instrumentationName names the gateway's tracer and meter.
const instrumentationName = "github.com/agentharness/harness"

var (
	noopProvider      trace.TracerProvider = tracenoop.NewTracerProvider()
	nooptracer                             = noopProvider.Tracer(instrumentationName)
	noopMeterProvider metric.MeterProvider = metricnoop.NewMeterProvider()
)

// Config configures Setup.
type Config struct {
	// OTLPEndpoint is the base URL of an OTLP/HTTP collector, e.g.
	// http://127.0.0.1:4318 (traces go to <endpoint>/v1/traces unless the
	// URL already ends in /v1/traces). Without a scheme, http is used for
	// loopback hosts and https otherwise. Empty: the standard
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT
	// variables are used if set, otherwise nothing is exported.
	OTLPEndpoint string
	// ServiceName is service.name (default "harness").
	ServiceName string
	// ServiceVersion is service.version.
	ServiceVersion string
	// Environment is deployment.environment.name.
	Environment string
}

// Telemetry holds the tracer and meter providers and the gateway's
// instruments. A nil *Telemetry is valid: its Record methods do nothing and
// Tracer returns a no-op tracer, which keeps tests of other packages simple.
type Telemetry struct {
	logger    *slog.Logger
	tp        *sdktrace.TracerProvider
	exporting bool
	// sampling: spans can be sampled at all (exporting, and the sampler is
	// not always_off). parentBased: the sampler follows the parent's
	// sampled flag (the default, and every parentbased_* sampler), so a
	// child of an unsampled span is never sampled.
	sampling    bool
	parentBased bool
	mp          *sdkmetric.MeterProvider
	registry    *prometheus.Registry
	metrics     http.Handler
	propagator  propagation.TextMapPropagator
	tracer      trace.Tracer

	calls        metric.Int64Counter
	callDuration metric.Float64Histogram
	stage        metric.Float64Histogram
	limited      metric.Int64Counter
	redactions   metric.Int64Counter
	policy       metric.Float64Histogram
	upstream     metric.Int64Counter
	withheld     metric.Int64Gauge

	callAttrs     attrCache[[2]string]
	stageAttrs    attrCache[string]
	toolAttrs     attrCache[string]
	kindAttrs     attrCache[string]
	upstreamAttrs attrCache[upstreamKey]

	shutdownOnce sync.Once
	shutdownErr  error
}

type upstreamKey struct {
	upstream string
	status   int
}

// durationBuckets are the histogram bounds in seconds: 100µs to 30s.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Setup builds the providers. With an endpoint (from cfg or the standard
// environment variables) spans are batched and exported over OTLP/HTTP;
// otherwise spans are not recorded or exported, but still get trace ids
// (so audit records and logs can be correlated) and incoming trace context
// is still propagated. Metrics are always collected for MetricsHandler.
// Call Shutdown to flush.
func Setup(ctx context.Context, cfg Config, logger *slog.Logger) (*Telemetry, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "harness"
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(cfg.ServiceName)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	if cfg.Environment != "" {
		attrs = append(attrs, semconv.DeploymentEnvironmentNameKey.String(cfg.Environment))
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, attrs...))
	if err != nil {
		return nil, fmt.Errorf("building telemetry resource: %w", err)
	}

	t := &Telemetry{
		logger:     logger,
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}

	opts, exporting, err := exporterOptions(cfg.OTLPEndpoint)
	if err != nil {
		return nil, fmt.Errorf("setting up tracing: %w", err)
	}
	if exporting {
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("creating the otlp trace exporter: %w", err)
		}
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.exporting = true
		t.sampling, t.parentBased = samplerKind(os.Getenv("OTEL_TRACES_SAMPLER"))
		logger.InfoContext(ctx, "exporting traces over otlp/http")
	} else {
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithResource(res))
	}
	t.tracer = t.tp.Tracer(instrumentationName, trace.WithInstrumentationVersion(cfg.ServiceVersion))

	t.registry = prometheus.NewRegistry()
	t.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo())
	if err != nil {
		_ = t.tp.Shutdown(ctx)
		return nil, fmt.Errorf("creating the prometheus exporter: %w", err)
	}
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(promExp), sdkmetric.WithResource(res))
	t.metrics = promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
	if err := t.instruments(); err != nil {
		_ = t.Shutdown(ctx)
		return nil, fmt.Errorf("creating metric instruments: %w", err)
	}
	return t, nil
}

// samplerKind classifies the sampler the SDK builds from
// OTEL_TRACES_SAMPLER (an empty or unknown value means its default,
// parentbased_always_on): whether anything can be sampled, and whether the
// parent's sampled flag decides for children.
func samplerKind(env string) (sampling, parentBased bool) {
	switch strings.ToLower(strings.TrimSpace(env)) {
	case "always_off":
		return false, false
	case "always_on", "traceidratio":
		return true, false
	default:
		return true, true
	}
}

// exporterOptions resolves the OTLP endpoint: cfg first, then the standard
// environment variables (left to otlptracehttp to read).
func exporterOptions(endpoint string) ([]otlptracehttp.Option, bool, error) {
	if endpoint == "" {
		env := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
		return nil, env, nil
	}
	host, path, insecure, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, false, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(host), otlptracehttp.WithURLPath(path)}
	if insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	return opts, true, nil
}

// parseEndpoint turns an OTLP base URL into host, traces path and whether to
// use plain http.
func parseEndpoint(raw string) (host, path string, insecure bool, err error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		h := s
		if i := strings.IndexByte(h, '/'); i >= 0 {
			h = h[:i]
		}
		scheme := "https://"
		if isLoopback(h) {
			scheme = "http://"
		}
		s = scheme + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", false, fmt.Errorf("otlp endpoint %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", false, fmt.Errorf("otlp endpoint %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return "", "", false, fmt.Errorf("otlp endpoint %q: no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", false, fmt.Errorf("otlp endpoint %q: credentials, query and fragment are not allowed", raw)
	}
	path = u.Path
	if !strings.HasSuffix(path, "/v1/traces") {
		path = strings.TrimSuffix(path, "/") + "/v1/traces"
	}
	return u.Host, path, u.Scheme == "http", nil
}

func isLoopback(hostport string) bool {
	h := hostport
	if sh, _, err := net.SplitHostPort(hostport); err == nil {
		h = sh
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Exporting reports whether spans are exported over OTLP.
func (t *Telemetry) Exporting() bool { return t != nil && t.exporting }

// Recording reports whether a span started under ctx could be sampled, so
// that span work (otelhttp's wrappers, the stage spans, the attributes of
// the call span) is done only then. It is false when nothing is exported,
// and, with a parent-based sampler, under a span that is not recording or
// a remote parent whose sampled flag is off. A context with no span is a
// root: the sampler decides, so it is true when exporting.
func (t *Telemetry) Recording(ctx context.Context) bool {
	if t == nil || !t.sampling {
		return false
	}
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		return true
	}
	sc := span.SpanContext()
	if !sc.IsValid() || !t.parentBased {
		return true
	}
	return sc.IsSampled()
}

// withTraceID returns ctx if it carries a span context, otherwise ctx with
// a new, unsampled span context: a call that is not traced still gets a
// trace id, for its audit record, its logs and the upstream's traceparent.
func withTraceID(ctx context.Context) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	var cfg trace.SpanContextConfig
	for !cfg.TraceID.IsValid() || !cfg.SpanID.IsValid() {
		binary.BigEndian.PutUint64(cfg.TraceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(cfg.TraceID[8:], rand.Uint64())
		binary.BigEndian.PutUint64(cfg.SpanID[:], rand.Uint64())
	}
	return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(cfg))
}

// Tracer returns the gateway's tracer.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return nooptracer
	}
	return t.tracer
}

// TracerProvider returns the tracer provider (for libraries that take one).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return noopProvider
	}
	return t.tp
}

// MeterProvider returns the meter provider (for libraries that take one).
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil {
		return noopMeterProvider
	}
	return t.mp
}

// Propagator returns the W3C TraceContext + Baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return t.propagator
}

// InstallGlobal makes t's providers and propagator the OpenTelemetry
// globals, for libraries that only use those, and routes OpenTelemetry's
// internal errors (such as failed exports) to t's logger.
func (t *Telemetry) InstallGlobal() {
	if t == nil {
		return
	}
	otel.SetTracerProvider(t.tp)
	otel.SetMeterProvider(t.mp)
	otel.SetTextMapPropagator(t.propagator)
	logger := t.logger
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry", "error", err)
	}))
}

// MetricsHandler serves the metrics in the Prometheus exposition format
// (for /metrics), from a private registry: the gateway's instruments plus
// Go runtime and process metrics.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return t.metrics
}

// Shutdown flushes pending spans and stops the providers. An unreachable
// collector can make it wait (the exporter retries), so give ctx a deadline.
// It is safe to call more than once; later calls return the first result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tracer provider: %w", err))
		}
		if t.mp != nil {
			if err := t.mp.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("meter provider: %w", err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			t.shutdownErr = fmt.Errorf("shutting down telemetry: %w", err)
		}
	})
	return t.shutdownErr
}

// HTTPClient returns a client whose transport (base, or
// http.DefaultTransport when nil) injects traceparent/tracestate/baggage
// into every request, and creates a client span (otelhttp) when the
// request's context may be sampled (see Recording); otherwise it only
// injects the headers, with none of otelhttp's work.
func (t *Telemetry) HTTPClient(base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Transport: &transport{
		t: t, base: base, traced: otelhttp.NewTransport(base, t.httpOptions()...), prop: t.Propagator(),
	}}
}

// transport is HTTPClient's RoundTripper.
type transport struct {
	t      *Telemetry
	base   http.RoundTripper
	traced http.RoundTripper
	prop   propagation.TextMapPropagator
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if tr.t.Recording(ctx) {
		return tr.traced.RoundTrip(req)
	}
	// A RoundTripper must not modify the request: inject into a copy
	// whose header map is its own.
	r := new(http.Request)
	*r = *req
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = make(http.Header, 2)
	}
	tr.prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return tr.base.RoundTrip(r)
}

// CloseIdleConnections closes the base transport's idle connections.
func (tr *transport) CloseIdleConnections() {
	if c, ok := tr.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// HTTPHandler wraps h so that each request continues the caller's trace
// context (traceparent, tracestate, baggage). When the request may be
// sampled (see Recording) it gets a server span named op (otelhttp);
// otherwise h runs under the caller's span context, or a new unsampled
// one with a fresh trace id, with none of otelhttp's work.
func (t *Telemetry) HTTPHandler(h http.Handler, op string) http.Handler {
	traced := otelhttp.NewHandler(h, op, t.httpOptions()...)
	prop := t.Propagator()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		if t.Recording(ctx) {
			traced.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r.WithContext(withTraceID(ctx)))
	})
}

// httpOptions configure otelhttp for traced requests. otelhttp's own HTTP
// metrics are not recorded (a no-op meter): they would exist only for
// sampled requests; the gateway's harness_* metrics cover every call.
func (t *Telemetry) httpOptions() []otelhttp.Option {
	return []otelhttp.Option{
		otelhttp.WithTracerProvider(t.TracerProvider()),
		otelhttp.WithMeterProvider(noopMeterProvider),
		otelhttp.WithPropagators(t.Propagator()),
	}
}

// HTTPClient is Telemetry.HTTPClient with the OpenTelemetry globals (see
// InstallGlobal).
func HTTPClient(base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{Transport: otelhttp.NewTransport(base)}
}

// HTTPHandler is Telemetry.HTTPHandler with the OpenTelemetry globals (see
// InstallGlobal).
func HTTPHandler(h http.Handler, op string) http.Handler {
	return otelhttp.NewHandler(h, op)
}
