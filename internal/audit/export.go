package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of the OTLP log export.
const (
	DefaultExportQueue   = 4096
	DefaultExportBatch   = 512
	DefaultExportTimeout = 10 * time.Second
	exportInterval       = time.Second
	// dropWindow is how long /readyz reports a drop.
	dropWindow = time.Minute
)

// ExportConfig configures NewExporter.
type ExportConfig struct {
	// Endpoint is the OTLP/HTTP endpoint (http(s)://host:port, logs go to
	// /v1/logs unless the URL has a path).
	Endpoint string
	// Queue bounds the records waiting for export; default DefaultExportQueue.
	Queue int
	// Timeout bounds one export request; default DefaultExportTimeout.
	Timeout     time.Duration
	ServiceName string
	Environment string
	Logger      *slog.Logger
	// Exporter replaces the OTLP/HTTP exporter (tests).
	Exporter sdklog.Exporter
}

// Exporter sends every audit record as an OpenTelemetry log record, so any
// collector can forward the trail to a SIEM. Export never blocks a call:
// records wait in a bounded queue; when it is full they are dropped,
// counted, logged and reported by Ready. An export that fails is counted
// the same way (the file stays the record of truth).
type Exporter struct {
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	proc     *exportProcessor
}

// NewExporter starts the export.
func NewExporter(ctx context.Context, cfg ExportConfig) (*Exporter, error) {
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultExportQueue
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultExportTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	exp := cfg.Exporter
	if exp == nil {
		var err error
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("audit export: endpoint %q is not a URL", cfg.Endpoint)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/logs"
		}
		exp, err = otlploghttp.New(ctx, otlploghttp.WithEndpointURL(u.String()), otlploghttp.WithTimeout(cfg.Timeout),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
		if err != nil {
			return nil, fmt.Errorf("audit export: %w", err)
		}
	}
	p := &exportProcessor{exp: exp, q: make(chan sdklog.Record, cfg.Queue), timeout: cfg.Timeout, log: cfg.Logger,
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName), attribute.String("deployment.environment.name", cfg.Environment)))
	if err != nil {
		res = resource.Default()
	}
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(p))
	go p.run()
	return &Exporter{provider: provider, logger: provider.Logger("github.com/agentharness/harness/audit"), proc: p}, nil
}

// Export queues r (already written: Seq and Hash set). It never blocks.
func (e *Exporter) Export(ctx context.Context, r *Record) {
	var rec otellog.Record
	rec.SetTimestamp(r.Time)
	rec.SetObservedTimestamp(time.Now())
	rec.SetEventName("harness.audit")
	rec.SetSeverity(otellog.SeverityInfo)
	if r.Decision == DecisionDeny || r.Decision == DecisionError || r.Kind == KindSecurity {
		rec.SetSeverity(otellog.SeverityWarn)
	}
	rec.SetBody(attribute.StringValue(Format(r)))
	kv := []attribute.KeyValue{
		attribute.String("id", r.ID), attribute.Int64("seq", int64(r.Seq)), attribute.String("hash", r.Hash), attribute.String("prev", r.Prev),
	}
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, attribute.String(k, v))
		}
	}
	add("kind", r.Kind)
	add("event", r.Event)
	add("action", r.Action)
	add("decision", r.Decision)
	add("reason", r.Reason)
	add("subject", r.Subject)
	add("email", r.Email)
	add("name", r.Name)
	add("issuer", r.Issuer)
	add("agent", r.Agent)
	add("session", r.Session)
	add("delegation", r.Delegation)
	add("tool", r.Tool)
	add("upstream", r.Upstream)
	add("client_ip", r.ClientIP)
	add("policy_decision_id", r.PolicyDecisionID)
	add("policy_revision", r.PolicyRevision)
	add("environment", r.Environment)
	add("trace_id", r.TraceID)
	if r.Status != 0 {
		kv = append(kv, attribute.Int("status", r.Status))
	}
	if r.Count != 0 {
		kv = append(kv, attribute.Int("count", r.Count))
	}
	kv = append(kv, attribute.Int("redactions", r.Redactions), attribute.Float64("duration_ms", r.DurationMS))
	rec.AddAttributes(kv...)
	ectx := context.WithoutCancel(ctx)
	if id, err := trace.TraceIDFromHex(r.TraceID); err == nil {
		ectx = trace.ContextWithSpanContext(ectx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: id, SpanID: trace.SpanID{1}}))
	}
	e.logger.Emit(ectx, rec)
}

