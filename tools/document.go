package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxDocumentBytes is the largest OpenAPI document LoadDocument reads and
// Convert accepts.
const MaxDocumentBytes = 16 << 20

// maxDocumentDepth bounds the nesting of a parsed document.
const maxDocumentDepth = 512

// parseDocument decodes a JSON or YAML document into generic JSON values:
// map[string]any, []any, string, json.Number, bool and nil.
func parseDocument(doc []byte) (map[string]any, error) {
	if len(doc) > MaxDocumentBytes {
		return nil, fmt.Errorf("openapi document is %d bytes, more than the %d allowed", len(doc), MaxDocumentBytes)
	}
	doc = bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimLeft(doc, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("openapi document is empty")
	}
	var raw any
	if trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("parse openapi document as json: %w", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, errors.New("parse openapi document as json: unexpected data after the top-level object")
		}
	} else {
		if err := yaml.Unmarshal(trimmed, &raw); err != nil {
			return nil, fmt.Errorf("parse openapi document as yaml: %w", err)
		}
	}
	norm, err := normalize(raw, 0)
	if err != nil {
		return nil, fmt.Errorf("parse openapi document: %w", err)
	}
	root, ok := norm.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi document is a %s, not an object", jsonKind(norm))
	}
	return root, nil
}

// normalize turns decoded YAML or JSON into generic JSON values.
func normalize(v any, depth int) (any, error) {
	if depth > maxDocumentDepth {
		return nil, fmt.Errorf("document nested deeper than %d levels", maxDocumentDepth)
	}
	switch x := v.(type) {
	case nil, bool, string, json.Number:
		return x, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalize(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalize(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalize(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errors.New("document holds a number that is not finite")
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case []byte:
		return string(x), nil
	default:
		return nil, fmt.Errorf("document holds an unsupported value of type %T", v)
	}
}

// jsonKind names the JSON type of a generic value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64, int, int64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// resolvePointer resolves a local JSON reference ("#/a/b") in root.
func resolvePointer(root map[string]any, ref string) (any, error) {
	if !strings.HasPrefix(ref, "#") {
		return nil, fmt.Errorf("%w: %q", errRemoteRef, ref)
	}
	frag := ref[1:]
	if frag == "" {
		return root, nil
	}
	if !strings.HasPrefix(frag, "/") {
		return nil, fmt.Errorf("$ref %q is not a json pointer", ref)
	}
	var cur any = root
	for _, tok := range strings.Split(frag[1:], "/") {
		if strings.Contains(tok, "%") {
			if u, err := url.PathUnescape(tok); err == nil {
				tok = u
			}
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("$ref %q not found", ref)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("$ref %q not found", ref)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("$ref %q not found", ref)
		}
	}
	return cur, nil
}

// errRemoteRef marks a $ref to another document, which is not supported.
var errRemoteRef = errors.New("$ref to another document is not supported")
