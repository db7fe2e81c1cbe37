package tools

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

type goldenTool struct {
	Name        string          `json:"name"`
	Upstream    string          `json:"upstream"`
	Operation   string          `json:"operation"`
	Method      string          `json:"method"`
	Path        string          `json:"path"`
	Title       string          `json:"title,omitempty"`
	Description string          `json:"description,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	ReadOnly    bool            `json:"read_only"`
	Destructive bool            `json:"destructive"`
	Idempotent  bool            `json:"idempotent"`
	Deprecated  bool            `json:"deprecated,omitempty"`
	Params      []param         `json:"params,omitempty"`
	Body        bodySpec        `json:"body"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type goldenFile struct {
	Tools    []goldenTool `json:"tools"`
	Warnings []string     `json:"warnings,omitempty"`
}

func render(t *testing.T, ts []*Tool, ws []Warning) []byte {
	t.Helper()
	g := goldenFile{Tools: []goldenTool{}}
	for _, x := range ts {
		g.Tools = append(g.Tools, goldenTool{
			Name: x.Name, Upstream: x.Upstream, Operation: x.Operation, Method: x.Method, Path: x.Path,
			Title: x.Title, Description: x.Description, Tags: x.Tags, ReadOnly: x.ReadOnly,
			Destructive: x.Destructive, Idempotent: x.Idempotent, Deprecated: x.Deprecated,
			Params: x.params, Body: x.body, InputSchema: x.InputSchema,
		})
	}
	for _, w := range ws {
		g.Warnings = append(g.Warnings, w.String())
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// compileSchema checks that s is a valid JSON Schema (2020-12) and returns it.
func compileSchema(t testing.TB, name string, s json.RawMessage) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(s))
	if err != nil {
		t.Fatalf("%s: input schema is not json: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("mem://"+name+".json", doc); err != nil {
		t.Fatalf("%s: add schema: %v", name, err)
	}
	sch, err := c.Compile("mem://" + name + ".json")
	if err != nil {
		t.Fatalf("%s: input schema does not compile: %v\n%s", name, err, s)
	}
	return sch
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name, file, upstream string
		wantTools            int
	}{
		{"fastapi 3.0 crm", "fastapi-crm.openapi.json", "crm", 13},
		{"fastapi 3.1 catalog", "fastapi31.openapi.json", "catalog", 7},
		{"recursive yaml", "recursive.openapi.yaml", "rec", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			ts, ws, err := ConvertWithWarnings(tc.upstream, doc)
			if err != nil {
				t.Fatalf("convert: %v", err)
			}
			if len(ts) != tc.wantTools {
				t.Errorf("got %d tools, want %d", len(ts), tc.wantTools)
			}
			for _, x := range ts {
				compileSchema(t, x.Name, x.InputSchema)
				if len(x.Name) > MaxNameLength || nameRe.MatchString(x.Name) {
					t.Errorf("tool name %q is invalid", x.Name)
				}
			}
			got := render(t, ts, ws)
			golden := filepath.Join("testdata", strings.TrimSuffix(strings.TrimSuffix(tc.file, ".json"), ".yaml")+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("conversion differs from %s (run with -update after checking):\n%s", golden, firstDiff(string(want), string(got)))
			}
			// Converting twice gives the same result.
			again, ws2, err := ConvertWithWarnings(tc.upstream, doc)
			if err != nil || !bytes.Equal(render(t, again, ws2), got) {
				t.Errorf("conversion is not deterministic")
			}
		})
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + itoa(i+1) + ":\n- " + w + "\n+ " + g
		}
	}
	return ""
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func convertOne(t *testing.T, doc string) map[string]*Tool {
	t.Helper()
	ts, err := Convert("up", []byte(doc))
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	m := map[string]*Tool{}
	for _, x := range ts {
		m[x.Name] = x
		compileSchema(t, x.Name, x.InputSchema)
	}
	return m
}

