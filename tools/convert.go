package tools

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// Tool kinds.
const (
	// KindOpenAPI is a tool made from an OpenAPI operation.
	KindOpenAPI = "openapi"
	// KindMCP is a tool of an upstream MCP server.
	KindMCP = "mcp"
)

// MaxNameLength is the longest tool name Convert produces.
const MaxNameLength = 64

// Tool is one upstream HTTP operation offered as an MCP tool. A Tool is
// immutable once built; callers must not modify it.
type Tool struct {
	// Name is the MCP tool name, "<upstream>_<operationId>".
	Name string
	// Upstream is the name of the upstream that serves the operation.
	Upstream string
	// Operation is the operationId (or, without one, a name derived from
	// the method and path).
	Operation string
	// Method is the HTTP method, upper case.
	Method string
	// Path is the OpenAPI path template, e.g. "/customers/{customer_id}".
	Path string
	// Title is the operation's summary, if any.
	Title string
	// Description is the summary and description of the operation.
	Description string
	// Tags are the operation's OpenAPI tags.
	Tags []string
	// InputSchema is the JSON Schema (2020-12) of the tool's arguments.
	InputSchema json.RawMessage
	// ReadOnly is true for GET, HEAD and OPTIONS.
	ReadOnly bool
	// Destructive is true for DELETE.
	Destructive bool
	// Idempotent is true for GET, HEAD, OPTIONS, PUT and DELETE.
	Idempotent bool
	// Deprecated is true when the operation is marked deprecated.
	Deprecated bool
	// Kind is KindOpenAPI or KindMCP (a tool of an upstream MCP server).
	Kind string
	// Annotations are an MCP tool's annotations, as the server gave them
	// (nil for OpenAPI tools, whose hints are the fields above).
	Annotations map[string]any
	// OutputSchema is an MCP tool's output schema, if it has one.
	OutputSchema json.RawMessage
	// Digest is the SHA-256 (hex) of an MCP tool's canonical definition
	// (name, title, description, input and output schema, annotations): what
	// is pinned.
	Digest string
	// Definition is an MCP tool as the server defines it (its own name).
	Definition *mcp.Tool

	params []param
	body   bodySpec
	checks map[string]argCheck
	tmpl   []pathPart
	// bodyReq lists the required properties of a flattened body.
	bodyReq []string
}

// param maps one argument to an HTTP parameter.
type param struct {
	Arg      string `json:"arg"`
	In       string `json:"in"`
	Wire     string `json:"wire"`
	Style    string `json:"style,omitempty"`
	Explode  bool   `json:"explode,omitempty"`
	Required bool   `json:"required,omitempty"`
}

// bodySpec says how arguments become the JSON request body.
type bodySpec struct {
	// Mode is "" (no body), "flat" (object properties are arguments) or
	// "whole" (one argument is the body).
	Mode     string   `json:"mode,omitempty"`
	Arg      string   `json:"arg,omitempty"`
	Props    []string `json:"props,omitempty"`
	Required bool     `json:"required,omitempty"`
}

// pathPart is a literal piece of a path template or a parameter in it.
type pathPart struct {
	lit   string
	param string
}

// Warning is a part of an OpenAPI document that Convert skipped.
type Warning struct {
	// Where names the operation or the part of the document.
	Where string
	// Reason says what was skipped and why.
	Reason string
}

// String formats the warning as "where: reason".
func (w Warning) String() string { return w.Where + ": " + w.Reason }

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Convert turns an OpenAPI 3.0.x or 3.1.x document (JSON or YAML) into the
// tools of upstream, sorted by name. Parts it cannot support are skipped;
// use ConvertWithWarnings to learn which. A malformed document, a dangling
// $ref or an unsupported OpenAPI version is an error.
func Convert(upstream string, doc []byte) ([]*Tool, error) {
	ts, _, err := ConvertWithWarnings(upstream, doc)
	return ts, err
}

