package sampleapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// call sends one request to h and decodes the JSON answer (nil for no body).
func call(t *testing.T, h http.Handler, method, target, body string, hdr map[string]string) (int, http.Header, any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if len(raw) == 0 {
		return res.StatusCode, res.Header, nil
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q, body %q", method, target, ct, raw)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v: %q", method, target, err, raw)
	}
	return res.StatusCode, res.Header, v
}

// ids returns the values of key in a JSON array of objects.
func ids(t *testing.T, v any, key string) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("answer is %T, want an array: %v", v, v)
	}
	out := []string{}
	for _, item := range list {
		out = append(out, item.(map[string]any)[key].(string))
	}
	return out
}

// detailTypes returns the "type" of each entry of a FastAPI 422 answer,
// checking the shape of every entry on the way.
func detailTypes(t *testing.T, v any) []string {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("422 answer is %T: %v", v, v)
	}
	list, ok := obj["detail"].([]any)
	if !ok || len(list) == 0 {
		t.Fatalf("422 detail is not a non-empty list: %v", obj)
	}
	var out []string
	for _, e := range list {
		m := e.(map[string]any)
		loc, ok := m["loc"].([]any)
		if !ok || len(loc) == 0 {
			t.Fatalf("validation error without loc: %v", m)
		}
		if _, ok := m["msg"].(string); !ok {
			t.Fatalf("validation error without msg: %v", m)
		}
		if _, ok := m["input"]; !ok {
			t.Fatalf("validation error without input: %v", m)
		}
		out = append(out, fmt.Sprintf("%s@%v", m["type"], loc))
	}
	return out
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		target     string
		body       string
		wantStatus int
		check      func(t *testing.T, v any)
	}{
		{"health", "GET", "/health", "", 200, func(t *testing.T, v any) {
			if v.(map[string]any)["status"] != "ok" {
				t.Errorf("health = %v", v)
			}
		}},
		{"all customers", "GET", "/customers", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "customer_id"); !reflect.DeepEqual(got, []string{"c-1", "c-2", "c-3", "c-4"}) {
				t.Errorf("customers = %v", got)
			}
		}},
		{"customers of acme", "GET", "/customers?tenant_id=acme", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "tenant_id"); !reflect.DeepEqual(got, []string{"acme", "acme"}) {
				t.Errorf("tenants = %v", got)
			}
		}},
		{"customers of globex limited", "GET", "/customers?tenant_id=globex&limit=1", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "customer_id"); !reflect.DeepEqual(got, []string{"c-3"}) {
				t.Errorf("customers = %v", got)
			}
		}},
		{"customers by name", "GET", "/customers?q=BOB", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "customer_id"); !reflect.DeepEqual(got, []string{"c-2"}) {
				t.Errorf("customers = %v", got)
			}
		}},
		{"customers unknown tenant", "GET", "/customers?tenant_id=initech", "", 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"enum@[query tenant_id]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"customers bad limits", "GET", "/customers?limit=abc", "", 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"int_parsing@[query limit]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"customers limit zero and bad tenant", "GET", "/customers?limit=0&tenant_id=x", "", 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"enum@[query tenant_id]", "greater_than_equal@[query limit]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"customers limit too big", "GET", "/customers?limit=101", "", 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"less_than_equal@[query limit]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"one customer", "GET", "/customers/c-1", "", 200, func(t *testing.T, v any) {
			c := v.(map[string]any)
			if c["card_number"] != "4111 1111 1111 1111" || c["email"] != "alice@acme.example" || c["tenant_id"] != "acme" {
				t.Errorf("customer = %v", c)
			}
			if !strings.Contains(c["notes"].(string), "sk_live_") {
				t.Errorf("notes lost the fake secret: %v", c["notes"])
			}
		}},
		{"customer without phone", "GET", "/customers/c-2", "", 200, func(t *testing.T, v any) {
			if p, ok := v.(map[string]any)["phone"]; !ok || p != nil {
				t.Errorf("phone = %v, %v; want explicit null", p, ok)
			}
		}},
		{"unknown customer", "GET", "/customers/c-99", "", 404, wantDetail("customer not found")},
		{"orders of c-1", "GET", "/customers/c-1/orders", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "order_id"); !reflect.DeepEqual(got, []string{"o-100", "o-101"}) {
				t.Errorf("orders = %v", got)
			}
		}},
		{"orders of c-1 since February", "GET", "/customers/c-1/orders?since=2026-02-01T00:00:00Z", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "order_id"); !reflect.DeepEqual(got, []string{"o-101"}) {
				t.Errorf("orders = %v", got)
			}
		}},
		{"orders of c-1 by sku", "GET", "/customers/c-1/orders?sku=WIDGET&sku=NOPE", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "order_id"); !reflect.DeepEqual(got, []string{"o-100"}) {
				t.Errorf("orders = %v", got)
			}
		}},
		{"orders of c-4 empty", "GET", "/customers/c-4/orders", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "order_id"); len(got) != 0 {
				t.Errorf("orders = %v", got)
			}
		}},
		{"orders of unknown customer", "GET", "/customers/c-99/orders", "", 404, wantDetail("customer not found")},
		{"one order", "GET", "/orders/o-200", "", 200, func(t *testing.T, v any) {
			o := v.(map[string]any)
			if o["order_number"] != "2026012000002000" || o["tenant_id"] != "globex" || len(o["lines"].([]any)) != 1 {
				t.Errorf("order = %v", o)
			}
		}},
		{"unknown order", "GET", "/orders/o-1", "", 404, wantDetail("order not found")},
		{"all tickets", "GET", "/tickets", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "ticket_id"); !reflect.DeepEqual(got, []string{"t-1", "t-2"}) {
				t.Errorf("tickets = %v", got)
			}
		}},
		{"tickets of globex", "GET", "/tickets?tenant_id=globex", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "ticket_id"); !reflect.DeepEqual(got, []string{"t-2"}) {
				t.Errorf("tickets = %v", got)
			}
		}},
		{"open tickets", "GET", "/tickets?status=open", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "ticket_id"); !reflect.DeepEqual(got, []string{"t-1"}) {
				t.Errorf("tickets = %v", got)
			}
		}},
		{"tickets bad status", "GET", "/tickets?status=done", "", 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"enum@[query status]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"one ticket with nested thread", "GET", "/tickets/t-1", "", 200, func(t *testing.T, v any) {
			th := v.(map[string]any)["thread"].([]any)
			if len(th) != 1 || len(th[0].(map[string]any)["replies"].([]any)) != 1 {
				t.Errorf("thread = %v", th)
			}
		}},
		{"unknown ticket", "GET", "/tickets/t-99", "", 404, wantDetail("ticket not found")},
		{"create ticket", "POST", "/tickets", `{"customer_id":"c-3","subject":"Hello","body":"Help me","priority":"high"}`, 201, func(t *testing.T, v any) {
			tk := v.(map[string]any)
			if tk["ticket_id"] != "t-3" || tk["tenant_id"] != "globex" || tk["status"] != "open" || tk["priority"] != "high" || tk["assignee"] != nil {
				t.Errorf("ticket = %v", tk)
			}
			th := tk["thread"].([]any)[0].(map[string]any)
			if th["author"] != "carol@globex.example" || th["body"] != "Help me" {
				t.Errorf("thread = %v", th)
			}
		}},
		{"create ticket default priority and matching tenant", "POST", "/tickets", `{"tenant_id":"acme","customer_id":"c-1","subject":"S","body":"B"}`, 201, func(t *testing.T, v any) {
			if p := v.(map[string]any)["priority"]; p != "normal" {
				t.Errorf("priority = %v", p)
			}
		}},
		{"create ticket other tenant", "POST", "/tickets", `{"tenant_id":"globex","customer_id":"c-1","subject":"S","body":"B"}`, 404, wantDetail("customer not found in tenant")},
		{"create ticket unknown customer", "POST", "/tickets", `{"customer_id":"c-99","subject":"S","body":"B"}`, 404, wantDetail("customer not found in tenant")},
		{"create ticket every field wrong", "POST", "/tickets", `{"customer_id":7,"subject":"","priority":"urgent","tenant_id":"x"}`, 422, func(t *testing.T, v any) {
			want := []string{"enum@[body tenant_id]", "string_type@[body customer_id]", "string_too_short@[body subject]", "missing@[body body]", "enum@[body priority]"}
			if got := detailTypes(t, v); !reflect.DeepEqual(got, want) {
				t.Errorf("errors = %v, want %v", got, want)
			}
		}},
		{"create ticket subject too long", "POST", "/tickets", `{"customer_id":"c-1","subject":"` + strings.Repeat("x", 201) + `","body":"B"}`, 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"string_too_long@[body subject]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"create ticket no body", "POST", "/tickets", "", 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"missing@[body]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"create ticket malformed JSON", "POST", "/tickets", `{"customer_id":`, 422, func(t *testing.T, v any) {
			got := detailTypes(t, v)
			if len(got) != 1 || !strings.HasPrefix(got[0], "json_invalid@[body ") {
				t.Errorf("errors = %v", got)
			}
		}},
		{"create ticket trailing data", "POST", "/tickets", `{} {}`, 422, func(t *testing.T, v any) {
			got := detailTypes(t, v)
			if len(got) != 1 || !strings.HasPrefix(got[0], "json_invalid@") {
				t.Errorf("errors = %v", got)
			}
		}},
		{"create ticket array body", "POST", "/tickets", `[1,2]`, 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"model_attributes_type@[body]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"create ticket too large", "POST", "/tickets", `{"subject":"` + strings.Repeat("x", maxBodyBytes) + `"}`, 413, nil},
		{"update ticket", "PATCH", "/tickets/t-2", `{"status":"closed","assignee":"agent@globex.example","reply":{"author":"a","body":"b","replies":[{"author":"c","body":"d"}]}}`, 200, func(t *testing.T, v any) {
			tk := v.(map[string]any)
			if tk["status"] != "closed" || tk["assignee"] != "agent@globex.example" || tk["priority"] != "normal" {
				t.Errorf("ticket = %v", tk)
			}
			th := tk["thread"].([]any)
			if len(th) != 2 || len(th[1].(map[string]any)["replies"].([]any)) != 1 {
				t.Errorf("thread = %v", th)
			}
		}},
		{"update ticket with nulls changes nothing", "PATCH", "/tickets/t-1", `{"status":null,"priority":null,"assignee":null,"reply":null}`, 200, func(t *testing.T, v any) {
			tk := v.(map[string]any)
			if tk["status"] != "open" || tk["priority"] != "high" || tk["assignee"] != "support1@acme.example" {
				t.Errorf("ticket = %v", tk)
			}
		}},
		{"update ticket bad fields", "PATCH", "/tickets/t-1", `{"status":"gone","reply":{"author":"a","replies":[{"body":1}]}}`, 422, func(t *testing.T, v any) {
			want := []string{"enum@[body status]", "missing@[body reply body]", "missing@[body reply replies 0 author]", "string_type@[body reply replies 0 body]"}
			if got := detailTypes(t, v); !reflect.DeepEqual(got, want) {
				t.Errorf("errors = %v, want %v", got, want)
			}
		}},
		{"update unknown ticket", "PATCH", "/tickets/t-99", `{}`, 404, wantDetail("ticket not found")},
		{"update unknown ticket bad body validates first", "PATCH", "/tickets/t-99", `{"priority":"urgent"}`, 422, nil},
		{"delete ticket", "DELETE", "/tickets/t-2?reason=dup", "", 204, func(t *testing.T, v any) {
			if v != nil {
				t.Errorf("204 with body %v", v)
			}
		}},
		{"delete unknown ticket", "DELETE", "/tickets/t-99", "", 404, wantDetail("ticket not found")},
		{"no refunds yet", "GET", "/refunds", "", 200, func(t *testing.T, v any) {
			if got := ids(t, v, "refund_id"); len(got) != 0 {
				t.Errorf("refunds = %v", got)
			}
		}},
		{"refunds bad tenant", "GET", "/refunds?tenant_id=nope", "", 422, nil},
		{"issue refund", "POST", "/refunds", `{"tenant_id":"acme","order_id":"o-100","amount_cents":1000,"reason":"damaged","comment":"cracked"}`, 201, func(t *testing.T, v any) {
			rf := v.(map[string]any)
			if rf["refund_id"] != "r-1" || rf["customer_id"] != "c-1" || rf["card_number"] != "4111 1111 1111 1111" || rf["amount_cents"] != 1000.0 || rf["created_at"] != "2026-01-02T03:04:05Z" {
				t.Errorf("refund = %v", rf)
			}
		}},
		{"issue refund order of other tenant", "POST", "/refunds", `{"tenant_id":"globex","order_id":"o-100","amount_cents":1,"reason":"late"}`, 404, wantDetail("order not found in tenant")},
		{"issue refund too much", "POST", "/refunds", `{"tenant_id":"acme","order_id":"o-102","amount_cents":1000,"reason":"late"}`, 409, wantDetail("refund exceeds order total")},
		{"issue refund every field wrong", "POST", "/refunds", `{"tenant_id":"acme","order_id":"o-100","amount_cents":0,"reason":"bored"}`, 422, func(t *testing.T, v any) {
			want := []string{"greater_than@[body amount_cents]", "enum@[body reason]"}
			if got := detailTypes(t, v); !reflect.DeepEqual(got, want) {
				t.Errorf("errors = %v, want %v", got, want)
			}
		}},
		{"issue refund fractional and missing", "POST", "/refunds", `{"amount_cents":1.5}`, 422, func(t *testing.T, v any) {
			want := []string{"missing@[body tenant_id]", "missing@[body order_id]", "int_from_float@[body amount_cents]", "missing@[body reason]"}
			if got := detailTypes(t, v); !reflect.DeepEqual(got, want) {
				t.Errorf("errors = %v, want %v", got, want)
			}
		}},
		{"issue refund string amount", "POST", "/refunds", `{"tenant_id":"acme","order_id":"o-100","amount_cents":"5","reason":"late"}`, 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"int_type@[body amount_cents]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"issue refund huge amount", "POST", "/refunds", `{"tenant_id":"acme","order_id":"o-100","amount_cents":1e30,"reason":"late"}`, 422, func(t *testing.T, v any) {
			if got := detailTypes(t, v); !reflect.DeepEqual(got, []string{"int_parsing_size@[body amount_cents]"}) {
				t.Errorf("errors = %v", got)
			}
		}},
		{"unknown path", "GET", "/nowhere", "", 404, wantDetail("Not Found")},
		{"wrong method", "PUT", "/tickets/t-1", "", 405, wantDetail("Method Not Allowed")},
		{"openapi document", "GET", "/openapi.json", "", 200, func(t *testing.T, v any) {
			if v.(map[string]any)["openapi"] != "3.1.0" {
				t.Errorf("openapi = %v", v.(map[string]any)["openapi"])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New()
			a.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC) }
			status, _, v := call(t, a.Handler(), tt.method, tt.target, tt.body, nil)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; answer %v", status, tt.wantStatus, v)
			}
			if tt.check != nil {
				tt.check(t, v)
			}
		})
	}
}

