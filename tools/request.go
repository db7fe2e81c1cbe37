package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidArguments is the category of every error NewRequest returns for
// arguments the caller (the agent) got wrong: unknown, missing, mistyped or
// unsafe values. Such errors are safe to show to the agent.
var ErrInvalidArguments = errors.New("invalid arguments")

// argCheck is the shallow type check of one argument.
type argCheck struct {
	types []string // allowed JSON types; nil allows any
	enum  []any
}

// checkFor derives the shallow check of a converted schema.
func checkFor(defs map[string]any, s any) argCheck { return checkForDepth(defs, s, 0) }

func checkForDepth(defs map[string]any, s any, depth int) argCheck {
	m := resolveLocal(defs, s)
	if m == nil || depth > 8 {
		return argCheck{}
	}
	var ck argCheck
	ck.types = schemaTypes(defs, m, 0)
	if e, ok := m["enum"].([]any); ok {
		ck.enum = e
	}
	// Every branch of allOf must hold, so each one's check applies; keep
	// the first that constrains anything (FastAPI wraps enums this way).
	if all, ok := m["allOf"].([]any); ok && ck.types == nil && ck.enum == nil {
		for _, br := range all {
			if bc := checkForDepth(defs, br, depth+1); bc.types != nil || bc.enum != nil {
				return bc
			}
		}
	}
	return ck
}

func schemaTypes(defs map[string]any, m map[string]any, depth int) []string {
	switch t := m["type"].(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	if depth > 4 {
		return nil
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		branches, ok := m[k].([]any)
		if !ok {
			continue
		}
		var out []string
		for _, b := range branches {
			bm := resolveLocal(defs, b)
			if bm == nil {
				return nil
			}
			bt := schemaTypes(defs, bm, depth+1)
			if bt == nil {
				return nil
			}
			out = append(out, bt...)
		}
		return out
	}
	return nil
}

// valueType names the JSON type of an argument value and whether it is an
// integral number.
func valueType(v any) (string, bool, error) {
	switch x := v.(type) {
	case nil:
		return "null", false, nil
	case bool:
		return "boolean", false, nil
	case string:
		return "string", false, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", false, errors.New("number is not finite")
		}
		return "number", x == math.Trunc(x), nil
	case float32:
		return valueType(float64(x))
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "number", true, nil
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "number", true, nil
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return "", false, fmt.Errorf("%q is not a number", string(x))
		}
		return "number", f == math.Trunc(f), nil
	case []any:
		return "array", false, nil
	case map[string]any:
		return "object", false, nil
	default:
		return "", false, fmt.Errorf("unsupported value of type %T", v)
	}
}

func (ck argCheck) check(name string, v any) error {
	typ, integral, err := valueType(v)
	if err != nil {
		return fmt.Errorf("%w: argument %q: %w", ErrInvalidArguments, name, err)
	}
	if ck.types != nil {
		ok := false
		for _, t := range ck.types {
			if t == typ || (t == "integer" && typ == "number" && integral) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: argument %q is %s, want %s", ErrInvalidArguments, name, typ, strings.Join(ck.types, " or "))
		}
	}
	if ck.enum != nil && typ != "object" && typ != "array" {
		for _, e := range ck.enum {
			if scalarEqual(e, v) {
				return nil
			}
		}
		return fmt.Errorf("%w: argument %q is not one of the allowed values", ErrInvalidArguments, name)
	}
	return nil
}

func scalarEqual(a, b any) bool {
	fa, aNum := asFloat(a)
	fb, bNum := asFloat(b)
	if aNum || bNum {
		return aNum && bNum && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint:
		return float64(x), true
	}
	return 0, false
}

// ArgumentNames lists the tool's argument names in input-schema order of
// parameters then body properties.
func (t *Tool) ArgumentNames() []string {
	var out []string
	for _, p := range t.params {
		out = append(out, p.Arg)
	}
	switch t.body.Mode {
	case "flat":
		out = append(out, t.body.Props...)
	case "whole":
		out = append(out, t.body.Arg)
	}
	return out
}

