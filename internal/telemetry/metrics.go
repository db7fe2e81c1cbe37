package telemetry

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Metric names (OpenTelemetry names; the Prometheus exporter turns dots into
// underscores and adds _total for counters and _seconds for durations, e.g.
// harness_tool_calls_total{tool,decision}).
const (
	MetricToolCalls        = "harness.tool.calls"
	MetricToolCallDuration = "harness.tool.call.duration"
	MetricStageDuration    = "harness.stage.duration"
	MetricRateLimited      = "harness.ratelimit.limited"
	MetricRedactions       = "harness.redactions"
	MetricPolicyDuration   = "harness.policy.evaluation.duration"
	MetricUpstreamStatus   = "harness.upstream.responses"
	MetricToolsWithheld    = "harness.tools.withheld"
)

// maxAttrSets bounds the distinct attribute sets per instrument; beyond it,
// new values are recorded under OverflowValue, so attacker-chosen tool names
// cannot grow memory or series without bound.
const maxAttrSets = 1000

// OverflowValue replaces attribute values beyond maxAttrSets.
const OverflowValue = "_other"

// UnknownTool is the tool label of every call for a name the gateway does
// not serve: agent-chosen names never get a label of their own.
const UnknownTool = "_unknown"

func (t *Telemetry) instruments() error {
	m := t.mp.Meter(instrumentationName)
	var err error
	if t.calls, err = m.Int64Counter(MetricToolCalls, metric.WithUnit("{call}"),
		metric.WithDescription("Tool calls by tool and decision.")); err != nil {
		return err
	}
	if t.callDuration, err = m.Float64Histogram(MetricToolCallDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of tool calls by tool and decision."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return err
	}
	if t.stage, err = m.Float64Histogram(MetricStageDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of each stage of a call (authn, policy, ratelimit, upstream, redact, audit, total)."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return err
	}
	if t.limited, err = m.Int64Counter(MetricRateLimited, metric.WithUnit("{call}"),
		metric.WithDescription("Calls refused by a rate limit, by tool.")); err != nil {
		return err
	}
	if t.redactions, err = m.Int64Counter(MetricRedactions, metric.WithUnit("{value}"),
		metric.WithDescription("Values redacted from tool results, by kind.")); err != nil {
		return err
	}
	if t.policy, err = m.Float64Histogram(MetricPolicyDuration, metric.WithUnit("s"),
		metric.WithDescription("Time to evaluate the policy for one decision."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return err
	}
	if t.upstream, err = m.Int64Counter(MetricUpstreamStatus, metric.WithUnit("{response}"),
		metric.WithDescription("Upstream HTTP responses by upstream and status code.")); err != nil {
		return err
	}
	if t.withheld, err = m.Int64Gauge(MetricToolsWithheld, metric.WithUnit("{tool}"),
		metric.WithDescription("Tools of upstream MCP servers withheld because their definition changed since it was approved.")); err != nil {
		return err
	}
	return nil
}

// RecordWithheld sets the number of tools withheld for a changed
// definition (pin: strict) until approved.
func (t *Telemetry) RecordWithheld(ctx context.Context, n int) {
	if t == nil {
		return
	}
	t.withheld.Record(ctx, int64(n))
}

// attrCache keeps the measurement options of each attribute combination,
// built once, so the hot path builds no attribute set and allocates no
// option slice. Beyond maxAttrSets a key gets its overflow attributes,
// which may keep part of the key (a bounded one, such as the decision) and
// are cached too.
type attrCache[K comparable] struct {
	mu       sync.RWMutex
	m        map[K]*measureOpts
	overflow map[attribute.Distinct]*measureOpts
}

// measureOpts are one attribute set as ready-made variadic arguments of
// Add and Record.
type measureOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newMeasureOpts(set attribute.Set) *measureOpts {
	opt := metric.WithAttributeSet(set)
	return &measureOpts{add: []metric.AddOption{opt}, record: []metric.RecordOption{opt}}
}

func (c *attrCache[K]) get(k K, build, overflow func(K) []attribute.KeyValue) *measureOpts {
	c.mu.RLock()
	opt, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return opt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if opt, ok := c.m[k]; ok {
		return opt
	}
	if len(c.m) >= maxAttrSets {
		set := attribute.NewSet(overflow(k)...)
		if opt, ok := c.overflow[set.Equivalent()]; ok {
			return opt
		}
		if c.overflow == nil {
			c.overflow = make(map[attribute.Distinct]*measureOpts)
		}
		opt = newMeasureOpts(set)
		c.overflow[set.Equivalent()] = opt
		return opt
	}
	if c.m == nil {
		c.m = make(map[K]*measureOpts)
	}
	opt = newMeasureOpts(attribute.NewSet(build(k)...))
	c.m[k] = opt
	return opt
}

var (
	keyTool     = attribute.Key("tool")
	keyDecision = attribute.Key("decision")
	keyStage    = attribute.Key("stage")
	keyKind     = attribute.Key("kind")
	keyUpstream = attribute.Key("upstream")
	keyStatus   = attribute.Key("status")
)

// RecordCall counts one tool call with its decision (allow, deny,
// rate_limited, error) and records its duration.
func (t *Telemetry) RecordCall(ctx context.Context, tool, decision string, d time.Duration) {
	if t == nil {
		return
	}
	opt := t.callAttrs.get([2]string{tool, decision}, func(k [2]string) []attribute.KeyValue {
		return []attribute.KeyValue{keyTool.String(k[0]), keyDecision.String(k[1])}
	}, func(k [2]string) []attribute.KeyValue {
		// The decision is a small fixed set: it is never folded, so
		// allowed and refused calls stay apart however many tools exist.
		return []attribute.KeyValue{keyTool.String(OverflowValue), keyDecision.String(k[1])}
	})
	t.calls.Add(ctx, 1, opt.add...)
	t.callDuration.Record(ctx, d.Seconds(), opt.record...)
}

// RecordStage records the duration of one stage of a call (Stage…
// constants).
func (t *Telemetry) RecordStage(ctx context.Context, stage string, d time.Duration) {
	if t == nil {
		return
	}
	opt := t.stageAttrs.get(stage, func(k string) []attribute.KeyValue {
		return []attribute.KeyValue{keyStage.String(k)}
	}, func(string) []attribute.KeyValue { return []attribute.KeyValue{keyStage.String(OverflowValue)} })
	t.stage.Record(ctx, d.Seconds(), opt.record...)
}

// RecordRateLimited counts one call refused by a rate limit.
func (t *Telemetry) RecordRateLimited(ctx context.Context, tool string) {
	if t == nil {
		return
	}
	t.limited.Add(ctx, 1, t.toolAttrs.get(tool, func(k string) []attribute.KeyValue {
		return []attribute.KeyValue{keyTool.String(k)}
	}, func(string) []attribute.KeyValue { return []attribute.KeyValue{keyTool.String(OverflowValue)} }).add...)
}

// RecordRedactions adds the redaction counts of one result, by kind
// (e.g. path, context, secret, credit_card). Non-positive counts are ignored.
func (t *Telemetry) RecordRedactions(ctx context.Context, counts map[string]int) {
	if t == nil {
		return
	}
	for kind, n := range counts {
		if n <= 0 {
			continue
		}
		t.redactions.Add(ctx, int64(n), t.kindAttrs.get(kind, func(k string) []attribute.KeyValue {
			return []attribute.KeyValue{keyKind.String(k)}
		}, func(string) []attribute.KeyValue { return []attribute.KeyValue{keyKind.String(OverflowValue)} }).add...)
	}
}

// RecordPolicyEval records the time one policy evaluation took.
func (t *Telemetry) RecordPolicyEval(ctx context.Context, d time.Duration) {
	if t == nil {
		return
	}
	t.policy.Record(ctx, d.Seconds())
}

// RecordUpstream counts one upstream HTTP response by upstream and status
// code (0 when no response was received).
func (t *Telemetry) RecordUpstream(ctx context.Context, upstream string, status int) {
	if t == nil {
		return
	}
	t.upstream.Add(ctx, 1, t.upstreamAttrs.get(upstreamKey{upstream, status}, func(k upstreamKey) []attribute.KeyValue {
		return []attribute.KeyValue{keyUpstream.String(k.upstream), keyStatus.String(strconv.Itoa(k.status))}
	}, func(upstreamKey) []attribute.KeyValue {
		return []attribute.KeyValue{keyUpstream.String(OverflowValue), keyStatus.String(OverflowValue)}
	}).add...)
}

// StartToolCall starts the span of one tools/call, named "tools/call <tool>",
// with mcp.method.name, gen_ai.operation.name and gen_ai.tool.name set plus
// attrs (identity, session, protocol…). End it; on a refused or failed call
// set AttrHarnessDecision, AttrHarnessReason and AttrErrorType first.
// When the call cannot be sampled (see Recording) no span is started: the
// span returned is the non-recording one of ctx, which then always carries
// a trace id (a new one if ctx had none).
func (t *Telemetry) StartToolCall(ctx context.Context, tool string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !t.Recording(ctx) {
		ctx = withTraceID(ctx)
		return ctx, trace.SpanFromContext(ctx)
	}
	all := make([]attribute.KeyValue, 0, 3+len(attrs))
	all = append(all, AttrMCPMethodName.String(MethodToolsCall), AttrGenAIOperationName.String(OperationExecuteTool),
		AttrGenAIToolName.String(tool))
	all = append(all, attrs...)
	return t.Tracer().Start(ctx, MethodToolsCall+" "+tool, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(all...))
}