// ConvertWithWarnings is Convert that also reports every skipped operation,
// parameter or request body with the reason.
func ConvertWithWarnings(upstream string, doc []byte) ([]*Tool, []Warning, error) {
	if upstream == "" {
		return nil, nil, errors.New("convert openapi document: upstream name is empty")
	}
	root, err := parseDocument(doc)
	if err != nil {
		return nil, nil, err
	}
	version, _ := root["openapi"].(string)
	switch {
	case strings.HasPrefix(version, "3.0."), version == "3.0":
	case strings.HasPrefix(version, "3.1."), version == "3.1":
	case version == "" && root["swagger"] != nil:
		return nil, nil, errors.New("openapi document is swagger 2.0; only openapi 3.0 and 3.1 are supported")
	case version == "":
		return nil, nil, errors.New("openapi document has no \"openapi\" version field")
	default:
		return nil, nil, fmt.Errorf("openapi version %q is not supported (want 3.0.x or 3.1.x)", version)
	}
	c := &converter{upstream: upstream, root: root, v30: strings.HasPrefix(version, "3.0"), names: map[string]string{}}
	pathsV, ok := root["paths"]
	if !ok || pathsV == nil {
		return nil, nil, nil
	}
	paths, ok := pathsV.(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("openapi document: paths is a %s, not an object", jsonKind(pathsV))
	}
	var tools []*Tool
	for _, p := range sortedKeys(paths) {
		item, err := c.deref(paths[p], "paths."+p)
		var skip *skipError
		if errors.As(err, &skip) {
			c.warn("paths."+p, "%s", skip.reason)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		itemMap, ok := item.(map[string]any)
		if !ok {
			return nil, nil, fmt.Errorf("openapi document: paths.%s is a %s, not an object", p, jsonKind(item))
		}
		for _, m := range methods {
			opV, ok := itemMap[m]
			if !ok {
				continue
			}
			where := strings.ToUpper(m) + " " + p
			op, ok := opV.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("openapi document: %s: operation is a %s, not an object", where, jsonKind(opV))
			}
			t, err := c.operation(p, m, itemMap, op)
			switch {
			case errors.As(err, &skip):
				c.warn(where, "%s", skip.reason)
			case err != nil:
				return nil, nil, fmt.Errorf("openapi document: %s: %w", where, err)
			default:
				tools = append(tools, t)
			}
		}
	}
	sort.Slice(tools, func(i, j int) bool { return tools[i].Name < tools[j].Name })
	return tools, c.warnings, nil
}

// skipError marks an operation that is skipped rather than an error.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

func skipf(format string, args ...any) error {
	return &skipError{reason: fmt.Sprintf(format, args...)}
}

type converter struct {
	upstream string
	root     map[string]any
	v30      bool
	names    map[string]string // tool name → "METHOD path" that took it
	warnings []Warning
}

func (c *converter) warn(where, format string, args ...any) {
	c.warnings = append(c.warnings, Warning{Where: where, Reason: fmt.Sprintf(format, args...)})
}

// deref follows a chain of $refs on a non-schema object (path item,
// parameter, request body).
func (c *converter) deref(v any, where string) (any, error) {
	for range 32 {
		m, ok := v.(map[string]any)
		if !ok {
			return v, nil
		}
		refV, ok := m["$ref"]
		if !ok {
			return v, nil
		}
		ref, ok := refV.(string)
		if !ok {
			return nil, fmt.Errorf("openapi document: %s: $ref is not a string", where)
		}
		t, err := resolvePointer(c.root, ref)
		if errors.Is(err, errRemoteRef) {
			return nil, skipf("%v", err)
		}
		if err != nil {
			return nil, fmt.Errorf("openapi document: %s: %w", where, err)
		}
		v = t
	}
	return nil, fmt.Errorf("openapi document: %s: $ref chain too long or circular", where)
}

var (
	forbiddenHeaders = map[string]bool{
		"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "Set-Cookie": true,
		"Host": true, "Content-Length": true, "Content-Type": true, "Transfer-Encoding": true,
		"Connection": true, "Keep-Alive": true, "Upgrade": true, "Te": true, "Trailer": true,
		"Proxy-Connection": true, "Expect": true, "Forwarded": true, "Via": true, "X-Real-Ip": true,
		"Traceparent": true, "Tracestate": true, "Baggage": true, "Accept-Encoding": true,
		"Mcp-Session-Id": true, "Txn-Token": true,
	}
	headerTokenRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	nameRe        = regexp.MustCompile(`[^A-Za-z0-9_-]`)
)