func wantDetail(want string) func(t *testing.T, v any) {
	return func(t *testing.T, v any) {
		t.Helper()
		if got := v.(map[string]any)["detail"]; got != want {
			t.Errorf("detail = %v, want %q", got, want)
		}
	}
}

func TestMethodNotAllowedListsAllow(t *testing.T) {
	status, hdr, _ := call(t, New().Handler(), "PUT", "/tickets", "", nil)
	if status != 405 || hdr.Get("Allow") != "GET, POST, HEAD" {
		t.Fatalf("status %d, Allow %q", status, hdr.Get("Allow"))
	}
}

func TestTicketLifecycle(t *testing.T) {
	h := New().Handler()
	status, _, v := call(t, h, "POST", "/tickets", `{"customer_id":"c-2","subject":"S","body":"B","priority":"low"}`, nil)
	if status != 201 {
		t.Fatalf("create: %d %v", status, v)
	}
	id := v.(map[string]any)["ticket_id"].(string)
	if status, _, v = call(t, h, "PATCH", "/tickets/"+id, `{"priority":"high"}`, nil); status != 200 {
		t.Fatalf("update: %d %v", status, v)
	}
	if status, _, v = call(t, h, "GET", "/tickets/"+id, "", nil); status != 200 || v.(map[string]any)["priority"] != "high" {
		t.Fatalf("get after update: %d %v", status, v)
	}
	if status, _, _ = call(t, h, "DELETE", "/tickets/"+id, "", nil); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	if status, _, _ = call(t, h, "GET", "/tickets/"+id, "", nil); status != 404 {
		t.Fatalf("get after delete: %d", status)
	}
}