// NewRequest builds the HTTP request for one call of t against up. Only
// up.BaseURL's scheme and host are ever addressed, and every path stays
// under its path. Arguments are checked first: unknown or missing ones,
// values of the wrong JSON type or outside an enum, path values that are
// empty, dot segments or hold a slash, and header values with control
// characters are refused with an error wrapping ErrInvalidArguments. The
// check is shallow: nested body values are left to the upstream.
func (t *Tool) NewRequest(ctx context.Context, up *Upstream, args map[string]any) (*http.Request, error) {
	if up == nil {
		return nil, errors.New("build request: no upstream")
	}
	if up.Name != t.Upstream {
		return nil, fmt.Errorf("build request: tool %q belongs to upstream %q, not %q", t.Name, t.Upstream, up.Name)
	}
	base, err := parseBaseURL(up.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("build request: upstream %q: %w", up.Name, err)
	}

	known := t.ArgumentNames()
	var unknown []string
	for k := range args {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("%w: unknown argument(s) %s", ErrInvalidArguments, quoteList(unknown))
	}
	var missing []string
	for _, p := range t.params {
		if v, ok := args[p.Arg]; p.Required && (!ok || v == nil) {
			missing = append(missing, p.Arg)
		}
	}
	switch t.body.Mode {
	case "whole":
		if _, ok := args[t.body.Arg]; t.body.Required && !ok {
			missing = append(missing, t.body.Arg)
		}
	case "flat":
		for _, name := range t.bodyReq {
			if _, ok := args[name]; !ok {
				missing = append(missing, name)
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing required argument(s) %s", ErrInvalidArguments, quoteList(missing))
	}
	for _, name := range known {
		v, ok := args[name]
		if !ok {
			continue
		}
		if err := t.checks[name].check(name, v); err != nil {
			if v == nil && t.isParam(name) {
				continue // an absent optional parameter
			}
			return nil, err
		}
	}

	// Path.
	var pb strings.Builder
	pb.WriteString(strings.TrimRight(base.EscapedPath(), "/"))
	values := map[string]string{}
	for _, p := range t.params {
		if p.In != "path" {
			continue
		}
		s, err := simpleValue(args[p.Arg], p.Explode)
		if err != nil {
			return nil, fmt.Errorf("%w: path argument %q: %w", ErrInvalidArguments, p.Arg, err)
		}
		if s == "" {
			return nil, fmt.Errorf("%w: path argument %q is empty", ErrInvalidArguments, p.Arg)
		}
		// Escaped slashes are decoded by many servers and proxies before
		// routing, which would let a value reach another route: refuse them.
		if strings.ContainsAny(s, "/\\") {
			return nil, fmt.Errorf("%w: path argument %q must not contain a slash", ErrInvalidArguments, p.Arg)
		}
		values[p.Wire] = s
	}
	for _, part := range t.tmpl {
		if part.param == "" {
			pb.WriteString(escapeLiteral(part.lit))
			continue
		}
		pb.WriteString(url.PathEscape(values[part.param]))
	}
	escaped := pb.String()
	for _, seg := range strings.Split(escaped, "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") {
			return nil, fmt.Errorf("%w: path arguments form a dot segment", ErrInvalidArguments)
		}
	}
	unescaped, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, fmt.Errorf("build request path: %w", err)
	}

	// Query.
	q := url.Values{}
	for _, p := range t.params {
		if p.In != "query" {
			continue
		}
		v, ok := args[p.Arg]
		if !ok || v == nil {
			continue
		}
		if err := addQuery(q, p, v, t.queryWire); err != nil {
			return nil, fmt.Errorf("%w: query argument %q: %w", ErrInvalidArguments, p.Arg, err)
		}
	}

	u := &url.URL{Scheme: base.Scheme, Host: base.Host, Path: unescaped, RawPath: escaped, RawQuery: q.Encode()}

	// Body.
	var body []byte
	switch t.body.Mode {
	case "whole":
		if v, ok := args[t.body.Arg]; ok {
			if body, err = json.Marshal(v); err != nil {
				return nil, fmt.Errorf("%w: body: %w", ErrInvalidArguments, err)
			}
		}
	case "flat":
		obj := map[string]any{}
		for _, name := range t.body.Props {
			if v, ok := args[name]; ok {
				obj[name] = v
			}
		}
		if len(obj) > 0 || t.body.Required {
			if body, err = json.Marshal(obj); err != nil {
				return nil, fmt.Errorf("%w: body: %w", ErrInvalidArguments, err)
			}
		}
	}
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, t.Method, u.String(), rd)
	} else {
		req, err = http.NewRequestWithContext(ctx, t.Method, u.String(), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	// Never trust the string round trip: re-check what will be dialled.
	if req.URL.Scheme != base.Scheme || req.URL.Host != base.Host {
		return nil, errors.New("build request: target escaped the upstream")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")

	// Headers.
	for _, p := range t.params {
		if p.In != "header" {
			continue
		}
		v, ok := args[p.Arg]
		if !ok || v == nil {
			continue
		}
		if forbiddenHeader(p.Wire) {
			return nil, fmt.Errorf("%w: header %q may not be set", ErrInvalidArguments, p.Wire)
		}
		s, err := simpleValue(v, p.Explode)
		if err != nil {
			return nil, fmt.Errorf("%w: header argument %q: %w", ErrInvalidArguments, p.Arg, err)
		}
		if !validHeaderValue(s) {
			return nil, fmt.Errorf("%w: header argument %q holds control characters", ErrInvalidArguments, p.Arg)
		}
		req.Header.Set(p.Wire, s)
	}
	return req, nil
}

func (t *Tool) isParam(name string) bool {
	for _, p := range t.params {
		if p.Arg == name {
			return true
		}
	}
	return false
}

// parseBaseURL checks an upstream base URL: http or https, a host, no query,
// fragment or user info.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("base url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("base url %q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("base url %q has no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("base url %q must not have a query, fragment or user info", raw)
	}
	return u, nil
}

