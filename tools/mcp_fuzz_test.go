package tools

import (
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// FuzzConvertMCPTool feeds tool definitions as an upstream could send them:
// conversion never panics, and a tool it accepts has an object input
// schema and a digest that does not depend on the order of keys.
func FuzzConvertMCPTool(f *testing.F) {
	for _, seed := range []string{
		`{"name":"echo","description":"Echoes.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}},"annotations":{"readOnlyHint":true}}`,
		`{"name":"x","inputSchema":{"type":"string"}}`,
		`{"name":"y","inputSchema":{"type":"object","$ref":"http://169.254.169.254/"}}`,
		`{"name":"z","inputSchema":{"type":"object"},"outputSchema":{"type":"object","properties":{"n":{"type":"number","minimum":1e400}}}}`,
		`{"name":"bad name!","inputSchema":{"type":"object"}}`,
		`{"name":"w","inputSchema":{"type":"object","properties":{"a":{"$ref":"#/$defs/A"}},"$defs":{"A":{"$ref":"#/$defs/A"}}}}`,
	} {
		f.Add([]byte(seed))
	}
	up := &Upstream{Name: "fz", Prefix: "fz_"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var st mcp.Tool
		if json.Unmarshal(data, &st) != nil {
			return
		}
		tool, err := convertMCPTool(up, st)
		if err != nil {
			return
		}
		var top map[string]any
		if json.Unmarshal(tool.InputSchema, &top) != nil || top["type"] != "object" {
			t.Fatalf("accepted input schema %s", tool.InputSchema)
		}
		again, err := convertMCPTool(up, st)
		if err != nil || again.Digest != tool.Digest {
			t.Fatalf("digest not stable: %v", err)
		}
	})
}

func TestDigestIgnoresKeyOrder(t *testing.T) {
	a, _ := definitionDigest("t", "", "d", json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"number"}}}`), nil, nil)
	b, _ := definitionDigest("t", "", "d", json.RawMessage(`{"properties":{"b":{"type":"number"},"a":{"type":"string"}},"type":"object"}`), nil, nil)
	c, _ := definitionDigest("t", "", "d2", json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"number"}}}`), nil, nil)
	if a != b || a == c {
		t.Errorf("digests %s %s %s: key order must not matter, the description must", a, b, c)
	}
}
