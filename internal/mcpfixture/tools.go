package mcpfixture

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// The content the conformance suite checks for.
const (
	// TestImage is a 1x1 PNG, base64.
	TestImage = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
	// TestAudio is a minimal WAV file, base64.
	TestAudio = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
	// SimpleText is what test_simple_text returns.
	SimpleText = "This is a simple text response for testing."
)

func text(s string) *mcp.CallToolResult { return mcp.NewToolResultText(s) }

func content(c ...mcp.Content) *mcp.CallToolResult { return &mcp.CallToolResult{Content: c} }

// pause waits d or until ctx ends, between notifications a client should see
// as separate events.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (f *Fixture) addTools() {
	s := f.Server
	none := mcp.WithDescription
	s.AddTool(mcp.NewTool("test_simple_text", none("Returns a simple text response")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return text(SimpleText), nil })
	s.AddTool(mcp.NewTool("test_image_content", none("Returns image content")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return content(mcp.NewImageContent(TestImage, "image/png")), nil
		})
	s.AddTool(mcp.NewTool("test_audio_content", none("Returns audio content")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return content(mcp.NewAudioContent(TestAudio, "audio/wav")), nil
		})
	s.AddTool(mcp.NewTool("test_embedded_resource", none("Returns an embedded text resource")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return content(mcp.NewEmbeddedResource(mcp.TextResourceContents{
				URI: "test://embedded-resource", MIMEType: "text/plain", Text: "This is an embedded resource content.",
			})), nil
		})
	s.AddTool(mcp.NewTool("test_multiple_content_types", none("Returns text, image and an embedded resource")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return content(
				mcp.NewTextContent("Multiple content types test:"),
				mcp.NewImageContent(TestImage, "image/png"),
				mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI: "test://mixed-content-resource", MIMEType: "application/json", Text: `{"test":"data","value":123}`,
				}),
			), nil
		})
	s.AddTool(mcp.NewTool("test_error_handling", none("Returns a tool error")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultError("This tool intentionally returns an error for testing"), nil
		})
	s.AddTool(mcp.NewTool("test_tool_with_logging", none("Emits three log messages while it runs")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			for i, msg := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
				if i > 0 {
					pause(ctx, 50*time.Millisecond)
				}
				if err := s.SendNotificationToClient(ctx, string(mcp.MethodNotificationMessage), map[string]any{
					"level": "info", "logger": "conformance-test-server", "data": msg,
				}); err != nil {
					return nil, err
				}
			}
			return text("Tool with logging executed successfully"), nil
		})
	s.AddTool(mcp.NewTool("test_tool_with_progress", none("Reports progress 0, 50 and 100 of 100")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var token mcp.ProgressToken
			if req.Params.Meta != nil {
				token = req.Params.Meta.ProgressToken
			}
			if token == nil {
				return text("no progress token"), nil
			}
			for i, p := range []int{0, 50, 100} {
				if i > 0 {
					pause(ctx, 50*time.Millisecond)
				}
				if err := s.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
					"progressToken": token, "progress": p, "total": 100, "message": fmt.Sprintf("Completed step %d of 100", p),
				}); err != nil {
					return nil, err
				}
			}
			return text(fmt.Sprint(token)), nil
		})
	s.AddTool(mcp.NewTool("test_sampling", none("Asks the client's LLM"),
		mcp.WithString("prompt", mcp.Description("The prompt to send to the LLM"), mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			//lint:ignore SA1019 the 2025-11-25 scenario tests exactly this server-to-client request
			res, err := s.RequestSampling(ctx, mcp.CreateMessageRequest{
				Request: mcp.Request{Method: string(mcp.MethodSamplingCreateMessage)},
				CreateMessageParams: mcp.CreateMessageParams{
					Messages:  []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(req.GetString("prompt", ""))}},
					MaxTokens: 100,
				},
			})
			if err != nil {
				return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
			}
			reply := "No response"
			if c, ok := res.Content.(mcp.TextContent); ok {
				reply = c.Text
			}
			return text("LLM response: " + reply), nil
		})
	elicit := func(ctx context.Context, message string, schema map[string]any, prefix string) (*mcp.CallToolResult, error) {
		res, err := s.RequestElicitation(ctx, mcp.ElicitationRequest{
			Request: mcp.Request{Method: string(mcp.MethodElicitationCreate)},
			Params:  mcp.ElicitationParams{Mode: "form", Message: message, RequestedSchema: schema},
		})
		if err != nil {
			return mcp.NewToolResultError("elicitation failed: " + err.Error()), nil
		}
		c, _ := json.Marshal(res.Content)
		return text(fmt.Sprintf("%s: action=%s, content=%s", prefix, res.Action, c)), nil
	}
	s.AddTool(mcp.NewTool("test_elicitation", none("Asks the user for input"),
		mcp.WithString("message", mcp.Description("The message to show the user"), mcp.Required())),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return elicit(ctx, req.GetString("message", ""), object(map[string]any{
				"response": map[string]any{"type": "string", "description": "User's response"},
			}, "response"), "User response")
		})
	s.AddTool(mcp.NewTool("test_elicitation_sep1034_defaults", none("Asks for input with a default for every primitive type")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return elicit(ctx, "Please review and update the form fields with defaults", object(map[string]any{
				"name":     map[string]any{"type": "string", "description": "User name", "default": "John Doe"},
				"age":      map[string]any{"type": "integer", "description": "User age", "default": 30},
				"score":    map[string]any{"type": "number", "description": "User score", "default": 95.5},
				"status":   map[string]any{"type": "string", "description": "User status", "enum": []string{"active", "inactive", "pending"}, "default": "active"},
				"verified": map[string]any{"type": "boolean", "description": "Verification status", "default": true},
			}), "Elicitation completed")
		})
	titled := func(kind string, titles ...string) []any {
		var out []any
		for i, t := range titles {
			out = append(out, map[string]any{"const": fmt.Sprintf("%s%d", kind, i+1), "title": t})
		}
		return out
	}
	s.AddTool(mcp.NewTool("test_elicitation_sep1330_enums", none("Asks for input with every enum schema variant")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return elicit(ctx, "Please select options from the enum fields", object(map[string]any{
				"untitledSingle": map[string]any{"type": "string", "description": "Select one option", "enum": []string{"option1", "option2", "option3"}},
				"titledSingle": map[string]any{"type": "string", "description": "Select one option with titles",
					"oneOf": titled("value", "First Option", "Second Option", "Third Option")},
				"legacyEnum": map[string]any{"type": "string", "description": "Select one option (legacy)",
					"enum": []string{"opt1", "opt2", "opt3"}, "enumNames": []string{"Option One", "Option Two", "Option Three"}},
				"untitledMulti": map[string]any{"type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
					"items": map[string]any{"type": "string", "enum": []string{"option1", "option2", "option3"}}},
				"titledMulti": map[string]any{"type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3,
					"items": map[string]any{"anyOf": titled("value", "First Choice", "Second Choice", "Third Choice")}},
			}), "Elicitation completed")
		})
	s.AddTool(mcp.NewToolWithRawSchema("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features (SEP-1613, SEP-2106)", json.RawMessage(`{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"type": "object",
		"$defs": {"address": {"$anchor": "addressDef", "type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
		"properties": {
			"name": {"type": "string"},
			"address": {"$ref": "#/$defs/address"},
			"contactMethod": {"type": "string", "enum": ["phone", "email"]},
			"phone": {"type": "string"},
			"email": {"type": "string"}
		},
		"allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
		"if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
		"then": {"required": ["phone"]},
		"else": {"required": ["email"]},
		"additionalProperties": false
	}`)),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			args, _ := json.Marshal(req.GetArguments())
			return text("JSON Schema 2020-12 tool called with: " + string(args)), nil
		})

	s.AddTool(mcp.NewToolWithRawSchema("test_header_param", "Mirrors its region argument into the Mcp-Param-Region header (SEP-2243)", json.RawMessage(`{
		"type": "object",
		"properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
		"required": ["region"]
	}`)),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return text("region: " + req.GetString("region", "")), nil
		})

	// Diagnostic tools of the 2026-07-28 stateless scenario.
	s.AddTool(mcp.NewTool("test_missing_capability", none("Needs the client's sampling capability")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if clientCaps(ctx).Sampling == nil {
				return nil, server.NewHandlerError(rpcError{
					code: mcp.MISSING_REQUIRED_CLIENT_CAPABILITY,
					msg:  "missing required client capability: sampling",
					data: map[string]any{"requiredCapabilities": map[string]any{"sampling": map[string]any{}}},
				})
			}
			return text("sampling capability declared"), nil
		})
	s.AddTool(mcp.NewTool("test_logging_tool", none("Logs at info level (only when the request asked for logs)")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			for _, msg := range []string{"logging tool started", "logging tool finished"} {
				_ = s.SendLogMessageToClient(ctx, mcp.NewLoggingMessageNotification(mcp.LoggingLevelInfo, "conformance-test-server", msg))
			}
			return text("logged"), nil
		})
	s.AddTool(mcp.NewTool("test_streaming_elicitation", none("Asks for input through the result, never by a request of its own")),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if e := server.ElicitationResponse(req.Params.InputResponses, "answer"); e != nil {
				return text(fmt.Sprintf("answered: action=%s", e.Action)), nil
			}
			return server.NewInputRequestBuilder("").Elicit("answer", mcp.ElicitationParams{
				Message: "Anything to add?", RequestedSchema: object(map[string]any{"answer": map[string]any{"type": "string"}}, "answer"),
			}).ToolResult(), nil
		})
	s.AddTool(mcp.NewTool("test_trigger_tool_change", none("Adds a tool, so the tool list changes")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			f.mu.Lock()
			f.dynamic++
			n := f.dynamic
			f.mu.Unlock()
			name := fmt.Sprintf("test_dynamic_tool_%d", n)
			s.AddTool(mcp.NewTool(name, none("Added by test_trigger_tool_change")),
				func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return text(name), nil })
			return text("added " + name), nil
		})
	s.AddTool(mcp.NewTool("test_trigger_prompt_change", none("Adds a prompt, so the prompt list changes")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			f.mu.Lock()
			f.dynamic++
			n := f.dynamic
			f.mu.Unlock()
			name := fmt.Sprintf("test_dynamic_prompt_%d", n)
			s.AddPrompt(mcp.NewPrompt(name, mcp.WithPromptDescription("Added by test_trigger_prompt_change")),
				func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
					return mcp.NewGetPromptResult(name, []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(name))}), nil
				})
			return text("added " + name), nil
		})
}