// scalarString formats a JSON scalar for a URL or header.
func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		return x.String(), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("a %s cannot be serialized here", jsonKind(v))
	}
}

// simpleValue serializes a value in OpenAPI "simple" style (path, header).
func simpleValue(v any, explode bool) (string, error) {
	switch x := v.(type) {
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := scalarString(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		var parts []string
		for _, k := range sortedKeys(x) {
			s, err := scalarString(x[k])
			if err != nil {
				return "", err
			}
			if explode {
				parts = append(parts, k+"="+s)
			} else {
				parts = append(parts, k, s)
			}
		}
		return strings.Join(parts, ","), nil
	default:
		return scalarString(v)
	}
}

// addQuery adds one query argument in OpenAPI "form" (default), "deepObject",
// "spaceDelimited" or "pipeDelimited" style.
func addQuery(q url.Values, p param, v any, isQueryParam func(string) bool) error {
	switch x := v.(type) {
	case []any:
		var parts []string
		for _, e := range x {
			if e == nil {
				continue
			}
			s, err := scalarString(e)
			if err != nil {
				return err
			}
			parts = append(parts, s)
		}
		if p.Explode {
			for _, s := range parts {
				q.Add(p.Wire, s)
			}
			return nil
		}
		sep := ","
		switch p.Style {
		case "spaceDelimited":
			sep = " "
		case "pipeDelimited":
			sep = "|"
		}
		q.Add(p.Wire, strings.Join(parts, sep))
		return nil
	case map[string]any:
		keys := sortedKeys(x)
		if p.Style == "deepObject" {
			for _, k := range keys {
				s, err := scalarString(x[k])
				if err != nil {
					return err
				}
				q.Add(p.Wire+"["+k+"]", s)
			}
			return nil
		}
		if p.Explode {
			for _, k := range keys {
				// An exploded object's keys become query names of their
				// own: one must not add to, or shadow, another parameter,
				// or the upstream would see a value the policy never did.
				if isQueryParam(k) || q.Has(k) {
					return fmt.Errorf("key %q collides with another query parameter", k)
				}
				s, err := scalarString(x[k])
				if err != nil {
					return err
				}
				q.Add(k, s)
			}
			return nil
		}
		s, err := simpleValue(x, false)
		if err != nil {
			return err
		}
		q.Add(p.Wire, s)
		return nil
	default:
		s, err := scalarString(v)
		if err != nil {
			return err
		}
		q.Add(p.Wire, s)
		return nil
	}
}

// escapeLiteral percent-encodes a literal piece of a path template,
// keeping its slashes.
func escapeLiteral(s string) string {
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return strings.Join(segs, "/")
}

// validHeaderValue refuses control characters other than tab (so CR, LF and
// NUL can never split or end a header).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func canonicalHeader(name string) string { return textproto.CanonicalMIMEHeaderKey(name) }

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// queryWire reports whether name is the wire name of one of t's query
// parameters.
func (t *Tool) queryWire(name string) bool {
	for _, p := range t.params {
		if p.In == "query" && p.Wire == name {
			return true
		}
	}
	return false
}