func TestRefundsAccumulatePerOrder(t *testing.T) {
	h := New().Handler()
	body := `{"tenant_id":"acme","order_id":"o-101","amount_cents":1000,"reason":"late"}`
	if status, _, v := call(t, h, "POST", "/refunds", body, nil); status != 201 {
		t.Fatalf("first refund: %d %v", status, v)
	}
	if status, _, v := call(t, h, "POST", "/refunds", body, nil); status != 409 {
		t.Fatalf("second refund over the total: %d %v", status, v)
	}
	if _, _, v := call(t, h, "GET", "/refunds?tenant_id=acme", "", nil); len(ids(t, v, "refund_id")) != 1 {
		t.Fatalf("acme refunds = %v", v)
	}
	if _, _, v := call(t, h, "GET", "/refunds?tenant_id=globex", "", nil); len(ids(t, v, "refund_id")) != 0 {
		t.Fatalf("globex refunds = %v", v)
	}
}

func TestNewIsFresh(t *testing.T) {
	a := New()
	if status, _, _ := call(t, a.Handler(), "DELETE", "/tickets/t-1", "", nil); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	if status, _, _ := call(t, New().Handler(), "GET", "/tickets/t-1", "", nil); status != 200 {
		t.Fatalf("a new API shares state with an old one: %d", status)
	}
}

