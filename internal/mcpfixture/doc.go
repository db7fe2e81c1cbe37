// Package mcpfixture is an MCP server for tests only: it implements what the
// official conformance suite (@modelcontextprotocol/conformance, server
// scenarios) exercises, in both protocol eras (2025-11-25 with sessions and
// 2026-07-28 stateless with multi round-trip requests), using mcp-go.
//
// What it serves:
//   - tools: test_simple_text, test_image_content, test_audio_content,
//     test_embedded_resource, test_multiple_content_types,
//     test_tool_with_logging, test_error_handling, test_tool_with_progress,
//     test_sampling, test_elicitation, test_elicitation_sep1034_defaults,
//     test_elicitation_sep1330_enums, json_schema_2020_12_tool, the 2026-07-28
//     multi round-trip tools test_input_required_result_* (answered by
//     mcp-go's legacy bridge for 2025-11-25 clients), and the diagnostic tools
//     test_missing_capability, test_streaming_elicitation, test_logging_tool,
//     test_trigger_tool_change and test_trigger_prompt_change;
//   - resources test://static-text, test://static-binary,
//     test://watched-resource (subscribe/unsubscribe) and the template
//     test://template/{id}/data;
//   - prompts test_simple_prompt, test_prompt_with_arguments (with
//     completions for arg1), test_prompt_with_embedded_resource,
//     test_prompt_with_image and test_input_required_result_prompt;
//   - logging/setLevel and completion/complete.
//
// Hooks for gateway tests (federation, pinning, hostile upstreams):
//   - [Fixture.SetDescription] changes a tool's description while the server
//     runs and sends notifications/tools/list_changed; the command exposes it
//     as POST /fixture/description?tool=NAME (body: the new description) and
//     as --description-file FILE (a JSON object {"tool": "description"},
//     re-read whenever the file changes);
//   - [WithCrashTool] adds the tool fixture_crash, which calls the given
//     function (the command exits the process with status 3), for tests of a
//     supervised stdio server that crashes.
//
// The command internal/mcpfixture/cmd/mcpfixture serves it over streamable
// HTTP at /mcp (--listen 127.0.0.1:PORT) or over stdio (--stdio).
package mcpfixture