func TestConvertSemantics(t *testing.T) {
	doc, err := os.ReadFile("testdata/fastapi31.openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	ts, ws, err := ConvertWithWarnings("catalog", doc)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*Tool{}
	for _, x := range ts {
		byName[x.Name] = x
	}
	schemaOf := func(name string) map[string]any {
		t.Helper()
		x, ok := byName[name]
		if !ok {
			t.Fatalf("no tool %q; have %v", name, keys(byName))
		}
		var m map[string]any
		if err := json.Unmarshal(x.InputSchema, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Run("recursive body flattened with defs", func(t *testing.T) {
		s := schemaOf("catalog_create_category")
		props := s["properties"].(map[string]any)
		if _, ok := props["children"]; !ok {
			t.Fatalf("body properties not flattened: %v", props)
		}
		defs, ok := s["$defs"].(map[string]any)
		if !ok || defs["Category"] == nil {
			t.Fatalf("recursive schema not in $defs: %v", s)
		}
		items := props["children"].(map[string]any)["items"].(map[string]any)
		if items["$ref"] != "#/$defs/Category" {
			t.Errorf("children.items = %v, want a $ref to #/$defs/Category", items)
		}
	})
	t.Run("param clash keeps body whole", func(t *testing.T) {
		s := schemaOf("catalog_replace_product")
		props := s["properties"].(map[string]any)
		if _, ok := props["body"]; !ok {
			t.Fatalf("want one body argument on clash, got %v", keys(props))
		}
		if byName["catalog_replace_product"].body.Mode != "whole" {
			t.Errorf("body mode %q", byName["catalog_replace_product"].body.Mode)
		}
	})
	t.Run("array body is one argument", func(t *testing.T) {
		s := schemaOf("catalog_add_product_tags")
		props := s["properties"].(map[string]any)
		if props["body"].(map[string]any)["type"] != "array" {
			t.Errorf("body = %v", props["body"])
		}
	})
	t.Run("no operationId derives a name", func(t *testing.T) {
		x := byName["catalog_delete_products_product_id"]
		if x == nil {
			t.Fatalf("no derived tool name; have %v", keys(byName))
		}
		if !x.Destructive || !x.Idempotent || x.ReadOnly || !x.Deprecated {
			t.Errorf("annotations of DELETE wrong: %+v", x)
		}
	})
	t.Run("long names are cut with a hash", func(t *testing.T) {
		found := false
		for _, x := range ts {
			if strings.HasPrefix(x.Name, "catalog_search_products") {
				found = true
				if len(x.Name) != MaxNameLength {
					t.Errorf("name %q has length %d", x.Name, len(x.Name))
				}
			}
		}
		if !found {
			t.Error("long-named tool missing")
		}
	})
	t.Run("unsupported parts are reported", func(t *testing.T) {
		all := ""
		for _, w := range ws {
			all += w.String() + "\n"
		}
		for _, want := range []string{"cookie parameter \"session\"", "header parameter \"Authorization\"", "multipart/form-data"} {
			if !strings.Contains(all, want) {
				t.Errorf("warnings lack %q:\n%s", want, all)
			}
		}
		if _, ok := byName["catalog_upload_image"]; ok {
			t.Error("operation with only a multipart body must be skipped")
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestConvertNames(t *testing.T) {
	doc := `{"openapi":"3.0.0","paths":{
	  "/a":{"get":{"operationId":"get.a"},"post":{"operationId":"get_a"}},
	  "/b/{id}":{"get":{"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"string"}}]}},
	  "/":{"get":{}}}}`
	m := convertOne(t, doc)
	for _, want := range []string{"up_get_a", "up_get_b_id", "up_get_root"} {
		if m[want] == nil {
			t.Errorf("missing tool %q; have %v", want, keys(m))
		}
	}
	if len(m) != 4 {
		t.Errorf("want 4 distinct tools on a sanitised-name clash, got %v", keys(m))
	}
}

func TestConvertErrors(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"empty", "", "empty"},
		{"not json", "{", "parse openapi document as json"},
		{"trailing data", `{"openapi":"3.0.0"} {}`, "unexpected data"},
		{"bad yaml", "openapi: [", "parse openapi document as yaml"},
		{"scalar", "42", "not an object"},
		{"no version", `{"paths":{}}`, "no \"openapi\" version"},
		{"swagger", `{"swagger":"2.0"}`, "swagger 2.0"},
		{"version 4", `{"openapi":"4.0.0"}`, "not supported"},
		{"paths not object", `{"openapi":"3.1.0","paths":[]}`, "paths is a array"},
		{"operation not object", `{"openapi":"3.1.0","paths":{"/a":{"get":"x"}}}`, "GET /a: operation is a string"},
		{"dangling ref", `{"openapi":"3.1.0","paths":{"/a":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/Nope"}}}}}}}}`, `$ref "#/components/schemas/Nope" not found`},
		{"dangling param ref", `{"openapi":"3.0.1","paths":{"/a":{"get":{"parameters":[{"$ref":"#/components/parameters/X"}]}}}}`, "GET /a"},
		{"param without name", `{"openapi":"3.0.1","paths":{"/a":{"get":{"parameters":[{"in":"query"}]}}}}`, "no name"},
		{"infinite yaml number", "openapi: 3.0.0\nx: .inf\n", "not finite"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Convert("up", []byte(tc.doc))
			if err == nil {
				t.Fatalf("want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	broken, err := os.ReadFile(filepath.Join("testdata", "broken.openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Convert("up", broken)
	want := `openapi document: POST /orders/{order_id}: schema at POST /orders/{order_id} requestBody.content.application/json.schema: $ref "#/components/schemas/OrderUpdate" not found`
	if err == nil || err.Error() != want {
		t.Errorf("broken document error:\n got %v\nwant %s", err, want)
	}
	if _, err := Convert("", []byte(`{"openapi":"3.0.0"}`)); err == nil {
		t.Error("empty upstream name accepted")
	}
	big := bytes.Repeat([]byte(" "), MaxDocumentBytes+1)
	if _, err := Convert("up", big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized document: %v", err)
	}
}

func TestConvertSkips(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"dot segment template", `{"openapi":"3.0.0","paths":{"/a/../b":{"get":{}}}}`, "dot segment"},
		{"query in template", `{"openapi":"3.0.0","paths":{"/a?x=1":{"get":{}}}}`, "not allowed"},
		{"undeclared path param", `{"openapi":"3.0.0","paths":{"/a/{id}":{"get":{}}}}`, "not declared"},
		{"unbalanced brace", `{"openapi":"3.0.0","paths":{"/a/{id":{"get":{}}}}`, "unbalanced"},
		{"remote ref", `{"openapi":"3.0.0","paths":{"/a":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"other.json#/X"}}}}}}}}`, "another document"},
		{"form body required", `{"openapi":"3.0.0","paths":{"/a":{"post":{"requestBody":{"required":true,"content":{"application/x-www-form-urlencoded":{}}}}}}}`, "only JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts, ws, err := ConvertWithWarnings("up", []byte(tc.doc))
			if err != nil {
				t.Fatalf("want a skip, got error %v", err)
			}
			if len(ts) != 0 {
				t.Errorf("operation not skipped: %v", ts[0].Name)
			}
			if len(ws) == 0 || !strings.Contains(ws[0].Reason, tc.want) {
				t.Errorf("warnings %v lack %q", ws, tc.want)
			}
		})
	}
}

func TestConvertSchemaBlowupIsBounded(t *testing.T) {
	// Each level refers to the next twice: inlining would need 2^40 nodes.
	var b strings.Builder
	b.WriteString(`{"openapi":"3.0.0","paths":{"/a":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/S0"}}}}}}},"components":{"schemas":{`)
	for i := range 40 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"S` + itoa(i) + `":{"type":"object","properties":{"l":{"$ref":"#/components/schemas/S` + itoa(i+1) + `"},"r":{"$ref":"#/components/schemas/S` + itoa(i+1) + `"}}}`)
	}
	b.WriteString(`,"S40":{"type":"string"}}}}`)
	ts, ws, err := ConvertWithWarnings("up", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 0 || len(ws) != 1 || !strings.Contains(ws[0].Reason, "too large") {
		t.Errorf("want the operation skipped as too large, got %d tools, warnings %v", len(ts), ws)
	}
}

func TestNullable30(t *testing.T) {
	m := convertOne(t, `{"openapi":"3.0.3","paths":{"/a":{"get":{"operationId":"a","parameters":[
	  {"name":"s","in":"query","schema":{"type":"string","nullable":true,"enum":["x"]}},
	  {"name":"r","in":"query","schema":{"allOf":[{"type":"string"}],"nullable":true,"description":"d"}}]}}}}`)
	sch := compileSchema(t, "a", m["up_a"].InputSchema)
	for _, v := range []string{`{"s":null}`, `{"s":"x"}`, `{"r":null}`, `{"r":"q"}`} {
		inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(v))
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s rejected: %v", v, err)
		}
	}
	for _, v := range []string{`{"s":"y"}`, `{"r":1}`, `{"zz":1}`} {
		inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(v))
		if err := sch.Validate(inst); err == nil {
			t.Errorf("%s accepted", v)
		}
	}
}

func FuzzConvert(f *testing.F) {
	// The large golden documents are covered by TestGolden; small seeds
	// keep each fuzz execution cheap.
	for _, name := range []string{"recursive.openapi.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"openapi":"3.0.0","paths":{"/a/{x}":{"get":{"parameters":[{"name":"x","in":"path","schema":{"$ref":"#/components/schemas/X"}}]}}},"components":{"schemas":{"X":{"anyOf":[{"$ref":"#/components/schemas/X"}]}}}}`))
	f.Add([]byte("openapi: 3.1.0\npaths:\n  /a:\n    get:\n      operationId: x\n      parameters:\n        - {name: q, in: query, schema: {type: [string, 'null'], pattern: '('}}\n"))
	f.Add([]byte(`{"openapi":"3.1.0","paths":{"/a":{"$ref":"#/paths/~1a"}}}`))
	f.Add([]byte(`{"openapi":"3.1.0","paths":{"/c/{id}":{"parameters":[{"name":"id","in":"path","required":true,"schema":{"type":"integer"}}],
	  "put":{"operationId":"put_c","tags":["t"],"parameters":[{"name":"q","in":"query","style":"deepObject","schema":{"type":"object"}},{"name":"X-H","in":"header","schema":{"anyOf":[{"type":"string"},{"type":"null"}]}}],
	  "requestBody":{"required":true,"content":{"application/json":{"schema":{"$ref":"#/components/schemas/C"}}}}}}},
	  "components":{"schemas":{"C":{"type":"object","required":["name"],"properties":{"name":{"type":"string","examples":["x"]},"kids":{"type":"array","items":{"$ref":"#/components/schemas/C"}},"k":{"$ref":"#/components/schemas/K","description":"d"}}},"K":{"enum":["a","b"]}}}}`))
	f.Add([]byte(`{"openapi":"3.0.0","paths":{"/a":{"post":{"parameters":[{"name":"q","in":"query","schema":{"$ref":"#/components/schemas/X"}}],"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/X"}}}}}}},"components":{"schemas":{"X":{"allOf":[{"$ref":"#/components/schemas/X"}],"nullable":true}}}}`))
	f.Add([]byte(`{"openapi":"3.0.0","paths":{"/{a}{b}":{"get":{"operationId":"` + strings.Repeat("é", 40) + `","parameters":[{"name":"a","in":"path","schema":{"type":"string"}},{"name":"b","in":"path","schema":{"type":"string"}},{"name":"a","in":"query"},{"name":"a","in":"header"}]}}}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		ts, ws, err := ConvertWithWarnings("fz", doc)
		if err != nil {
			if len(ts) != 0 || len(ws) != 0 {
				t.Fatal("tools or warnings returned with an error")
			}
			return
		}
		seen := map[string]bool{}
		for _, x := range ts {
			if x.Name == "" || len(x.Name) > MaxNameLength || nameRe.MatchString(x.Name) || seen[x.Name] {
				t.Fatalf("bad or duplicate tool name %q", x.Name)
			}
			seen[x.Name] = true
			if !json.Valid(x.InputSchema) {
				t.Fatalf("%s: input schema is not json", x.Name)
			}
			compileSchema(t, x.Name, x.InputSchema)
		}
	})
}

func TestYAMLAliasBombRefused(t *testing.T) {
	doc := "openapi: 3.0.0\na: &a [x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for i := range 9 {
		name := string(rune('b' + i))
		doc += name + ": &" + name + " [" + strings.Repeat("*"+prev+", ", 8) + "*" + prev + "]\n"
		prev = name
	}
	_, err := Convert("up", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "aliasing") {
		t.Fatalf("want yaml's excessive aliasing error, got %v", err)
	}
}