// Dropped is how many records were not exported (queue full or export failed).
func (e *Exporter) Dropped() uint64 { return e.proc.dropped.Load() }

// Ready reports records dropped in the last minute (for /readyz).
func (e *Exporter) Ready(context.Context) error {
	last := e.proc.lastDrop.Load()
	if last == 0 || time.Since(time.Unix(0, last)) > dropWindow {
		return nil
	}
	return fmt.Errorf("audit export: %d record(s) not exported so far (queue full or collector unreachable); the audit file keeps them", e.proc.dropped.Load())
}

// Close flushes what is queued (within ctx) and stops the export.
func (e *Exporter) Close(ctx context.Context) error {
	return e.provider.Shutdown(ctx)
}

// exportProcessor is an sdklog.Processor with a bounded queue that
// counts what it drops (the SDK's batch processor drops silently).
type exportProcessor struct {
	exp      sdklog.Exporter
	q        chan sdklog.Record
	timeout  time.Duration
	log      *slog.Logger
	dropped  atomic.Uint64
	lastDrop atomic.Int64
	warned   atomic.Int64
	flush    chan chan struct{}
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

func (p *exportProcessor) drop(n int, why string, err error) {
	p.dropped.Add(uint64(n))
	now := time.Now().UnixNano()
	p.lastDrop.Store(now)
	// Log at most every 10 s, not per record.
	if last := p.warned.Load(); now-last > int64(10*time.Second) && p.warned.CompareAndSwap(last, now) {
		p.log.Warn("audit records not exported: "+why, "dropped_total", p.dropped.Load(), "error", err)
	}
}

// Enabled implements sdklog.Processor.
func (p *exportProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

// OnEmit implements sdklog.Processor: it never blocks.
func (p *exportProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	select {
	case <-p.stop:
		p.drop(1, "export stopped", nil)
		return nil
	default:
	}
	select {
	case p.q <- r.Clone():
	default:
		p.drop(1, "queue full", nil)
	}
	return nil
}

func (p *exportProcessor) run() {
	defer close(p.done)
	t := time.NewTicker(exportInterval)
	defer t.Stop()
	batch := make([]sdklog.Record, 0, DefaultExportBatch)
	send := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		err := p.exp.Export(ctx, batch)
		cancel()
		if err != nil {
			p.drop(len(batch), "export failed", err)
		}
		batch = batch[:0]
	}
	drain := func() {
		for {
			select {
			case r := <-p.q:
				batch = append(batch, r)
				if len(batch) >= DefaultExportBatch {
					send()
				}
			default:
				send()
				return
			}
		}
	}
	for {
		select {
		case r := <-p.q:
			batch = append(batch, r)
			if len(batch) >= DefaultExportBatch {
				send()
			}
		case <-t.C:
			send()
		case ack := <-p.flush:
			drain()
			close(ack)
		case <-p.stop:
			drain()
			return
		}
	}
}

// ForceFlush implements sdklog.Processor.
func (p *exportProcessor) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case p.flush <- ack:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown implements sdklog.Processor: it exports what is queued, then
// shuts the exporter down.
func (p *exportProcessor) Shutdown(ctx context.Context) error {
	p.once.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-ctx.Done():
		return errors.Join(ctx.Err(), p.exp.Shutdown(context.Background()))
	}
	return p.exp.Shutdown(ctx)
}

// ExportingLog writes to the log and, once a record is written, exports it.
type ExportingLog struct {
	*Log
	Exporter *Exporter
}

// Write implements the gateway's audit interface.
func (l *ExportingLog) Write(ctx context.Context, r *Record) error {
	if err := l.Log.Write(ctx, r); err != nil {
		return err
	}
	l.Exporter.Export(ctx, r)
	return nil
}