// forbiddenHeader reports whether a header parameter may not be set by an
// argument: hop-by-hop, framing, identity and tracing headers.
func forbiddenHeader(name string) bool {
	canon := canonicalHeader(name)
	return forbiddenHeaders[canon] || strings.HasPrefix(canon, "X-Forwarded-") || strings.HasPrefix(canon, "Proxy-") || strings.HasPrefix(canon, "Sec-")
}

func (c *converter) operation(path, method string, item, op map[string]any) (*Tool, error) {
	where := strings.ToUpper(method) + " " + path
	tmpl, err := parseTemplate(path)
	if err != nil {
		return nil, skipf("%v", err)
	}
	opID, _ := op["operationId"].(string)
	if opID == "" {
		opID = derivedOperation(method, path)
	}
	b := newSchemaBuilder(c.root, c.v30)
	props := map[string]any{}
	var required []any
	t := &Tool{
		Kind:      KindOpenAPI,
		Upstream:  c.upstream,
		Operation: opID,
		Method:    strings.ToUpper(method),
		Path:      path,
		checks:    map[string]argCheck{},
		tmpl:      tmpl,
	}

	// Parameters: path-level ones, overridden by operation-level ones with
	// the same name and location.
	type rawParam struct {
		m     map[string]any
		where string
	}
	var raws []rawParam
	index := map[string]int{}
	for _, src := range []struct {
		v     any
		where string
	}{{item["parameters"], "paths." + path + ".parameters"}, {op["parameters"], where + " parameters"}} {
		if src.v == nil {
			continue
		}
		list, ok := src.v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s is a %s, not an array", src.where, jsonKind(src.v))
		}
		for i, pv := range list {
			pw := fmt.Sprintf("%s[%d]", src.where, i)
			d, err := c.deref(pv, pw)
			if err != nil {
				return nil, err
			}
			pm, ok := d.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s is a %s, not an object", pw, jsonKind(d))
			}
			name, _ := pm["name"].(string)
			in, _ := pm["in"].(string)
			if name == "" || in == "" {
				return nil, fmt.Errorf("%s has no name or no location (in)", pw)
			}
			key := in + "\x00" + name
			if at, ok := index[key]; ok {
				raws[at] = rawParam{pm, pw}
				continue
			}
			index[key] = len(raws)
			raws = append(raws, rawParam{pm, pw})
		}
	}
	// Arguments: path first, then query, then header, so that on a clash
	// the parameter earlier in the URL keeps the plain name.
	used := map[string]bool{}
	inTemplate := map[string]bool{}
	for _, p := range tmpl {
		if p.param != "" {
			inTemplate[p.param] = true
		}
	}
	declaredPath := map[string]bool{}
	for _, loc := range []string{"path", "query", "header", "cookie"} {
		for _, rp := range raws {
			pm := rp.m
			if pm["in"] != loc {
				continue
			}
			name := pm["name"].(string)
			switch loc {
			case "cookie":
				c.warn(where, "cookie parameter %q skipped: cookie parameters are not supported", name)
				continue
			case "header":
				if !headerTokenRe.MatchString(name) {
					c.warn(where, "header parameter %q skipped: not a valid header name", name)
					continue
				}
				if forbiddenHeader(name) {
					c.warn(where, "header parameter %q skipped: the gateway controls this header", name)
					continue
				}
			case "path":
				if !inTemplate[name] {
					c.warn(where, "path parameter %q skipped: not in the path template", name)
					continue
				}
				declaredPath[name] = true
			}
			arg := name
			if used[arg] {
				arg = loc + "_" + name
				if used[arg] {
					return nil, skipf("parameter %q in %s clashes with another argument", name, loc)
				}
			}
			sv, ok := pm["schema"]
			if !ok {
				if _, hasContent := pm["content"]; hasContent {
					if loc == "path" || pm["required"] == true {
						return nil, skipf("%s parameter %q uses content instead of schema, which is not supported", loc, name)
					}
					c.warn(where, "%s parameter %q skipped: content instead of schema is not supported", loc, name)
					continue
				}
				sv = map[string]any{}
			}
			s, err := b.convert(sv, rp.where+".schema", 0)
			if err != nil {
				return nil, c.schemaErr(err)
			}
			if d, ok := pm["description"].(string); ok && d != "" {
				if sm, ok := s.(map[string]any); ok {
					sm = copyMap(sm)
					sm["description"] = d
					s = sm
				}
			}
			if dep, _ := pm["deprecated"].(bool); dep {
				if sm, ok := s.(map[string]any); ok {
					sm = copyMap(sm)
					sm["deprecated"] = true
					s = sm
				}
			}
			req, _ := pm["required"].(bool)
			if loc == "path" {
				req = true
			}
			style, _ := pm["style"].(string)
			explode, hasExplode := pm["explode"].(bool)
			if !hasExplode {
				explode = loc == "query" && (style == "" || style == "form")
			}
			used[arg] = true
			props[arg] = s
			if req {
				required = append(required, arg)
			}
			t.params = append(t.params, param{Arg: arg, In: loc, Wire: name, Style: style, Explode: explode, Required: req})
			t.checks[arg] = checkFor(b.defs, s)
		}
	}
	for name := range inTemplate {
		if !declaredPath[name] {
			return nil, skipf("path template parameter %q is not declared", name)
		}
	}

	// Request body.
	if rbV, ok := op["requestBody"]; ok && rbV != nil {
		rb, err := c.deref(rbV, where+" requestBody")
		if err != nil {
			return nil, err
		}
		rbm, ok := rb.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("requestBody is a %s, not an object", jsonKind(rb))
		}
		bodyReq, _ := rbm["required"].(bool)
		content, _ := rbm["content"].(map[string]any)
		mt, media := pickJSON(content)
		switch {
		case media == nil && bodyReq:
			return nil, skipf("request body media types %v are not supported (only JSON)", sortedKeys(content))
		case media == nil:
			c.warn(where, "optional request body skipped: media types %v are not supported (only JSON)", sortedKeys(content))
		default:
			sv, ok := media["schema"]
			if !ok {
				sv = map[string]any{}
			}
			s, err := b.convert(sv, where+" requestBody.content."+mt+".schema", 0)
			if err != nil {
				return nil, c.schemaErr(err)
			}
			t.body.Required = bodyReq
			if obj := flatProps(b.defs, s, used); obj != nil {
				t.body.Mode = "flat"
				bodyProps, _ := obj["properties"].(map[string]any)
				reqSet := map[string]bool{}
				if r, ok := obj["required"].([]any); ok {
					for _, e := range r {
						if n, ok := e.(string); ok {
							reqSet[n] = true
						}
					}
				}
				for _, name := range sortedKeys(bodyProps) {
					used[name] = true
					props[name] = bodyProps[name]
					t.body.Props = append(t.body.Props, name)
					t.checks[name] = checkFor(b.defs, bodyProps[name])
					if bodyReq && reqSet[name] {
						required = append(required, name)
						t.bodyReq = append(t.bodyReq, name)
					}
				}
			} else {
				arg := "body"
				if used[arg] {
					arg = "request_body"
					if used[arg] {
						return nil, skipf("request body argument clashes with parameters named body and request_body")
					}
				}
				used[arg] = true
				t.body.Mode = "whole"
				t.body.Arg = arg
				props[arg] = s
				t.checks[arg] = checkFor(b.defs, s)
				if bodyReq {
					required = append(required, arg)
				}
			}
		}
	}

	schema := map[string]any{
		"type":                 "object",
		"properties":           props,
		"additionalProperties": false,
	}
	if len(required) > 0 {
		schema["required"] = required
	}
	if len(b.defs) > 0 {
		schema["$defs"] = b.defs
	}
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, fmt.Errorf("encode input schema: %w", err)
	}
	t.InputSchema = raw

	t.Title, _ = op["summary"].(string)
	desc, _ := op["description"].(string)
	switch {
	case t.Title != "" && desc != "" && desc != t.Title:
		t.Description = t.Title + "\n\n" + desc
	case t.Title != "":
		t.Description = t.Title
	default:
		t.Description = desc
	}
	if tags, ok := op["tags"].([]any); ok {
		for _, tg := range tags {
			if s, ok := tg.(string); ok {
				t.Tags = append(t.Tags, s)
			}
		}
	}
	t.Deprecated, _ = op["deprecated"].(bool)
	switch t.Method {
	case "GET", "HEAD", "OPTIONS":
		t.ReadOnly, t.Idempotent = true, true
	case "PUT":
		t.Idempotent = true
	case "DELETE":
		t.Destructive, t.Idempotent = true, true
	}
	name, err := c.name(opID, t.Method+" "+path)
	if err != nil {
		return nil, err
	}
	t.Name = name
	return t, nil
}

