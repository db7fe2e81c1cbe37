package telemetry

import "go.opentelemetry.io/otel/attribute"

// Span attribute keys. The mcp.* and gen_ai.* names follow the OpenTelemetry
// GenAI/MCP semantic conventions (moved out of core semconv in v1.42, so
// declared here); enduser.id, user.id and error.type are core registry
// attributes; harness.* are the gateway's own.
const (
	// AttrMCPMethodName is the JSON-RPC method, e.g. "tools/call".
	AttrMCPMethodName = attribute.Key("mcp.method.name")
	// AttrMCPSessionID is the legacy MCP session id (2025-era protocol only).
	AttrMCPSessionID = attribute.Key("mcp.session.id")
	// AttrMCPProtocolVersion is the MCP protocol version of the request.
	AttrMCPProtocolVersion = attribute.Key("mcp.protocol.version")
	// AttrJSONRPCRequestID is the JSON-RPC request id.
	AttrJSONRPCRequestID = attribute.Key("jsonrpc.request.id")
	// AttrGenAIToolName is the tool name.
	AttrGenAIToolName = attribute.Key("gen_ai.tool.name")
	// AttrGenAIOperationName is the operation; OperationExecuteTool for tools/call.
	AttrGenAIOperationName = attribute.Key("gen_ai.operation.name")
	// AttrGenAIAgentID is the agent acting for the human.
	AttrGenAIAgentID = attribute.Key("gen_ai.agent.id")
	// AttrEndUserID is the human (subject) on whose behalf the call runs.
	AttrEndUserID = attribute.Key("enduser.id")
	// AttrUserID is the human's user id (same value as AttrEndUserID).
	AttrUserID = attribute.Key("user.id")
	// AttrErrorType classifies a failure; set it when a tool result is an error.
	AttrErrorType = attribute.Key("error.type")
	// AttrHarnessDecision is allow, deny, rate_limited or error.
	AttrHarnessDecision = attribute.Key("harness.decision")
	// AttrHarnessReason is the policy's (or the failure's) reason.
	AttrHarnessReason = attribute.Key("harness.reason")
	// AttrHarnessPolicyDecisionID links the span to the policy decision and
	// the audit record.
	AttrHarnessPolicyDecisionID = attribute.Key("harness.policy.decision_id")
	// AttrHarnessUpstream is the upstream a tool belongs to.
	AttrHarnessUpstream = attribute.Key("harness.upstream")
)

// Well-known attribute values.
const (
	// MethodToolsCall is the mcp.method.name of a tool call.
	MethodToolsCall = "tools/call"
	// MethodToolsList is the mcp.method.name of a tool listing.
	MethodToolsList = "tools/list"
	// OperationExecuteTool is the gen_ai.operation.name of a tool call.
	OperationExecuteTool = "execute_tool"
)

// Stage names for RecordStage.
const (
	StageAuthn     = "authn"
	StagePolicy    = "policy"
	StageRateLimit = "ratelimit"
	StageUpstream  = "upstream"
	StageRedact    = "redact"
	StageAudit     = "audit"
	StageTotal     = "total"
)