// object is a JSON Schema object with properties and the required names.
func object(props map[string]any, required ...string) map[string]any {
	if required == nil {
		required = []string{}
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}

func (f *Fixture) addResources() {
	s := f.Server
	textRes := func(uri, mime, body string) server.ResourceHandlerFunc {
		return func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: mime, Text: body}}, nil
		}
	}
	s.AddResource(mcp.NewResource("test://static-text", "static-text", mcp.WithResourceTitle("Static Text Resource"),
		mcp.WithResourceDescription("A static text resource for testing"), mcp.WithMIMEType("text/plain")),
		textRes("test://static-text", "text/plain", "This is the content of the static text resource."))
	s.AddResource(mcp.NewResource("test://static-binary", "static-binary", mcp.WithResourceTitle("Static Binary Resource"),
		mcp.WithResourceDescription("A static binary resource (image) for testing"), mcp.WithMIMEType("image/png")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.BlobResourceContents{URI: "test://static-binary", MIMEType: "image/png", Blob: TestImage}}, nil
		})
	s.AddResource(mcp.NewResource("test://watched-resource", "watched-resource", mcp.WithResourceTitle("Watched Resource"),
		mcp.WithResourceDescription("A resource clients may subscribe to"), mcp.WithMIMEType("text/plain")),
		textRes("test://watched-resource", "text/plain", "Watched resource content"))
	s.AddResourceTemplate(mcp.NewResourceTemplate("test://template/{id}/data", "template", mcp.WithTemplateTitle("Resource Template"),
		mcp.WithTemplateDescription("A resource template with parameter substitution"), mcp.WithTemplateMIMEType("application/json")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			id := strings.TrimSuffix(strings.TrimPrefix(req.Params.URI, "test://template/"), "/data")
			body, _ := json.Marshal(map[string]any{"id": id, "templateTest": true, "data": "Data for ID: " + id})
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(body)}}, nil
		})
}