// schemaErr turns an oversized schema into a skip and keeps other errors.
func (c *converter) schemaErr(err error) error {
	if errors.Is(err, errSchemaTooLarge) || errors.Is(err, errRemoteRef) {
		return skipf("%v", err)
	}
	return err
}

// name returns a unique, valid tool name for the operation.
func (c *converter) name(opID, key string) (string, error) {
	full := c.upstream + "_" + opID
	name := nameRe.ReplaceAllString(full, "_")
	if len(name) > MaxNameLength {
		name = name[:MaxNameLength-9] + "_" + shortHash(full)
	}
	if _, taken := c.names[name]; taken {
		alt := name
		if len(alt) > MaxNameLength-9 {
			alt = alt[:MaxNameLength-9]
		}
		alt += "_" + shortHash(key)
		if _, taken := c.names[alt]; taken {
			return "", skipf("tool name %q is already taken", name)
		}
		c.warn(key, "tool name %q is already taken; named %q instead", name, alt)
		name = alt
	}
	c.names[name] = key
	return name, nil
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// derivedOperation names an operation without operationId after its method
// and path: "get_customers_customer_id_orders".
func derivedOperation(method, path string) string {
	s := strings.NewReplacer("{", "", "}", "").Replace(path)
	s = nameRe.ReplaceAllString(s, "_")
	s = strings.Trim(regexp.MustCompile(`_+`).ReplaceAllString(s, "_"), "_")
	if s == "" {
		return strings.ToLower(method) + "_root"
	}
	return strings.ToLower(method) + "_" + s
}

// parseTemplate splits an OpenAPI path template into literal and parameter
// parts, rejecting templates that could leave the base path.
func parseTemplate(path string) ([]pathPart, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q does not start with /", path)
	}
	if strings.ContainsAny(path, "?#\\") || strings.ContainsFunc(path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("path %q holds characters not allowed in a path template", path)
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("path %q holds a dot segment", path)
		}
	}
	var parts []pathPart
	rest := path
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			parts = append(parts, pathPart{lit: rest})
			break
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("path %q has an unbalanced }", path)
		}
		if i > 0 {
			parts = append(parts, pathPart{lit: rest[:i]})
		}
		j := strings.IndexAny(rest[i+1:], "{}")
		if j < 0 || rest[i+1+j] != '}' {
			return nil, fmt.Errorf("path %q has an unbalanced {", path)
		}
		name := rest[i+1 : i+1+j]
		if name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("path %q has an empty or invalid parameter", path)
		}
		parts = append(parts, pathPart{param: name})
		rest = rest[i+2+j:]
	}
	return parts, nil
}

