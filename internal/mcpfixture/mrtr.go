package mcpfixture

import (
	"context"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Multi round-trip (SEP-2322) tools and prompt of the 2026-07-28 scenarios.
// A handler returns an input_required result; mcp-go hands it to a
// 2026-07-28 client as is, and answers it for an older client with the
// server-to-client requests of that era.

func elicitString(message, field string) mcp.ElicitationParams {
	return mcp.ElicitationParams{Message: message, RequestedSchema: object(map[string]any{field: map[string]any{"type": "string"}}, field)}
}

// answer is the string field of an accepted elicitation response, or "unknown".
func answer(in mcp.InputResponses, id, field string) (string, bool) {
	e := server.ElicitationResponse(in, id)
	if e == nil {
		return "", false
	}
	if m, ok := e.Content.(map[string]any); ok {
		if v, ok := m[field].(string); ok {
			return v, true
		}
	}
	return "unknown", true
}

func sampled(in mcp.InputResponses, id string) (string, bool) {
	r := server.SamplingResponse(in, id)
	if r == nil {
		return "", false
	}
	if c, ok := r.Content.(mcp.TextContent); ok {
		return c.Text, true
	}
	return "no response", true
}

func sampling(prompt string, maxTokens int) mcp.CreateMessageParams {
	return mcp.CreateMessageParams{
		Messages:  []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(prompt)}},
		MaxTokens: maxTokens,
	}
}

func (f *Fixture) addMRTRTools() {
	s := f.Server
	tool := func(name, desc string, h server.ToolHandlerFunc) {
		s.AddTool(mcp.NewTool(name, mcp.WithDescription(desc)), h)
	}
	tool("test_input_required_result_elicitation", "Asks for the user's name through an input_required result",
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if name, ok := answer(req.Params.InputResponses, "user_name", "name"); ok {
				return text(fmt.Sprintf("Hello, %s!", name)), nil
			}
			return server.NewInputRequestBuilder("").Elicit("user_name", elicitString("What is your name?", "name")).ToolResult(), nil
		})
	tool("test_input_required_result_sampling", "Asks the client's LLM through an input_required result",
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if t, ok := sampled(req.Params.InputResponses, "sample_request"); ok {
				return text("Sampling result: " + t), nil
			}
			return server.NewInputRequestBuilder("").Sample("sample_request", sampling("What is the capital of France?", 100)).ToolResult(), nil
		})
	tool("test_input_required_result_list_roots", "Asks for the client's roots through an input_required result",
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if r := server.RootsResponse(req.Params.InputResponses, "roots_request"); r != nil {
				return text(fmt.Sprintf("Found %d root(s)", len(r.Roots))), nil
			}
			return server.NewInputRequestBuilder("").Roots("roots_request").ToolResult(), nil
		})
	confirm := func(kind string) server.ToolHandlerFunc {
		return func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			state, err := f.openState(req.Params.RequestState)
			if err != nil {
				return nil, err
			}
			if e := server.ElicitationResponse(req.Params.InputResponses, "confirm"); e != nil && state != nil && state["kind"] == kind {
				if m, ok := e.Content.(map[string]any); ok && m["ok"] == true {
					return text("state-ok: requestState validated"), nil
				}
			}
			return server.NewInputRequestBuilder(f.sealState(map[string]any{"kind": kind})).Elicit("confirm", mcp.ElicitationParams{
				Message: "Please confirm", RequestedSchema: object(map[string]any{"ok": map[string]any{"type": "boolean"}}, "ok"),
			}).ToolResult(), nil
		}
	}
	tool("test_input_required_result_request_state", "Round-trips an integrity-protected requestState", confirm("request-state"))
	tool("test_input_required_result_tampered_state", "Refuses a requestState that fails its integrity check", confirm("tampered-state"))
	tool("test_input_required_result_multiple_inputs", "Asks for an elicitation, a sampling and the roots at once",
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			state, err := f.openState(req.Params.RequestState)
			if err != nil {
				return nil, err
			}
			in := req.Params.InputResponses
			name, ok1 := answer(in, "user_name", "name")
			greeting, ok2 := sampled(in, "greeting")
			roots := server.RootsResponse(in, "client_roots")
			if ok1 && ok2 && roots != nil && state != nil && state["kind"] == "multiple-inputs" {
				return text(fmt.Sprintf("Name: %s; Greeting: %s; Roots: %d", name, greeting, len(roots.Roots))), nil
			}
			return server.NewInputRequestBuilder(f.sealState(map[string]any{"kind": "multiple-inputs"})).
				Elicit("user_name", elicitString("What is your name?", "name")).
				Sample("greeting", sampling("Generate a greeting", 50)).
				Roots("client_roots").ToolResult(), nil
		})
	tool("test_input_required_result_multi_round", "Asks twice, with a new requestState each round",
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			state, err := f.openState(req.Params.RequestState)
			if err != nil {
				return nil, err
			}
			in := req.Params.InputResponses
			if state != nil && state["round"] == float64(1) {
				if name, ok := answer(in, "step1", "name"); ok {
					return server.NewInputRequestBuilder(f.sealState(map[string]any{"round": 2, "name": name})).
						Elicit("step2", elicitString("Step 2: What is your favorite color?", "color")).ToolResult(), nil
				}
			}
			if state != nil && state["round"] == float64(2) {
				if color, ok := answer(in, "step2", "color"); ok {
					return text(fmt.Sprintf("Multi-round complete for %v who likes %s", state["name"], color)), nil
				}
			}
			return server.NewInputRequestBuilder(f.sealState(map[string]any{"round": 1})).
				Elicit("step1", elicitString("Step 1: What is your name?", "name")).ToolResult(), nil
		})
	tool("test_input_required_result_capabilities", "Asks only for what the client declared it can answer",
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if len(req.Params.InputResponses) > 0 {
				return text(fmt.Sprintf("received %d answer(s)", len(req.Params.InputResponses))), nil
			}
			caps := clientCaps(ctx)
			b := server.NewInputRequestBuilder("")
			asked := false
			if caps.Sampling != nil {
				b.Sample("greeting", sampling("Generate a greeting", 50))
				asked = true
			}
			if caps.Elicitation != nil {
				b.Elicit("user_name", elicitString("What is your name?", "name"))
				asked = true
			}
			if caps.Roots != nil {
				b.Roots("client_roots")
				asked = true
			}
			if !asked {
				return text("the client declared no capability to ask through"), nil
			}
			return b.ToolResult(), nil
		})
	s.AddPrompt(mcp.NewPrompt("test_input_required_result_prompt",
		mcp.WithPromptDescription("Asks for context through an input_required result")),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			if c, ok := answer(req.Params.InputResponses, "user_context", "context"); ok {
				return mcp.NewGetPromptResult("", []mcp.PromptMessage{
					mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("Prompt with context: "+c)),
				}), nil
			}
			return server.NewInputRequestBuilder("").Elicit("user_context",
				elicitString("What context should the prompt use?", "context")).PromptResult(), nil
		})
}
