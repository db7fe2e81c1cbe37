package server

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentharness/harness/internal/telemetry"
)

// Telemetry receives the traces and measurements of the pipeline.
// *telemetry.Telemetry implements it; nil records nothing.
type Telemetry interface {
	StartToolCall(ctx context.Context, tool string, attrs ...attribute.KeyValue) (context.Context, trace.Span)
	Tracer() trace.Tracer
	// Recording reports whether a span started under ctx could be sampled;
	// when it is false no span work is done (the metrics are recorded).
	Recording(ctx context.Context) bool
	RecordCall(ctx context.Context, tool, decision string, d time.Duration)
	RecordStage(ctx context.Context, stage string, d time.Duration)
	RecordPolicyEval(ctx context.Context, d time.Duration)
	RecordRedactions(ctx context.Context, counts map[string]int)
	RecordUpstream(ctx context.Context, upstream string, status int)
	RecordRateLimited(ctx context.Context, tool string)
}

// stage times one pipeline stage as a histogram sample and, when the call
// may be sampled, a child span. The returned function ends both.
func (s *Server) stage(ctx context.Context, name string) (context.Context, func()) {
	if s.tel == nil {
		return ctx, func() {}
	}
	start := time.Now()
	if !s.tel.Recording(ctx) {
		return ctx, s.stageEnd(ctx, name, start, nil)
	}
	sctx, span := s.tel.Tracer().Start(ctx, name)
	return sctx, s.stageEnd(sctx, name, start, span)
}

// stageEnd is stage's returned function: one allocation (the closure),
// its variables captured by value.
func (s *Server) stageEnd(ctx context.Context, name string, start time.Time, span trace.Span) func() {
	return func() {
		if span != nil {
			span.End()
		}
		s.tel.RecordStage(ctx, name, time.Since(start))
	}
}

// startCall opens the span of one tool call (with no attributes to build
// when it cannot be sampled: see Telemetry.StartToolCall).
func (s *Server) startCall(ctx context.Context, c *call) context.Context {
	if s.tel == nil {
		return ctx
	}
	if !s.tel.Recording(ctx) {
		ctx, c.span = s.tel.StartToolCall(ctx, c.rec.Tool)
		return ctx
	}
	attrs := []attribute.KeyValue{
		telemetry.AttrMCPProtocolVersion.String(c.rec.Protocol),
	}
	if c.p != nil {
		attrs = append(attrs, telemetry.AttrEndUserID.String(c.p.Subject), telemetry.AttrGenAIAgentID.String(c.p.Agent))
	}
	if c.rec.Session != "" {
		attrs = append(attrs, telemetry.AttrMCPSessionID.String(c.rec.Session))
	}
	ctx, c.span = s.tel.StartToolCall(ctx, c.rec.Tool, attrs...)
	return ctx
}

// endCall records the outcome on the call's span and in the metrics.
func (s *Server) endCall(ctx context.Context, c *call, decision string, d time.Duration) {
	if s.tel == nil {
		return
	}
	if c.span != nil && c.span.IsRecording() {
		c.span.SetAttributes(
			telemetry.AttrHarnessDecision.String(decision),
			telemetry.AttrHarnessReason.String(c.rec.Reason),
			telemetry.AttrHarnessPolicyDecisionID.String(c.rec.PolicyDecisionID),
			telemetry.AttrHarnessUpstream.String(c.rec.Upstream),
		)
		if decision != decAllow || c.rec.Status >= 400 {
			errType := decision
			if decision == decAllow {
				errType = "upstream_error"
			}
			c.span.SetAttributes(telemetry.AttrErrorType.String(errType))
			c.span.SetStatus(codes.Error, c.rec.Reason)
		}
		c.span.End()
	}
	// Names the gateway does not serve are the agent's choice: they share
	// one label, so junk cannot use up the label budget of real tools.
	tool := telemetry.UnknownTool
	if c.known {
		tool = c.rec.Tool
	}
	s.tel.RecordCall(ctx, tool, decision, d)
	s.tel.RecordStage(ctx, telemetry.StageTotal, d)
	if decision == decRateLimited {
		s.tel.RecordRateLimited(ctx, tool)
	}
	if c.rec.Status != 0 {
		s.tel.RecordUpstream(ctx, c.rec.Upstream, c.rec.Status)
	}
	if len(c.rec.RedactionKinds) > 0 {
		s.tel.RecordRedactions(ctx, c.rec.RedactionKinds)
	}
}