// pickJSON chooses the JSON media type of a request body.
func pickJSON(content map[string]any) (string, map[string]any) {
	keys := sortedKeys(content)
	for _, pass := range []func(string) bool{
		func(mt string) bool { return mt == "application/json" },
		func(mt string) bool { return strings.HasSuffix(mt, "+json") },
	} {
		for _, k := range keys {
			mt, _, err := mime.ParseMediaType(k)
			if err != nil || !pass(mt) {
				continue
			}
			if m, ok := content[k].(map[string]any); ok {
				return k, m
			}
		}
	}
	return "", nil
}

// flatProps returns the object schema whose properties can become top-level
// arguments, or nil when the body must stay one argument.
func flatProps(defs map[string]any, s any, used map[string]bool) map[string]any {
	m := resolveLocal(defs, s)
	if m == nil {
		return nil
	}
	props, ok := m["properties"].(map[string]any)
	if !ok || len(props) == 0 {
		return nil
	}
	switch t := m["type"].(type) {
	case nil:
	case string:
		if t != "object" {
			return nil
		}
	default:
		return nil
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf", "not", "patternProperties", "$ref", "enum", "const"} {
		if _, ok := m[k]; ok {
			return nil
		}
	}
	if ap, ok := m["additionalProperties"]; ok && ap != false {
		return nil
	}
	if up, ok := m["unevaluatedProperties"]; ok && up != false {
		return nil
	}
	for name := range props {
		if used[name] {
			return nil
		}
	}
	return m
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
