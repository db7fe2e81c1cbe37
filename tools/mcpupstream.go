package tools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ErrNameClash reports a tool or prompt name, or a resource URI, that two
// upstreams would both serve.
var ErrNameClash = errors.New("name clash")

// Resource is a resource of an upstream MCP server; its URI passes through
// unchanged.
type Resource struct {
	mcp.Resource
	// Upstream is the name of the upstream that listed it.
	Upstream string
}

// ResourceTemplate is a resource template of an upstream MCP server.
type ResourceTemplate struct {
	mcp.ResourceTemplate
	// Upstream is the name of the upstream that listed it.
	Upstream string
}

// Prompt is a prompt of an upstream MCP server. Its Name is the gateway's
// (prefixed); Operation is the server's own name.
type Prompt struct {
	mcp.Prompt
	// Upstream is the name of the upstream that serves it.
	Upstream string
	// Operation is the server's own name for the prompt.
	Operation string
}

// listing is what one upstream offers, converted.
type listing struct {
	tools     []*Tool
	resources []*Resource
	templates []*ResourceTemplate
	prompts   []*Prompt
	warns     []Warning
}

// mcpName is what a federated tool or prompt name may be (MCP's own rule
// for tool names).
var mcpName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// maxURI bounds a resource URI or URI template.
const maxURI = 2048

// pages follows a paginated list within the bounds: at most MaxListPages
// pages and MaxListItems items, and a cursor that advances.
func pages[T any](ctx context.Context, what string, page func(context.Context, mcp.Cursor) ([]T, mcp.Cursor, error)) ([]T, error) {
	var out []T
	seen := map[mcp.Cursor]bool{}
	var cursor mcp.Cursor
	for i := 0; ; i++ {
		if i >= MaxListPages {
			return nil, fmt.Errorf("%s: more than %d pages", what, MaxListPages)
		}
		items, next, err := page(ctx, cursor)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, items...)
		if len(out) > MaxListItems {
			return nil, fmt.Errorf("%s: more than %d items, refused", what, MaxListItems)
		}
		if next == "" {
			return out, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("%s: the cursor did not advance", what)
		}
		seen[next] = true
		cursor = next
	}
}