func (f *Fixture) addPrompts() {
	s := f.Server
	msg := func(c mcp.Content) mcp.PromptMessage { return mcp.NewPromptMessage(mcp.RoleUser, c) }
	s.AddPrompt(mcp.NewPrompt("test_simple_prompt", mcp.WithPromptTitle("Simple Test Prompt"),
		mcp.WithPromptDescription("A simple prompt without arguments")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult("", []mcp.PromptMessage{msg(mcp.NewTextContent("This is a simple prompt for testing."))}), nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_arguments", mcp.WithPromptTitle("Prompt With Arguments"),
		mcp.WithPromptDescription("A prompt with required arguments"),
		mcp.WithArgument("arg1", mcp.ArgumentDescription("First test argument"), mcp.RequiredArgument()),
		mcp.WithArgument("arg2", mcp.ArgumentDescription("Second test argument"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			a := req.Params.Arguments
			return mcp.NewGetPromptResult("", []mcp.PromptMessage{msg(mcp.NewTextContent(
				fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", a["arg1"], a["arg2"])))}), nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_embedded_resource", mcp.WithPromptTitle("Prompt With Embedded Resource"),
		mcp.WithPromptDescription("A prompt that includes an embedded resource"),
		mcp.WithArgument("resourceUri", mcp.ArgumentDescription("URI of the resource to embed"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult("", []mcp.PromptMessage{
				msg(mcp.NewEmbeddedResource(mcp.TextResourceContents{URI: req.Params.Arguments["resourceUri"], MIMEType: "text/plain",
					Text: "Embedded resource content for testing."})),
				msg(mcp.NewTextContent("Please process the embedded resource above.")),
			}), nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_image", mcp.WithPromptTitle("Prompt With Image"),
		mcp.WithPromptDescription("A prompt that includes image content")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult("", []mcp.PromptMessage{
				msg(mcp.NewImageContent(TestImage, "image/png")),
				msg(mcp.NewTextContent("Please analyze the image above.")),
			}), nil
		})
}
