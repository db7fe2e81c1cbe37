package tools

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadTools(tb testing.TB, file, upstream string) map[string]*Tool {
	tb.Helper()
	doc, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := Convert(upstream, doc)
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]*Tool{}
	for _, t := range ts {
		m[t.Name] = t
	}
	return m
}

func TestNewRequest(t *testing.T) {
	crm := loadTools(t, "fastapi-crm.openapi.json", "crm")
	cat := loadTools(t, "fastapi31.openapi.json", "catalog")
	crmUp := &Upstream{Name: "crm", BaseURL: "http://crm.internal:8000/api/"}
	catUp := &Upstream{Name: "catalog", BaseURL: "https://catalog.internal"}
	cases := []struct {
		name    string
		tool    *Tool
		up      *Upstream
		args    map[string]any
		wantURL string // full URL with escaped path
		wantErr string
		check   func(t *testing.T, hdr map[string]string, body string)
	}{
		{name: "path param", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "c-1"}, wantURL: "http://crm.internal:8000/api/customers/c-1"},
		{name: "base path without trailing slash", tool: crm["crm_get_customer"],
			up: &Upstream{Name: "crm", BaseURL: "http://crm.internal/v1"}, args: map[string]any{"customer_id": "c-1"},
			wantURL: "http://crm.internal/v1/customers/c-1"},
		{name: "query escaped, fragment and query chars stay in the segment", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "c-1?admin=1#x"}, wantURL: "http://crm.internal:8000/api/customers/c-1%3Fadmin=1%23x"},
		{name: "percent is escaped", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "%2e%2e%2fadmin"}, wantURL: "http://crm.internal:8000/api/customers/%252e%252e%252fadmin"},
		{name: "spaces and unicode", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "a b/ü"}, wantErr: "slash"},
		{name: "traversal", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "../admin"}, wantErr: "slash"},
		{name: "backslash traversal", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": `..\admin`}, wantErr: "slash"},
		{name: "dot dot segment", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": ".."}, wantErr: "dot segment"},
		{name: "dot segment", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "."}, wantErr: "dot segment"},
		{name: "absolute url as path value", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "http:"}, wantURL: "http://crm.internal:8000/api/customers/http:"},
		{name: "empty path value", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": ""}, wantErr: "empty"},
		{name: "missing required", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{}, wantErr: `missing required argument(s) "customer_id"`},
		{name: "null required", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": nil}, wantErr: "missing required"},
		{name: "unknown argument", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": "c-1", "Authorization": "Bearer x", "host": "evil"}, wantErr: `unknown argument(s) "Authorization", "host"`},
		{name: "object in path", tool: crm["crm_get_customer"], up: crmUp,
			args: map[string]any{"customer_id": map[string]any{"a": "b"}}, wantErr: "is object, want string"},
		{name: "query injection", tool: crm["crm_list_customers"], up: crmUp,
			args:    map[string]any{"q": "x&tenant_id=globex#frag", "limit": 5.0},
			wantURL: "http://crm.internal:8000/api/customers?limit=5&q=x%26tenant_id%3Dglobex%23frag"},
		{name: "nil optional omitted", tool: crm["crm_list_customers"], up: crmUp,
			args: map[string]any{"q": nil}, wantURL: "http://crm.internal:8000/api/customers"},
		{name: "wrong type", tool: crm["crm_list_customers"], up: crmUp,
			args: map[string]any{"limit": "ten"}, wantErr: `argument "limit" is string, want integer`},
		{name: "not an integer", tool: crm["crm_list_customers"], up: crmUp,
			args: map[string]any{"limit": 1.5}, wantErr: "want integer"},
		{name: "enum", tool: crm["crm_list_customers"], up: crmUp,
			args: map[string]any{"tenant_id": "initech"}, wantErr: "not one of the allowed values"},
		{name: "json number", tool: crm["crm_list_customers"], up: crmUp,
			args: map[string]any{"limit": json.Number("7")}, wantURL: "http://crm.internal:8000/api/customers?limit=7"},
		{name: "array query repeated", tool: crm["crm_list_customer_orders"], up: crmUp,
			args:    map[string]any{"customer_id": "c-1", "sku": []any{"A&B", "C"}},
			wantURL: "http://crm.internal:8000/api/customers/c-1/orders?sku=A%26B&sku=C"},
		{name: "flattened body and header", tool: crm["crm_create_ticket"], up: crmUp,
			args: map[string]any{"tenant_id": "acme", "customer_id": "c-1", "subject": "hi", "x-request-source": "agent",
				"thread": []any{map[string]any{"author": "a", "body": "b"}}},
			wantURL: "http://crm.internal:8000/api/tickets",
			check: func(t *testing.T, hdr map[string]string, body string) {
				if hdr["X-Request-Source"] != "agent" || hdr["Content-Type"] != "application/json" {
					t.Errorf("headers %v", hdr)
				}
				want := `{"customer_id":"c-1","subject":"hi","tenant_id":"acme","thread":[{"author":"a","body":"b"}]}`
				if body != want {
					t.Errorf("body %s, want %s", body, want)
				}
			}},
		{name: "header crlf", tool: crm["crm_create_ticket"], up: crmUp,
			args:    map[string]any{"tenant_id": "acme", "customer_id": "c-1", "subject": "hi", "x-request-source": "a\r\nAuthorization: Bearer evil"},
			wantErr: "control characters"},
		{name: "header nul", tool: crm["crm_create_ticket"], up: crmUp,
			args:    map[string]any{"tenant_id": "acme", "customer_id": "c-1", "subject": "hi", "x-request-source": "a\x00"},
			wantErr: "control characters"},
		{name: "missing body fields", tool: crm["crm_create_ticket"], up: crmUp,
			args: map[string]any{"tenant_id": "acme"}, wantErr: `missing required argument(s) "customer_id", "subject"`},
		{name: "optional body fields only", tool: crm["crm_update_ticket"], up: crmUp,
			args: map[string]any{"ticket_id": "t-1"}, wantURL: "http://crm.internal:8000/api/tickets/t-1",
			check: func(t *testing.T, _ map[string]string, body string) {
				if body != "{}" {
					t.Errorf("required body with no fields: %q, want {}", body)
				}
			}},
		{name: "whole body", tool: cat["catalog_replace_product"], up: catUp,
			args:    map[string]any{"product_id": 42.0, "name": "n", "body": map[string]any{"name": "x", "price": 1.5}},
			wantURL: "https://catalog.internal/products/42?name=n",
			check: func(t *testing.T, _ map[string]string, body string) {
				if body != `{"name":"x","price":1.5}` {
					t.Errorf("body %s", body)
				}
			}},
		{name: "whole body wrong type", tool: cat["catalog_replace_product"], up: catUp,
			args: map[string]any{"product_id": 42.0, "body": "x"}, wantErr: `argument "body" is string, want object`},
		{name: "integer path param type", tool: cat["catalog_get_product"], up: catUp,
			args: map[string]any{"product_id": "1", "X-Tenant": "acme"}, wantErr: "want integer"},
		{name: "deep object and header enum", tool: cat["catalog_get_product"], up: catUp,
			args:    map[string]any{"product_id": 1, "X-Tenant": "acme", "filter": map[string]any{"color": "red"}, "fields": []any{"name", "price"}},
			wantURL: "https://catalog.internal/products/1?fields=name&fields=price&filter%5Bcolor%5D=red",
			check: func(t *testing.T, hdr map[string]string, _ string) {
				if hdr["X-Tenant"] != "acme" {
					t.Errorf("headers %v", hdr)
				}
			}},
		{name: "nullable union accepts null", tool: cat["catalog_list_categories"], up: catUp,
			args: map[string]any{"parent": nil, "depth": 2}, wantURL: "https://catalog.internal/categories?depth=2"},
		{name: "header enum refused", tool: cat["catalog_get_product"], up: catUp,
			args: map[string]any{"product_id": 1, "X-Tenant": "initech"}, wantErr: "allowed values"},
		{name: "other upstream", tool: cat["catalog_get_product"], up: crmUp,
			args: map[string]any{"product_id": 1}, wantErr: "belongs to upstream"},
		{name: "bad base url scheme", tool: crm["crm_health"], up: &Upstream{Name: "crm", BaseURL: "file:///etc"}, wantErr: "scheme"},
		{name: "base url with query", tool: crm["crm_health"], up: &Upstream{Name: "crm", BaseURL: "http://h/?x=1"}, wantErr: "query"},
		{name: "base url without host", tool: crm["crm_health"], up: &Upstream{Name: "crm", BaseURL: "http:///x"}, wantErr: "no host"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tool == nil {
				t.Fatal("tool missing from the fixture")
			}
			req, err := tc.tool.NewRequest(context.Background(), tc.up, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := req.URL.String(); got != tc.wantURL {
				t.Errorf("url %s\n want %s", got, tc.wantURL)
			}
			if req.Method != tc.tool.Method {
				t.Errorf("method %s", req.Method)
			}
			if tc.check != nil {
				hdr := map[string]string{}
				for k := range req.Header {
					hdr[k] = req.Header.Get(k)
				}
				var body []byte
				if req.Body != nil {
					body, _ = io.ReadAll(req.Body)
				}
				tc.check(t, hdr, string(body))
			}
		})
	}
}

func TestNewRequestErrorsAreArgumentErrors(t *testing.T) {
	crm := loadTools(t, "fastapi-crm.openapi.json", "crm")
	up := &Upstream{Name: "crm", BaseURL: "http://h"}
	_, err := crm["crm_get_customer"].NewRequest(context.Background(), up, map[string]any{"nope": 1})
	if !errors.Is(err, ErrInvalidArguments) {
		t.Errorf("unknown argument error %v is not ErrInvalidArguments", err)
	}
	_, err = crm["crm_get_customer"].NewRequest(context.Background(), &Upstream{Name: "crm", BaseURL: "gopher://h"}, map[string]any{"customer_id": "x"})
	if err == nil || errors.Is(err, ErrInvalidArguments) {
		t.Errorf("a bad base url is not the agent's fault: %v", err)
	}
}

func TestForbiddenHeaderParamsNeverSent(t *testing.T) {
	doc := `{"openapi":"3.0.0","paths":{"/a":{"get":{"operationId":"a","parameters":[
	  {"name":"Authorization","in":"header","schema":{"type":"string"}},
	  {"name":"X-Forwarded-For","in":"header","schema":{"type":"string"}},
	  {"name":"Host","in":"header","schema":{"type":"string"}},
	  {"name":"Transfer-Encoding","in":"header","schema":{"type":"string"}},
	  {"name":"Content-Length","in":"header","schema":{"type":"string"}},
	  {"name":"Cookie","in":"header","schema":{"type":"string"}},
	  {"name":"bad name","in":"header","schema":{"type":"string"}},
	  {"name":"X-Ok","in":"header","schema":{"type":"string"}}]}}}}`
	ts, ws, err := ConvertWithWarnings("up", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := ts[0].ArgumentNames(); len(got) != 1 || got[0] != "X-Ok" {
		t.Errorf("arguments %v, want only X-Ok", got)
	}
	if len(ws) != 7 {
		t.Errorf("want 7 warnings, got %v", ws)
	}
}

func FuzzNewRequest(f *testing.F) {
	crm := loadTools(f, "fastapi-crm.openapi.json", "crm")
	cat := loadTools(f, "fastapi31.openapi.json", "catalog")
	tools := []*Tool{crm["crm_get_customer"], crm["crm_list_customer_orders"], crm["crm_create_ticket"], cat["catalog_get_product"], cat["catalog_replace_product"]}
	f.Add(uint8(0), "/api", "c-1", `{}`)
	f.Add(uint8(0), "", "../../etc/passwd", `{}`)
	f.Add(uint8(1), "/v1/", "..", `{"sku":["a","b&c"],"since":"x#y"}`)
	f.Add(uint8(2), "/", "x", `{"tenant_id":"acme","customer_id":"c","subject":"s","x-request-source":"a\r\nb: c"}`)
	f.Add(uint8(3), "/p", "1", `{"X-Tenant":"acme","filter":{"a]=b&c[":"d"},"fields":["name"]}`)
	f.Add(uint8(4), "/p", "%2e%2e", `{"body":{"a":1},"name":"?x"}`)
	f.Add(uint8(0), "/a%2Fb", "%2F", `{}`)
	f.Fuzz(func(t *testing.T, which uint8, basePath, pathVal, argsJSON string) {
		tool := tools[int(which)%len(tools)]
		base := &url.URL{Scheme: "http", Host: "upstream.internal:8080", Path: basePath}
		up := &Upstream{Name: tool.Upstream, BaseURL: base.String()}
		if _, err := parseBaseURL(up.BaseURL); err != nil {
			return
		}
		var args map[string]any
		dec := json.NewDecoder(strings.NewReader(argsJSON))
		dec.UseNumber()
		if dec.Decode(&args) != nil || args == nil {
			args = map[string]any{}
		}
		for _, p := range tool.params {
			if p.In == "path" {
				if _, ok := args[p.Arg]; !ok {
					args[p.Arg] = pathVal
				}
			}
		}
		req, err := tool.NewRequest(context.Background(), up, args)
		if err != nil {
			return
		}
		parsedBase, _ := url.Parse(up.BaseURL)
		if req.URL.Scheme != "http" || req.URL.Host != "upstream.internal:8080" || req.URL.User != nil || req.URL.Fragment != "" {
			t.Fatalf("request leaves the upstream: %s", req.URL)
		}
		prefix := strings.TrimRight(parsedBase.EscapedPath(), "/") + "/"
		if !strings.HasPrefix(req.URL.EscapedPath(), prefix) {
			t.Fatalf("path %q escapes base path %q", req.URL.EscapedPath(), prefix)
		}
		// Even after a server decodes the path, no value adds segments or
		// dot segments beyond those of the template.
		baseSegs := strings.Count(prefix, "/")
		tmplSegs := strings.Count(tool.Path, "/")
		decoded, err := url.PathUnescape(req.URL.EscapedPath())
		if err != nil {
			t.Fatalf("path does not decode: %v", err)
		}
		if got := strings.Count(decoded, "/"); got != baseSegs-1+tmplSegs && !strings.Contains(basePath, "%") {
			t.Fatalf("decoded path %q has %d slashes, want %d", decoded, got, baseSegs-1+tmplSegs)
		}
		for _, seg := range strings.Split(strings.TrimPrefix(decoded, prefix), "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("dot segment in %q", decoded)
			}
		}
		for k, vs := range req.Header {
			for _, v := range vs {
				if strings.ContainsAny(k+v, "\r\n\x00") {
					t.Fatalf("control character in header %q: %q", k, v)
				}
			}
			if forbiddenHeader(k) && k != "Content-Type" {
				t.Fatalf("forbidden header %q set", k)
			}
		}
	})
}

func BenchmarkNewRequest(b *testing.B) {
	crm := loadTools(b, "fastapi-crm.openapi.json", "crm")
	up := &Upstream{Name: "crm", BaseURL: "http://crm.internal:8000"}
	cases := []struct {
		name string
		tool *Tool
		args map[string]any
	}{
		{"path", crm["crm_get_customer"], map[string]any{"customer_id": "c-1"}},
		{"query", crm["crm_list_customer_orders"], map[string]any{"customer_id": "c-1", "since": "2026-01-01", "sku": []any{"A", "B"}}},
		{"body", crm["crm_create_ticket"], map[string]any{"tenant_id": "acme", "customer_id": "c-1", "subject": "hi", "x-request-source": "agent",
			"thread": []any{map[string]any{"author": "a", "body": "b"}}}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.tool.NewRequest(ctx, up, bc.args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestExplodedObjectCannotShadowAnotherParameter: the keys of an exploded
// object query parameter become query names; they must not add a second
// value to another parameter (the upstream would take the last one, the
// policy saw the first).
func TestExplodedObjectCannotShadowAnotherParameter(t *testing.T) {
	ts, err := Convert("crm", []byte(`{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{
 "/c":{"get":{"operationId":"list","parameters":[
  {"name":"tenant_id","in":"query","schema":{"type":"string"}},
  {"name":"filter","in":"query","schema":{"type":"object","additionalProperties":{"type":"string"}}},
  {"name":"more","in":"query","schema":{"type":"object","additionalProperties":{"type":"string"}}}],
  "responses":{"200":{"description":"ok"}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	up := &Upstream{Name: "crm", BaseURL: "http://127.0.0.1:8000"}
	for name, args := range map[string]map[string]any{
		"shadows a parameter":     {"tenant_id": "acme", "filter": map[string]any{"tenant_id": "other"}},
		"two objects share a key": {"filter": map[string]any{"status": "open"}, "more": map[string]any{"status": "closed"}},
	} {
		if _, err := ts[0].NewRequest(context.Background(), up, args); !errors.Is(err, ErrInvalidArguments) {
			t.Errorf("%s: err = %v, want ErrInvalidArguments", name, err)
		}
	}
	req, err := ts[0].NewRequest(context.Background(), up, map[string]any{"tenant_id": "acme", "filter": map[string]any{"status": "open"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := req.URL.Query(); got.Get("tenant_id") != "acme" || got.Get("status") != "open" || len(got["tenant_id"]) != 1 {
		t.Errorf("query = %v", got)
	}
}
