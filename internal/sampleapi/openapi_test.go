package sampleapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func loadDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(OpenAPI()))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("OpenAPI() is not JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("OpenAPI() has data after the document")
	}
	return doc
}

// schemaOf resolves a local $ref.
func schemaOf(t *testing.T, doc map[string]any, ref string) map[string]any {
	t.Helper()
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	if !ok {
		t.Fatalf("non-local $ref %q", ref)
	}
	s, ok := doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	if !ok {
		t.Fatalf("$ref %q does not resolve", ref)
	}
	return s
}

// conform reports how v departs from schema: missing required members,
// members the schema does not declare, wrong types and enum values.
func conform(t *testing.T, doc map[string]any, schema map[string]any, v any, at string) []string {
	t.Helper()
	if ref, ok := schema["$ref"].(string); ok {
		return conform(t, doc, schemaOf(t, doc, ref), v, at)
	}
	if alts, ok := schema["anyOf"].([]any); ok {
		var all []string
		for _, alt := range alts {
			errs := conform(t, doc, alt.(map[string]any), v, at)
			if len(errs) == 0 {
				return nil
			}
			all = append(all, errs...)
		}
		return []string{fmt.Sprintf("%s: matches no anyOf branch: %v", at, all)}
	}
	var errs []string
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v not in %v", at, v, enum))
	}
	switch schema["type"] {
	case nil:
		return errs // any value
	case "null":
		if v != nil {
			errs = append(errs, at+": want null")
		}
	case "string":
		if _, ok := v.(string); !ok {
			errs = append(errs, fmt.Sprintf("%s: want string, got %T", at, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: want boolean, got %T", at, v))
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != math.Trunc(f) {
			errs = append(errs, fmt.Sprintf("%s: want integer, got %v", at, v))
		}
	case "array":
		list, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want array, got %T", at, v))
		}
		for i, item := range list {
			errs = append(errs, conform(t, doc, schema["items"].(map[string]any), item, at+"["+strconv.Itoa(i)+"]")...)
		}
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want object, got %T", at, v))
		}
		props, _ := schema["properties"].(map[string]any)
		required, _ := schema["required"].([]any)
		for _, r := range required {
			if _, ok := obj[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required %q missing", at, r))
			}
		}
		for k, val := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, conform(t, doc, ps, val, at+"."+k)...)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case bool:
				if !ap {
					errs = append(errs, fmt.Sprintf("%s: undeclared member %q", at, k))
				}
			case map[string]any:
				errs = append(errs, conform(t, doc, ap, val, at+"."+k)...)
			default:
				if props != nil {
					errs = append(errs, fmt.Sprintf("%s: undeclared member %q", at, k))
				}
			}
		}
	default:
		errs = append(errs, fmt.Sprintf("%s: unknown type %v", at, schema["type"]))
	}
	return errs
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadDoc(t)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", doc["openapi"])
	}
	info := doc["info"].(map[string]any)
	if info["title"] == "" || info["version"] == "" {
		t.Errorf("info = %v", info)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, name := range []string{"HTTPValidationError", "ValidationError", "Customer", "TicketCreate", "Tenant"} {
		if _, ok := schemas[name]; !ok {
			t.Errorf("components.schemas lacks %s", name)
		}
	}
	// Every $ref anywhere resolves.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				schemaOf(t, doc, ref)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
	// FastAPI's optional fields: anyOf with a null branch.
	phone := schemas["Customer"].(map[string]any)["properties"].(map[string]any)["phone"].(map[string]any)
	if alts, ok := phone["anyOf"].([]any); !ok || !slices.ContainsFunc(alts, func(a any) bool { return a.(map[string]any)["type"] == "null" }) {
		t.Errorf("Customer.phone = %v, want anyOf with null", phone)
	}
}

var (
	pathParamSamples = map[string]string{"customer_id": "c-1", "ticket_id": "t-1", "order_id": "o-100"}
	bodySamples      = map[string]string{
		"create_ticket": `{"customer_id":"c-1","subject":"Broken","body":"It broke","priority":"high"}`,
		"update_ticket": `{"status":"pending","reply":{"author":"a","body":"b"}}`,
		"issue_refund":  `{"tenant_id":"acme","order_id":"o-100","amount_cents":100,"reason":"damaged","comment":"x"}`,
	}
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	pathParam = regexp.MustCompile(`\{([^}]+)\}`)
)

