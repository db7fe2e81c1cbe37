package tools

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

const (
	// maxSchemaNodes bounds the size of one tool's input schema, so that
	// documents whose references fan out cannot blow up memory.
	maxSchemaNodes = 20000
	// maxSchemaDepth bounds the nesting of one converted schema.
	maxSchemaDepth = 128
)

var errSchemaTooLarge = errors.New("input schema too large")

// schemaBuilder converts OpenAPI schema objects into JSON Schema (2020-12)
// for one tool. Local $refs are inlined, except those that are part of a
// cycle: they become "#/$defs/<name>" and their schema is kept in defs.
type schemaBuilder struct {
	root     map[string]any
	v30      bool
	defs     map[string]any    // def name → converted schema
	defNames map[string]string // pointer → def name
	building map[string]bool   // pointers being inlined right now
	nodes    int
}

func newSchemaBuilder(root map[string]any, v30 bool) *schemaBuilder {
	return &schemaBuilder{
		root:     root,
		v30:      v30,
		defs:     map[string]any{},
		defNames: map[string]string{},
		building: map[string]bool{},
	}
}

// annotation keywords copied verbatim when they have the right JSON type.
var (
	stringKeywords = []string{"description", "title", "format", "$comment", "contentMediaType", "contentEncoding"}
	boolKeywords   = []string{"uniqueItems", "deprecated", "readOnly", "writeOnly"}
	countKeywords  = []string{"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains"}
	numberKeywords = []string{"minimum", "maximum"}
	schemaKeywords = []string{"items", "additionalProperties", "not", "contains", "propertyNames", "unevaluatedProperties", "unevaluatedItems"}
	listKeywords   = []string{"allOf", "anyOf", "oneOf", "prefixItems"}
	mapKeywords    = []string{"properties", "patternProperties"}
	validTypes     = map[string]bool{"string": true, "number": true, "integer": true, "boolean": true, "array": true, "object": true, "null": true}
)

// convert converts the schema v found at where.
func (b *schemaBuilder) convert(v any, where string, depth int) (any, error) {
	b.nodes++
	if b.nodes > maxSchemaNodes {
		return nil, fmt.Errorf("%w at %s: more than %d schema nodes", errSchemaTooLarge, where, maxSchemaNodes)
	}
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("%w at %s: nested deeper than %d", errSchemaTooLarge, where, maxSchemaDepth)
	}
	switch s := v.(type) {
	case bool:
		return s, nil
	case map[string]any:
		if ref, ok := s["$ref"]; ok {
			return b.convertRef(s, ref, where, depth)
		}
		return b.convertObject(s, where, depth)
	default:
		return nil, fmt.Errorf("schema at %s is a %s, not an object", where, jsonKind(v))
	}
}

func (b *schemaBuilder) convertRef(s map[string]any, refv any, where string, depth int) (any, error) {
	ref, ok := refv.(string)
	if !ok {
		return nil, fmt.Errorf("$ref at %s is not a string", where)
	}
	var out any
	if name, ok := b.defNames[ref]; ok {
		out = map[string]any{"$ref": "#/$defs/" + name}
	} else if b.building[ref] {
		out = map[string]any{"$ref": "#/$defs/" + b.assignDef(ref)}
	} else {
		target, err := resolvePointer(b.root, ref)
		if err != nil {
			return nil, fmt.Errorf("schema at %s: %w", where, err)
		}
		b.building[ref] = true
		conv, err := b.convert(target, ref, depth+1)
		delete(b.building, ref)
		if err != nil {
			return nil, err
		}
		if name, ok := b.defNames[ref]; ok {
			b.defs[name] = conv
			out = map[string]any{"$ref": "#/$defs/" + name}
		} else {
			out = conv
		}
	}
	// OpenAPI 3.0 ignores the siblings of $ref; 3.1 (JSON Schema 2020-12)
	// applies them. Keep them as overrides of the referenced schema.
	if b.v30 || len(s) == 1 {
		return out, nil
	}
	sib := make(map[string]any, len(s)-1)
	for k, v := range s {
		if k != "$ref" {
			sib[k] = v
		}
	}
	extra, err := b.convertObject(sib, where, depth)
	if err != nil {
		return nil, err
	}
	em, _ := extra.(map[string]any)
	om, ok := out.(map[string]any)
	if !ok {
		// A boolean schema with siblings.
		em["allOf"] = []any{out}
		return em, nil
	}
	merged := make(map[string]any, len(om)+len(em))
	for k, v := range om {
		merged[k] = v
	}
	for k, v := range em {
		merged[k] = v
	}
	return merged, nil
}

// assignDef gives the schema at pointer ref a name under $defs.
func (b *schemaBuilder) assignDef(ref string) string {
	base := ref[strings.LastIndex(ref, "/")+1:]
	base = defNameRe.ReplaceAllString(base, "_")
	if base == "" {
		base = "schema"
	}
	name := base
	taken := func(n string) bool {
		for _, v := range b.defNames {
			if v == n {
				return true
			}
		}
		return false
	}
	for i := 2; taken(name); i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	b.defNames[ref] = name
	return name
}

var defNameRe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