func TestConcurrentTicketCreation(t *testing.T) {
	a := New()
	h := a.Handler()
	const n = 64
	var wg sync.WaitGroup
	got := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			req := httptest.NewRequest("POST", "/tickets", strings.NewReader(fmt.Sprintf(`{"customer_id":"c-1","subject":"s%d","body":"b"}`, i)))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 201 {
				t.Errorf("create %d: %d %s", i, rec.Code, rec.Body)
				return
			}
			var tk ticket
			if err := json.Unmarshal(rec.Body.Bytes(), &tk); err != nil {
				t.Errorf("decode: %v", err)
				return
			}
			got <- tk.TicketID
			// Reads and updates race with creation on purpose.
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/tickets", nil))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PATCH", "/tickets/t-1", strings.NewReader(`{"reply":{"author":"x","body":"y"}}`)))
		})
	}
	wg.Wait()
	close(got)
	seen := map[string]bool{}
	for id := range got {
		if seen[id] {
			t.Errorf("ticket id %s handed out twice", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct ids, want %d", len(seen), n)
	}
	_, _, v := call(t, h, "GET", "/tickets", "", nil)
	if got := len(ids(t, v, "ticket_id")); got != n+2 {
		t.Fatalf("%d tickets listed, want %d", got, n+2)
	}
	_, _, v = call(t, h, "GET", "/tickets/t-1", "", nil)
	if got := len(v.(map[string]any)["thread"].([]any)); got != n+1 {
		t.Fatalf("t-1 thread has %d messages, want %d", got, n+1)
	}
}

// makeJWT builds an unsigned-looking compact JWS with the given payload.
func makeJWT(payload string) string {
	enc := func(s string) string { return base64url([]byte(s)) }
	return enc(`{"alg":"ES256","kid":"k1"}`) + "." + enc(payload) + ".c2lnbmF0dXJlLXNlY3JldA"
}

func TestWhoami(t *testing.T) {
	payload := `{"iss":"http://127.0.0.1:8080","sub":"alice","aud":"crm","act":{"sub":"claude"},"roles":["support"],"exp":1893456000,"email":"alice@acme.example","jti":"j1"}`
	tok := makeJWT(payload)
	tests := []struct {
		name       string
		hdr        map[string]string
		wantClaims map[string]any // nil: assertion_claims must be null
		wantScheme any
	}{
		{"gateway assertion", map[string]string{"Authorization": "Bearer " + tok, "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "X-Request-Id": "r1"},
			map[string]any{"iss": "http://127.0.0.1:8080", "sub": "alice", "aud": "crm", "act": map[string]any{"sub": "claude"}, "roles": []any{"support"}, "exp": 1893456000.0}, "Bearer"},
		{"lower-case scheme", map[string]string{"Authorization": "bearer " + tok}, map[string]any{"iss": "http://127.0.0.1:8080", "sub": "alice", "aud": "crm", "act": map[string]any{"sub": "claude"}, "roles": []any{"support"}, "exp": 1893456000.0}, "bearer"},
		{"no authorization", nil, nil, nil},
		{"basic scheme", map[string]string{"Authorization": "Basic YWxpY2U6cHc="}, nil, "Basic"},
		{"two parts", map[string]string{"Authorization": "Bearer abc.def"}, nil, "Bearer"},
		{"payload not base64", map[string]string{"Authorization": "Bearer a.%%%.c"}, nil, "Bearer"},
		{"payload not an object", map[string]string{"Authorization": "Bearer " + makeJWT(`["x"]`)}, nil, "Bearer"},
		{"opaque token", map[string]string{"Authorization": "Bearer opaque-token-value"}, nil, "Bearer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/whoami", nil)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			New().Handler().ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
			raw := rec.Body.String()
			if authz := tt.hdr["Authorization"]; authz != "" {
				_, secret, _ := strings.Cut(authz, " ")
				if strings.Contains(raw, secret) {
					t.Fatalf("whoami echoed the raw credential: %s", raw)
				}
			}
			if strings.Contains(raw, "c2lnbmF0dXJlLXNlY3JldA") || strings.Contains(raw, "alice@acme.example") {
				t.Fatalf("whoami echoed the signature or an unlisted claim: %s", raw)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["verified"] != false || got["note"] == "" {
				t.Errorf("verified/note = %v / %v", got["verified"], got["note"])
			}
			if got["authorization_present"] != (tt.hdr["Authorization"] != "") {
				t.Errorf("authorization_present = %v", got["authorization_present"])
			}
			if got["authorization_scheme"] != tt.wantScheme {
				t.Errorf("authorization_scheme = %v, want %v", got["authorization_scheme"], tt.wantScheme)
			}
			claims, present := got["assertion_claims"]
			if !present {
				t.Fatal("assertion_claims missing")
			}
			if tt.wantClaims == nil {
				if claims != nil {
					t.Errorf("assertion_claims = %v, want null", claims)
				}
			} else if !reflect.DeepEqual(claims, tt.wantClaims) {
				t.Errorf("assertion_claims = %v, want %v", claims, tt.wantClaims)
			}
			if tp := tt.hdr["Traceparent"]; tp != "" && got["traceparent"] != tp {
				t.Errorf("traceparent = %v", got["traceparent"])
			}
			if id := tt.hdr["X-Request-Id"]; id != "" && got["headers"].(map[string]any)["x-request-id"] != id {
				t.Errorf("headers = %v", got["headers"])
			}
		})
	}
}

func luhnValid(s string) bool {
	var digits []int
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits = append(digits, int(r-'0'))
		case r == ' ' || r == '-':
		default:
			return false
		}
	}
	if len(digits) < 12 {
		return false
	}
	sum := 0
	for i := range digits {
		d := digits[len(digits)-1-i]
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func TestDataIsRedactionMaterial(t *testing.T) {
	secret := regexp.MustCompile(`sk_live_[A-Za-z0-9]{24}\b`)
	var secrets int
	for _, c := range seedCustomers() {
		if !luhnValid(c.CardNumber) {
			t.Errorf("customer %s card %q is not Luhn-valid", c.CustomerID, c.CardNumber)
		}
		if !isOneOf(c.TenantID, tenants) || !strings.Contains(c.Email, "@") {
			t.Errorf("customer %s: tenant %q, email %q", c.CustomerID, c.TenantID, c.Email)
		}
		secrets += len(secret.FindAllString(c.Notes, -1))
	}
	for _, tk := range seedTickets() {
		secrets += len(secret.FindAllString(tk.Notes, -1))
		if !isOneOf(tk.TenantID, tenants) {
			t.Errorf("ticket %s tenant %q", tk.TicketID, tk.TenantID)
		}
	}
	if secrets < 2 {
		t.Errorf("%d fake secrets in notes, want at least 2", secrets)
	}
	for _, o := range seedOrders() {
		if len(o.OrderNumber) != 16 || strings.Trim(o.OrderNumber, "0123456789") != "" {
			t.Errorf("order %s number %q is not 16 digits", o.OrderID, o.OrderNumber)
		}
		if luhnValid(o.OrderNumber) {
			t.Errorf("order %s number %q is Luhn-valid; it must not look like a card", o.OrderID, o.OrderNumber)
		}
		if !isOneOf(o.TenantID, tenants) {
			t.Errorf("order %s tenant %q", o.OrderID, o.TenantID)
		}
	}
}

func TestStart(t *testing.T) {
	ctx := t.Context()
	url, stop, err := Start(ctx, "127.0.0.1:0", testVerification)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("url = %q", url)
	}
	res, err := http.Get(url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != 200 || !bytes.Equal(raw, OpenAPI()) {
		t.Fatalf("GET /openapi.json: %d, %d bytes", res.StatusCode, len(raw))
	}
	if err := stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Fatal("server still answers after stop")
	}
}

func TestStartClosesWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	url, stop, err := Start(ctx, "127.0.0.1:0", testVerification)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	// Close is synchronous in AfterFunc's goroutine; stop waits for Serve to return.
	_ = stop(context.Background())
	if _, err := http.Get(url + "/health"); err == nil {
		t.Fatal("server still answers after its context ended")
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:80", "nonsense"} {
		t.Run(addr, func(t *testing.T) {
			if _, stop, err := Start(t.Context(), addr, testVerification); err == nil {
				_ = stop(context.Background())
				t.Fatalf("Start(%q) succeeded", addr)
			}
		})
	}
}