// list lists and converts everything the upstream offers. A definition
// the gateway cannot serve (a bad name, an invalid schema) is left out and
// reported as a warning; the rest is served.
func (m *mcpConn) list(ctx context.Context) (*listing, error) {
	out := &listing{}
	err := m.do(ctx, nil, func(ctx context.Context, cli *client.Client, _ string) error {
		caps := cli.GetServerCapabilities()
		if caps.Tools != nil {
			ts, err := pages(ctx, "tools/list", func(ctx context.Context, c mcp.Cursor) ([]mcp.Tool, mcp.Cursor, error) {
				r, err := cli.ListToolsByPage(ctx, mcp.ListToolsRequest{PaginatedRequest: mcp.PaginatedRequest{Params: mcp.PaginatedParams{Cursor: c}}})
				if err != nil {
					return nil, "", err
				}
				return r.Tools, r.NextCursor, nil
			})
			if err != nil {
				return err
			}
			for _, st := range ts {
				t, err := convertMCPTool(&m.up, st)
				if err != nil {
					out.warns = append(out.warns, Warning{Where: "tool " + st.Name, Reason: err.Error()})
					continue
				}
				out.tools = append(out.tools, t)
			}
		}
		if caps.Resources != nil {
			rs, err := pages(ctx, "resources/list", func(ctx context.Context, c mcp.Cursor) ([]mcp.Resource, mcp.Cursor, error) {
				r, err := cli.ListResourcesByPage(ctx, mcp.ListResourcesRequest{PaginatedRequest: mcp.PaginatedRequest{Params: mcp.PaginatedParams{Cursor: c}}})
				if err != nil {
					return nil, "", err
				}
				return r.Resources, r.NextCursor, nil
			})
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r.URI == "" || len(r.URI) > maxURI {
					out.warns = append(out.warns, Warning{Where: "resource " + r.Name, Reason: "no URI, or one longer than 2048 bytes"})
					continue
				}
				r.Meta = nil
				out.resources = append(out.resources, &Resource{Resource: r, Upstream: m.up.Name})
			}
			tpl, err := pages(ctx, "resources/templates/list", func(ctx context.Context, c mcp.Cursor) ([]mcp.ResourceTemplate, mcp.Cursor, error) {
				r, err := cli.ListResourceTemplatesByPage(ctx, mcp.ListResourceTemplatesRequest{PaginatedRequest: mcp.PaginatedRequest{Params: mcp.PaginatedParams{Cursor: c}}})
				if err != nil {
					return nil, "", err
				}
				return r.ResourceTemplates, r.NextCursor, nil
			})
			if err != nil {
				return err
			}
			for _, rt := range tpl {
				if rt.URITemplate == nil || rt.URITemplate.Template == nil || len(rt.URITemplate.Raw()) > maxURI {
					out.warns = append(out.warns, Warning{Where: "resource template " + rt.Name, Reason: "no usable URI template"})
					continue
				}
				rt.Meta = nil
				out.templates = append(out.templates, &ResourceTemplate{ResourceTemplate: rt, Upstream: m.up.Name})
			}
		}
		if caps.Prompts != nil {
			ps, err := pages(ctx, "prompts/list", func(ctx context.Context, c mcp.Cursor) ([]mcp.Prompt, mcp.Cursor, error) {
				r, err := cli.ListPromptsByPage(ctx, mcp.ListPromptsRequest{PaginatedRequest: mcp.PaginatedRequest{Params: mcp.PaginatedParams{Cursor: c}}})
				if err != nil {
					return nil, "", err
				}
				return r.Prompts, r.NextCursor, nil
			})
			if err != nil {
				return err
			}
			for _, p := range ps {
				name := m.up.Prefix + p.Name
				if !mcpName.MatchString(name) {
					out.warns = append(out.warns, Warning{Where: "prompt " + p.Name, Reason: "the name is not 1-128 characters of A-Z a-z 0-9 _ . -"})
					continue
				}
				op := p.Name
				p.Name, p.Meta = name, nil
				out.prompts = append(out.prompts, &Prompt{Prompt: p, Upstream: m.up.Name, Operation: op})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// convertMCPTool makes the gateway's tool of a server's tool: prefixed
// name, schemas checked (an object schema that compiles), annotations and
// output schema kept, and the digest of the definition that pinning uses.
func convertMCPTool(up *Upstream, st mcp.Tool) (*Tool, error) {
	name := up.Prefix + st.Name
	if !mcpName.MatchString(name) {
		return nil, errors.New("the name is not 1-128 characters of A-Z a-z 0-9 _ . -")
	}
	in, err := toolSchema(st.RawInputSchema, st.InputSchema)
	if err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	var out json.RawMessage
	if st.RawOutputSchema != nil || st.OutputSchema.Type != "" || st.OutputSchema.Types != nil {
		if out, err = toolSchema(st.RawOutputSchema, mcp.ToolInputSchema(st.OutputSchema)); err != nil {
			return nil, fmt.Errorf("output schema: %w", err)
		}
	}
	var ann map[string]any
	if st.Annotations != (mcp.ToolAnnotation{}) {
		b, err := json.Marshal(st.Annotations)
		if err != nil {
			return nil, fmt.Errorf("annotations: %w", err)
		}
		if err := json.Unmarshal(b, &ann); err != nil {
			return nil, fmt.Errorf("annotations: %w", err)
		}
	}
	title := st.Title
	if title == "" {
		title = st.Annotations.Title
	}
	def := st
	def.Meta, def.Icons, def.Execution = nil, nil, nil
	t := &Tool{
		Kind: KindMCP, Name: name, Upstream: up.Name, Operation: st.Name,
		Title: title, Description: st.Description, InputSchema: in, OutputSchema: out,
		Annotations: ann, Definition: &def,
		ReadOnly:    hint(st.Annotations.ReadOnlyHint, false),
		Destructive: hint(st.Annotations.DestructiveHint, !hint(st.Annotations.ReadOnlyHint, false)),
		Idempotent:  hint(st.Annotations.IdempotentHint, false),
	}
	t.Digest, err = definitionDigest(st.Name, st.Title, st.Description, in, out, ann)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func hint(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// toolSchema is a tool's schema as JSON, refused unless it is an object
// schema that compiles (no remote references are fetched).
func toolSchema(raw json.RawMessage, structured mcp.ToolInputSchema) (json.RawMessage, error) {
	b := raw
	if b == nil {
		var err error
		if b, err = json.Marshal(structured); err != nil {
			return nil, err
		}
	}
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if top["type"] != "object" {
		return nil, errors.New(`the type must be "object"`)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("urn:harness:schema", doc); err != nil {
		return nil, err
	}
	if _, err := c.Compile("urn:harness:schema"); err != nil {
		return nil, fmt.Errorf("not a valid JSON Schema: %w", err)
	}
	return json.RawMessage(b), nil
}

// definitionDigest is the hex SHA-256 of a tool's canonical definition:
// JSON with the keys sorted at every depth and numbers as written.
func definitionDigest(name, title, description string, in, out json.RawMessage, ann map[string]any) (string, error) {
	dec := func(b json.RawMessage) (any, error) {
		if b == nil {
			return nil, nil
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		err := d.Decode(&v)
		return v, err
	}
	iv, err := dec(in)
	if err != nil {
		return "", err
	}
	ov, err := dec(out)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(map[string]any{
		"name": name, "title": title, "description": description,
		"inputSchema": iv, "outputSchema": ov, "annotations": ann,
	})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// callTool calls the server's tool for t with args.
func (m *mcpConn) callTool(ctx context.Context, t *Tool, args map[string]any, c *MCPCall) (*mcp.CallToolResult, error) {
	var res *mcp.CallToolResult
	err := m.do(ctx, c, func(ctx context.Context, cli *client.Client, tok string) error {
		req := mcp.CallToolRequest{}
		req.Params.Name = t.Operation
		req.Params.Arguments = args
		req.Params.Meta = m.meta(c, tok)
		if c != nil && c.Retry != nil {
			req.Params.MultiRoundTripParams = *c.Retry
		}
		r, err := cli.CallTool(ctx, req)
		res = r
		return err
	})
	return res, err
}

// readResource reads uri.
func (m *mcpConn) readResource(ctx context.Context, uri string, c *MCPCall) (*mcp.ReadResourceResult, error) {
	var res *mcp.ReadResourceResult
	err := m.do(ctx, c, func(ctx context.Context, cli *client.Client, tok string) error {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = uri
		req.Params.Meta = m.meta(c, tok)
		r, err := cli.ReadResource(ctx, req)
		res = r
		return err
	})
	return res, err
}

// getPrompt gets the server's prompt for p with args.
func (m *mcpConn) getPrompt(ctx context.Context, p *Prompt, args map[string]string, c *MCPCall) (*mcp.GetPromptResult, error) {
	var res *mcp.GetPromptResult
	err := m.do(ctx, c, func(ctx context.Context, cli *client.Client, tok string) error {
		req := mcp.GetPromptRequest{}
		req.Params.Name = p.Operation
		req.Params.Arguments = args
		req.Params.Meta = m.meta(c, tok)
		if c != nil && c.Retry != nil {
			req.Params.MultiRoundTripParams = *c.Retry
		}
		r, err := cli.GetPrompt(ctx, req)
		res = r
		return err
	})
	return res, err
}

// complete asks the server for completions; ref already names the
// server's own prompt name or the resource template.
func (m *mcpConn) complete(ctx context.Context, params mcp.CompleteParams, c *MCPCall) (*mcp.CompleteResult, error) {
	var res *mcp.CompleteResult
	err := m.do(ctx, c, func(ctx context.Context, cli *client.Client, _ string) error {
		if cli.GetServerCapabilities().Completions == nil {
			res = &mcp.CompleteResult{Completion: mcp.Completion{Values: []string{}}}
			return nil
		}
		req := mcp.CompleteRequest{}
		req.Params = params
		r, err := cli.Complete(ctx, req)
		res = r
		return err
	})
	return res, err
}