func (b *schemaBuilder) convertObject(s map[string]any, where string, depth int) (any, error) {
	out := map[string]any{}
	for _, k := range stringKeywords {
		if v, ok := s[k].(string); ok {
			out[k] = v
		}
	}
	for _, k := range boolKeywords {
		if v, ok := s[k].(bool); ok {
			out[k] = v
		}
	}
	for _, k := range countKeywords {
		if n, ok := s[k].(json.Number); ok {
			if i, err := strconv.ParseInt(string(n), 10, 64); err == nil && i >= 0 {
				out[k] = n
			}
		}
	}
	for _, k := range numberKeywords {
		if n, ok := s[k].(json.Number); ok {
			out[k] = n
		}
	}
	if n, ok := s["multipleOf"].(json.Number); ok {
		if f, err := n.Float64(); err == nil && f > 0 {
			out["multipleOf"] = n
		}
	}
	for _, k := range []string{"exclusiveMinimum", "exclusiveMaximum"} {
		switch v := s[k].(type) {
		case json.Number:
			out[k] = v
		case bool: // OpenAPI 3.0: a flag on minimum/maximum
			bound := "minimum"
			if k == "exclusiveMaximum" {
				bound = "maximum"
			}
			if n, ok := out[bound]; ok && v {
				out[k] = n
				delete(out, bound)
			}
		}
	}
	if p, ok := s["pattern"].(string); ok {
		if _, err := regexp.Compile(p); err == nil {
			out["pattern"] = p
		}
	}
	switch t := s["type"].(type) {
	case string:
		if validTypes[t] {
			out["type"] = t
		}
	case []any:
		var ts []any
		seen := map[string]bool{}
		for _, e := range t {
			if name, ok := e.(string); ok && validTypes[name] && !seen[name] {
				seen[name] = true
				ts = append(ts, name)
			}
		}
		if len(ts) > 0 {
			out["type"] = ts
		}
	}
	if e, ok := s["enum"].([]any); ok {
		out["enum"] = e
	}
	if c, ok := s["const"]; ok {
		out["const"] = c
	}
	if d, ok := s["default"]; ok {
		out["default"] = d
	}
	if ex, ok := s["examples"].([]any); ok {
		out["examples"] = ex
	} else if ex, ok := s["example"]; ok {
		out["examples"] = []any{ex}
	}
	if r, ok := s["required"].([]any); ok {
		var req []any
		seen := map[string]bool{}
		for _, e := range r {
			if name, ok := e.(string); ok && !seen[name] {
				seen[name] = true
				req = append(req, name)
			}
		}
		if len(req) > 0 {
			out["required"] = req
		}
	}
	for _, k := range schemaKeywords {
		if v, ok := s[k]; ok {
			switch v.(type) {
			case bool, map[string]any:
				c, err := b.convert(v, where+"."+k, depth+1)
				if err != nil {
					return nil, err
				}
				out[k] = c
			}
		}
	}
	for _, k := range listKeywords {
		l, ok := s[k].([]any)
		if !ok || len(l) == 0 {
			continue
		}
		cl := make([]any, 0, len(l))
		for i, e := range l {
			c, err := b.convert(e, fmt.Sprintf("%s.%s[%d]", where, k, i), depth+1)
			if err != nil {
				return nil, err
			}
			cl = append(cl, c)
		}
		out[k] = cl
	}
	for _, k := range mapKeywords {
		m, ok := s[k].(map[string]any)
		if !ok {
			continue
		}
		cm := make(map[string]any, len(m))
		for _, name := range sortedKeys(m) {
			if k == "patternProperties" {
				if _, err := regexp.Compile(name); err != nil {
					continue
				}
			}
			c, err := b.convert(m[name], where+"."+k+"."+name, depth+1)
			if err != nil {
				return nil, err
			}
			cm[name] = c
		}
		out[k] = cm
	}
	if nullable, _ := s["nullable"].(bool); nullable {
		return makeNullable(out), nil
	}
	return out, nil
}

// makeNullable maps OpenAPI 3.0 "nullable: true" to JSON Schema.
func makeNullable(out map[string]any) map[string]any {
	if e, ok := out["enum"].([]any); ok {
		hasNull := false
		for _, v := range e {
			if v == nil {
				hasNull = true
			}
		}
		if !hasNull {
			out["enum"] = append(append([]any{}, e...), nil)
		}
	}
	switch t := out["type"].(type) {
	case string:
		if t != "null" {
			out["type"] = []any{t, "null"}
		}
		return out
	case []any:
		for _, e := range t {
			if e == "null" {
				return out
			}
		}
		out["type"] = append(append([]any{}, t...), "null")
		return out
	}
	wrap := map[string]any{}
	for _, k := range []string{"description", "title", "default", "examples", "deprecated"} {
		if v, ok := out[k]; ok {
			wrap[k] = v
			delete(out, k)
		}
	}
	wrap["anyOf"] = []any{out, map[string]any{"type": "null"}}
	return wrap
}

// resolveLocal follows $refs into the builder's $defs, for inspecting the
// top level of a converted schema.
func resolveLocal(defs map[string]any, s any) map[string]any {
	for range 8 {
		m, ok := s.(map[string]any)
		if !ok {
			return nil
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok {
			return nil
		}
		s = defs[name]
	}
	return nil
}