// TestOpenAPIMatchesRoutes walks the document, issues one request per
// operation against a fresh API, checks the answer against the declared
// response schema, and checks that every served route is documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadDoc(t)
	served := map[string]string{} // "METHOD path" -> operationId
	for _, rt := range routes {
		served[rt.method+" "+rt.path] = rt.operationID
	}
	documented := map[string]bool{}
	opIDs := map[string]bool{}
	for path, item := range doc["paths"].(map[string]any) {
		for method, o := range item.(map[string]any) {
			op := o.(map[string]any)
			key := strings.ToUpper(method) + " " + path
			documented[key] = true
			t.Run(key, func(t *testing.T) {
				id, _ := op["operationId"].(string)
				if !snakeCase.MatchString(id) || opIDs[id] {
					t.Errorf("operationId %q is not unique snake_case", id)
				}
				opIDs[id] = true
				if served[key] != id {
					t.Errorf("served operation for %s is %q, documented %q", key, served[key], id)
				}
				if tags, _ := op["tags"].([]any); len(tags) == 0 || op["summary"] == "" {
					t.Errorf("operation %s lacks tags or summary", id)
				}
				responses := op["responses"].(map[string]any)
				params, _ := op["parameters"].([]any)
				_, hasBody := op["requestBody"]
				if (len(params) > 0 || hasBody) && responses["422"] == nil {
					t.Errorf("operation %s takes input but declares no 422", id)
				}

				target := path
				var declaredPath []string
				for _, p := range params {
					pm := p.(map[string]any)
					if _, ok := pm["schema"].(map[string]any); !ok {
						t.Errorf("parameter %v has no schema", pm["name"])
					}
					if pm["in"] == "path" {
						declaredPath = append(declaredPath, pm["name"].(string))
						target = strings.ReplaceAll(target, "{"+pm["name"].(string)+"}", pathParamSamples[pm["name"].(string)])
					}
				}
				var inPath []string
				for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
					inPath = append(inPath, m[1])
				}
				if !slices.Equal(inPath, declaredPath) {
					t.Errorf("path placeholders %v, declared path parameters %v", inPath, declaredPath)
				}
				body := ""
				if hasBody {
					rb := op["requestBody"].(map[string]any)
					ref := rb["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)["$ref"]
					if rb["required"] != true || ref == nil {
						t.Errorf("requestBody = %v, want required application/json $ref", rb)
					}
					if body = bodySamples[id]; body == "" {
						t.Fatalf("no sample body for %s", id)
					}
				}

				// whoami decodes this; every other operation ignores it.
				hdr := map[string]string{"Authorization": "Bearer " + makeJWT(`{"sub":"alice","act":{"sub":"bot"},"roles":["support"],"aud":"crm","iss":"http://127.0.0.1:8080","exp":1}`)}
				status, _, v := call(t, New().Handler(), strings.ToUpper(method), target, body, hdr)
				resp, ok := responses[strconv.Itoa(status)].(map[string]any)
				if status < 200 || status > 299 || !ok {
					t.Fatalf("%s %s: status %d (%v) is not a declared success", method, target, status, v)
				}
				content, hasContent := resp["content"].(map[string]any)
				if !hasContent {
					if v != nil {
						t.Errorf("status %d declares no content but the answer is %v", status, v)
					}
					return
				}
				schema := content["application/json"].(map[string]any)["schema"].(map[string]any)
				for _, e := range conform(t, doc, schema, v, "$") {
					t.Error(e)
				}
			})
		}
	}
	for key := range served {
		if !documented[key] {
			t.Errorf("route %s is served but not in the document", key)
		}
	}
}

// TestValidationErrorsConform checks that 404 and 422 answers have the
// shapes the document declares (HTTPValidationError) and FastAPI uses.
func TestValidationErrorsConform(t *testing.T) {
	doc := loadDoc(t)
	hv := map[string]any{"$ref": "#/components/schemas/HTTPValidationError"}
	for _, tc := range []struct{ name, method, target, body string }{
		{"query", "GET", "/customers?limit=x&tenant_id=y", ""},
		{"body fields", "POST", "/refunds", `{"amount_cents":0.5,"reason":1}`},
		{"malformed", "POST", "/tickets", `{`},
		{"nested", "PATCH", "/tickets/t-1", `{"reply":{"replies":[1]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, v := call(t, New().Handler(), tc.method, tc.target, tc.body, nil)
			if status != 422 {
				t.Fatalf("status %d", status)
			}
			for _, e := range conform(t, doc, hv, v, "$") {
				t.Error(e)
			}
		})
	}
	_, _, v := call(t, New().Handler(), "GET", "/customers/nope", "", nil)
	if d, ok := v.(map[string]any)["detail"].(string); !ok || d == "" {
		t.Errorf("404 answer = %v, want {\"detail\": string}", v)
	}
}

func TestOpenAPIReturnsACopy(t *testing.T) {
	a := OpenAPI()
	a[0] = 'X'
	if OpenAPI()[0] == 'X' {
		t.Fatal("OpenAPI() exposes the shared document")
	}
}

// TestConformCatchesDrift makes sure the schema check above can fail.
func TestConformCatchesDrift(t *testing.T) {
	doc := loadDoc(t)
	health := map[string]any{"$ref": "#/components/schemas/Health"}
	prio := map[string]any{"$ref": "#/components/schemas/Priority"}
	tests := []struct {
		name   string
		schema map[string]any
		value  any
		bad    bool
	}{
		{"conforming", health, map[string]any{"status": "ok"}, false},
		{"missing required", health, map[string]any{}, true},
		{"undeclared member", health, map[string]any{"status": "ok", "extra": 1.0}, true},
		{"wrong type", health, map[string]any{"status": 1.0}, true},
		{"enum value", prio, "high", false},
		{"not an enum value", prio, "urgent", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := conform(t, doc, tt.schema, tt.value, "$"); (len(errs) > 0) != tt.bad {
				t.Fatalf("conform = %v, want bad=%v", errs, tt.bad)
			}
		})
	}
}
