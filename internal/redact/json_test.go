package redact

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var tenantCtx = map[string][]string{"tenant_id": {"acme", "42", "true"}}

func TestJSONContext(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      string
		wantCtx   int
		wantEmpty bool
	}{
		{"top-level in context", `{"id": 1, "tenant_id": "acme"}`, `{"id":1,"tenant_id":"acme"}`, 0, false},
		{"top-level out of context", `{"id":1,"tenant_id":"globex","name":"Wile"}`, `null`, 1, true},
		{"context key last", `{"note":"4111111111111111","tenant_id":"globex"}`, `null`, 1, true},
		{"no context key", `{"id":1}`, `{"id":1}`, 0, false},
		{"array of records", `[{"tenant_id":"acme","n":1},{"tenant_id":"globex","n":2},{"n":3},{"tenant_id":"other"}]`, `[{"tenant_id":"acme","n":1},{"n":3}]`, 2, false},
		{"all records removed", `[{"tenant_id":"x"},{"tenant_id":"y"}]`, `[]`, 2, false},
		{"first record removed", `[{"tenant_id":"x"},1,2]`, `[1,2]`, 1, false},
		{"nested records", `{"tenant_id":"acme","orders":[{"id":1,"tenant_id":"globex"},{"id":2,"tenant_id":"acme"}],"owner":{"tenant_id":"acme","name":"m"},"z":true}`,
			`{"tenant_id":"acme","orders":[{"id":2,"tenant_id":"acme"}],"owner":{"tenant_id":"acme","name":"m"},"z":true}`, 1, false},
		// The whole record goes, not just the object naming the tenant.
		{"foreign owner removes the record", `[{"name":"Globex secret deal","amount":1000000,"owner":{"tenant_id":"globex"}},{"name":"ok","owner":{"tenant_id":"acme"}}]`,
			`[{"name":"ok","owner":{"tenant_id":"acme"}}]`, 1, false},
		{"foreign owner deep in a record", `{"deals":[{"name":"Globex deal","parties":{"a":{"b":{"tenant_id":"globex"}}},"x":1},{"name":"mine"}]}`,
			`{"deals":[{"name":"mine"}]}`, 1, false},
		{"foreign owner without an array withholds all", `{"name":"Globex secret deal","owner":{"tenant_id":"globex"}}`, `null`, 1, true},
		{"first member removed", `{"a":{"tenant_id":"evil"},"b":1}`, `null`, 1, true},
		{"only member removed", `{"a":{"tenant_id":"evil"}}`, `null`, 1, true},
		{"deep", `{"a":{"b":[[{"c":{"tenant_id":"evil"},"d":1}],[2]]}}`, `{"a":{"b":[[],[2]]}}`, 1, false},
		{"foreign record under a masked key", `[{"secret_note":{"tenant_id":"globex"},"n":1},{"n":2}]`, `[{"n":2}]`, 1, false},
		{"upper-case key", `[{"Tenant_ID":"globex"},{"TENANT_ID":"acme"}]`, `[{"TENANT_ID":"acme"}]`, 1, false},
		{"zero-width space in key", "[{\"tenant\u200b_id\":\"globex\"},{\"n\":1}]", `[{"n":1}]`, 1, false},
		{"raw zero-width joiner and BOM in key", "[{\"\ufefften\u200dant_id\":\"globex\"},{\"n\":1}]", `[{"n":1}]`, 1, false},
		{"fullwidth key (NFKC)", `[{"ｔｅｎａｎｔ_ｉｄ":"globex"},{"n":1}]`, `[{"n":1}]`, 1, false},
		{"compatibility letters (NFKC)", "[{\"n\":1,\"tenant_id\":\"acme\"},{\"\u1d57enant_\u2170d\":\"globex\"}]", `[{"n":1,"tenant_id":"acme"}]`, 1, false},
		{"nested removal inside removed root counts once", `{"x":{"tenant_id":"evil"},"tenant_id":"evil"}`, `null`, 1, true},
		{"number allowed", `[{"tenant_id":42},{"tenant_id":43}]`, `[{"tenant_id":42}]`, 1, false},
		{"number text differs", `[{"tenant_id":42.0}]`, `[]`, 1, false},
		{"bool", `[{"tenant_id":true},{"tenant_id":false}]`, `[{"tenant_id":true}]`, 1, false},
		{"null is out", `[{"tenant_id":null}]`, `[]`, 1, false},
		{"object is out", `[{"tenant_id":{"id":"acme"}}]`, `[]`, 1, false},
		{"array all allowed", `[{"tenant_id":["acme",42]}]`, `[{"tenant_id":["acme",42]}]`, 0, false},
		{"array with other", `[{"tenant_id":["acme","globex"]}]`, `[]`, 1, false},
		{"empty array is out", `[{"tenant_id":[]}]`, `[]`, 1, false},
		{"nested array is out", `[{"tenant_id":[["acme"]]}]`, `[]`, 1, false},
		{"duplicate key", `{"tenant_id":"acme","tenant_id":"evil"}`, `null`, 1, true},
		{"escaped key", `[{"tenant\u005fid":"evil"}]`, `[]`, 1, false},
		{"escaped value", `[{"tenant_id":"ac\u006de"},{"tenant_id":"\u0061cme!"}]`, `[{"tenant_id":"ac\u006de"}]`, 1, false},
		{"scalar root", `"acme"`, `"acme"`, 0, false},
	}
	rd := mustCompile(t, Rules{Context: tenantCtx, Paths: []string{"secret_note"}, Detectors: []string{"credit_card"}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep, err := rd.JSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("JSON(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
			if rep.Counts[KindContext] != tt.wantCtx || rep.Total()-rep.Counts[KindField] != tt.wantCtx || rep.ContextEmpty != tt.wantEmpty {
				t.Errorf("report %+v, want context=%d empty=%v", rep, tt.wantCtx, tt.wantEmpty)
			}
			checkValue(t, rd, tt.in, tt.want, rep)
		})
	}
}

// checkValue asserts that Value on the decoded input agrees with JSON.
func checkValue(t *testing.T, rd *Redactor, in, want string, wantRep Report) {
	t.Helper()
	v := decode(t, in)
	got, rep := rd.Value(v)
	gotJSON, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(canon(t, string(gotJSON))) != string(canon(t, want)) {
		t.Errorf("Value(%s)\n got %s\nwant %s", in, gotJSON, want)
	}
	if rep.Total() != wantRep.Total() || rep.ContextEmpty != wantRep.ContextEmpty {
		t.Errorf("Value report %+v, JSON report %+v", rep, wantRep)
	}
	if after, _ := json.Marshal(v); string(canon(t, string(after))) != string(canon(t, in)) {
		t.Errorf("Value modified its input: %s", after)
	}
}

func decode(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// canon re-encodes JSON so key order and escapes do not matter.
func canon(t *testing.T, s string) []byte {
	t.Helper()
	b, err := json.Marshal(decode(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJSONPaths(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		in    string
		want  string
		n     int
	}{
		{"bare key any depth", []string{"card_number"},
			`{"card_number":"4111","a":{"card_number":{"deep":[1,2]}},"l":[{"card_number":5},{"x":null}],"card_numbers":1}`,
			`{"card_number":"[REDACTED:field]","a":{"card_number":"[REDACTED:field]"},"l":[{"card_number":"[REDACTED:field]"},{"x":null}],"card_numbers":1}`, 3},
		{"rooted wildcard", []string{"orders[*].iban"},
			`{"orders":[{"iban":"X","id":1},{"id":2},"s"],"iban":"top","other":{"orders":[{"iban":"keep"}]}}`,
			`{"orders":[{"iban":"[REDACTED:field]","id":1},{"id":2},"s"],"iban":"top","other":{"orders":[{"iban":"keep"}]}}`, 1},
		{"rooted on object not array", []string{"orders[*].iban"}, `{"orders":{"iban":"X"}}`, `{"orders":{"iban":"X"}}`, 0},
		{"root array", []string{"[*].customer.ssn"},
			`[{"customer":{"ssn":"a","name":"n"}},{"customer":{"ssn":{"x":1}}},{"ssn":"top"}]`,
			`[{"customer":{"ssn":"[REDACTED:field]","name":"n"}},{"customer":{"ssn":"[REDACTED:field]"}},{"ssn":"top"}]`, 2},
		{"dotted", []string{"customer.card"}, `{"customer":{"card":1,"name":"a"},"card":2}`, `{"customer":{"card":"[REDACTED:field]","name":"a"},"card":2}`, 1},
		{"any key", []string{"accounts.*.token"}, `{"accounts":{"a":{"token":"t1"},"b":{"token":"t2","x":1}}}`,
			`{"accounts":{"a":{"token":"[REDACTED:field]"},"b":{"token":"[REDACTED:field]","x":1}}}`, 2},
		{"elements", []string{"m[*][*]"}, `{"m":[[1,2],[3],4]}`, `{"m":[["[REDACTED:field]","[REDACTED:field]"],["[REDACTED:field]"],4]}`, 3},
		{"each element", []string{"orders[*]"}, `{"orders":[1,{"a":2}],"x":[3]}`, `{"orders":["[REDACTED:field]","[REDACTED:field]"],"x":[3]}`, 2},
		{"whole subtree", []string{"a"}, `{"a":{"b":[1,2,3]}}`, `{"a":"[REDACTED:field]"}`, 1},
		{"null masked too", []string{"a"}, `{"a":null}`, `{"a":"[REDACTED:field]"}`, 1},
		{"deeper than rule", []string{"a.b"}, `{"x":{"y":{"z":{"a":{"b":1}}}},"a":{"b":2,"c":{"b":3}}}`, `{"x":{"y":{"z":{"a":{"b":1}}}},"a":{"b":"[REDACTED:field]","c":{"b":3}}}`, 1},
		// An upstream cannot dodge a mask by spelling the key differently.
		{"key case and invisibles", []string{"secret_note"},
			"{\"Secret_Note\":\"a\",\"SECRET_NOTE\":\"b\",\"secret\\u200b_note\":\"c\",\"\u2060secret_note\ufeff\":\"d\",\"ｓｅｃｒｅｔ_note\":\"e\",\"secret_notes\":\"f\"}",
			"{\"Secret_Note\":\"[REDACTED:field]\",\"SECRET_NOTE\":\"[REDACTED:field]\",\"secret\\u200b_note\":\"[REDACTED:field]\",\"\u2060secret_note\ufeff\":\"[REDACTED:field]\",\"ｓｅｃｒｅｔ_note\":\"[REDACTED:field]\",\"secret_notes\":\"f\"}", 5},
		{"rule written in upper case", []string{"Card_Number"}, `{"card_number":1}`, `{"card_number":"[REDACTED:field]"}`, 1},
		{"rooted path any case", []string{"orders[*].IBAN"}, "{\"Orders\":[{\"iban\":\"X\",\"I\\u200bBAN\":\"Y\"}]}", "{\"Orders\":[{\"iban\":\"[REDACTED:field]\",\"I\\u200bBAN\":\"[REDACTED:field]\"}]}", 2},
		{"mixed", []string{"orders[*].iban", "email"},
			`{"email":"a","orders":[{"iban":"b","email":"c"}]}`,
			`{"email":"[REDACTED:field]","orders":[{"iban":"[REDACTED:field]","email":"[REDACTED:field]"}]}`, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := mustCompile(t, Rules{Paths: tt.paths})
			got, rep, err := rd.JSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("\n got %s\nwant %s", got, tt.want)
			}
			if rep.Counts[KindField] != tt.n || rep.Total() != tt.n {
				t.Errorf("report %+v, want %d fields", rep, tt.n)
			}
			checkValue(t, rd, tt.in, tt.want, rep)
		})
	}
}

func TestJSONDetectors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		n    map[string]int
	}{
		{"string", `{"note":"card 4111111111111111"}`, `{"note":"card [REDACTED:credit_card]"}`, map[string]int{"credit_card": 1}},
		{"number", `{"card":4111111111111111,"amount":12.5,"ts":1732694400000,"big":12345678901234567890123}`,
			`{"card":"[REDACTED:credit_card]","amount":12.5,"ts":1732694400000,"big":12345678901234567890123}`, map[string]int{"credit_card": 1}},
		{"key", `{"alice@example.com":{"n":1}}`, `{"[REDACTED:email]":{"n":1}}`, map[string]int{"email": 1}},
		{"escaped digits", `["\u0034111111111111111"]`, `["[REDACTED:credit_card]"]`, map[string]int{"credit_card": 1}},
		{"escapes kept when clean", `["a\u00e9\n\"b\"\/"]`, `["a\u00e9\n\"b\"\/"]`, nil},
		{"re-encoded around a finding", `["line\n\"Bearer abcdefghijk\"\t\u0001é"]`, `["line\n\"Bearer [REDACTED:secret]\"\t\u0001é"]`, map[string]int{"secret": 1}},
		{"pem with escapes", `{"key":"-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n"}`, `{"key":"[REDACTED:secret]\n"}`, map[string]int{"secret": 1}},
		{"aws secret key", `{"aws_secret_access_key":"anything","AWS_SECRET_ACCESS_KEY":"","other":"x"}`,
			`{"aws_secret_access_key":"[REDACTED:secret]","AWS_SECRET_ACCESS_KEY":"","other":"x"}`, map[string]int{"secret": 1}},
		{"invalid utf8 repaired", "[\"a\xffb\"]", `["a` + "\uFFFD" + `b"]`, nil},
		{"whitespace dropped", " { \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } \n", `{"a":[1,2],"b":{},"c":[]}`, nil},
		{"literals", `[true,false,null,-0,1e5,-1.5E-3]`, `[true,false,null,-0,1e5,-1.5E-3]`, nil},
		{"many kinds", `{"u":{"email":"bob@example.org","phone":"+1 415 555 2671","ssn":"123-45-6789","iban":"GB82 WEST 1234 5698 7654 32","k":"` + ghToken + `"}}`,
			`{"u":{"email":"[REDACTED:email]","phone":"[REDACTED:phone]","ssn":"[REDACTED:ssn]","iban":"[REDACTED:iban]","k":"[REDACTED:secret]"}}`,
			map[string]int{"email": 1, "phone": 1, "ssn": 1, "iban": 1, "secret": 1}},
	}
	rd := mustCompile(t, Rules{Detectors: KnownDetectors()})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep, err := rd.JSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("invalid output %s", got)
			}
			if len(rep.Counts) != len(tt.n) {
				t.Errorf("counts %v, want %v", rep.Counts, tt.n)
			}
			for k, n := range tt.n {
				if rep.Counts[k] != n {
					t.Errorf("counts %v, want %v", rep.Counts, tt.n)
				}
			}
		})
	}
}

func TestJSONInvalid(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"spaces", `   `},
		{"open object", `{`},
		{"trailing comma array", `[1,]`},
		{"trailing comma object", `{"a":1,}`},
		{"key without value", `{"a"}`},
		{"unquoted key", `{a:1}`},
		{"bad literal", `tru`},
		{"leading zero", `01`},
		{"bad fraction", `1.`},
		{"bad exponent", `1e`},
		{"plus", `+1`},
		{"control char", "\"\t\""},
		{"trailing data", `{"a":1}x`},
		{"two values", `1 2`},
		{"missing comma", `[1 2]`},
		{"bad escape", `"\x"`},
		{"short unicode escape", `"\u12"`},
		{"unterminated string", `"abc`},
		{"unterminated escape", `"\`},
		{"too deep", strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2)},
		{"nan", `NaN`},
	}
	rd := mustCompile(t, Rules{Detectors: KnownDetectors(), Context: tenantCtx})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := rd.JSON([]byte(tt.in))
			if !errors.Is(err, ErrInvalidJSON) || out != nil {
				t.Fatalf("JSON(%q) = %q, %v; want ErrInvalidJSON", tt.in, out, err)
			}
		})
	}
}

func TestValue(t *testing.T) {
	rd := mustCompile(t, Rules{Detectors: []string{"credit_card", "email", "secret"}, Paths: []string{"pw"}, Context: tenantCtx})
	type rec struct {
		Email string `json:"email"`
		Pw    string `json:"pw"`
	}
	tests := []struct {
		name string
		in   any
		want string
		n    int
	}{
		{"float card", map[string]any{"c": float64(4111111111111111), "f": 1.5}, `{"c":"[REDACTED:credit_card]","f":1.5}`, 1},
		{"struct fallback", []rec{{"a@b.io", "x"}}, `[{"email":"[REDACTED:email]","pw":"[REDACTED:field]"}]`, 2},
		{"unencodable", map[string]any{"f": func() {}}, `{"f":"[REDACTED:field]"}`, 1},
		{"aws key", map[string]any{"aws_secret_access_key": "x"}, `{"aws_secret_access_key":"[REDACTED:secret]"}`, 1},
		{"context float", []any{map[string]any{"tenant_id": float64(42)}, map[string]any{"tenant_id": float64(7)}}, `[{"tenant_id":42}]`, 1},
		{"nil", nil, `null`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep := rd.Value(tt.in)
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got %s, want %s", b, tt.want)
			}
			if rep.Total() != tt.n {
				t.Errorf("report %+v, want %d", rep, tt.n)
			}
		})
	}
}

func TestScan(t *testing.T) {
	args := map[string]any{
		"to":    "alice@example.com",
		"cc":    []any{"bob@example.com", "nobody"},
		"card":  json.Number("4111111111111111"),
		"notes": "key " + ghToken,
		"bob@example.org": map[string]any{
			"n": 1.0,
		},
	}
	tests := []struct {
		name string
		dets []string
		want map[string]int
	}{
		{"all", KnownDetectors(), map[string]int{"email": 3, "credit_card": 1, "secret": 1}},
		{"subset", []string{"secret"}, map[string]int{"secret": 1}},
		{"unknown ignored", []string{"nope", "credit_card"}, map[string]int{"credit_card": 1}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Scan(args, tt.dets)
			if len(got) != len(tt.want) {
				t.Fatalf("Scan = %v, want %v", got, tt.want)
			}
			for k, n := range tt.want {
				if got[k] != n {
					t.Fatalf("Scan = %v, want %v", got, tt.want)
				}
			}
		})
	}
	if args["to"] != "alice@example.com" {
		t.Error("Scan modified its input")
	}
}

func TestIsText(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		body []byte
		want bool
	}{
		{"json", "application/json; charset=utf-8", []byte{0, 1, 2}, true},
		{"problem json", "application/problem+json", nil, true},
		{"html", "text/html", nil, true},
		{"xml", "application/xml", nil, true},
		{"png", "image/png", []byte("\x89PNG\r\n\x1a\n\x00\x00"), false},
		{"octet stream holding text", "application/octet-stream", []byte("card 4111111111111111\n"), true},
		{"no type binary", "", []byte{0xff, 0xfe, 0}, false},
		{"no type text", "", []byte("hello"), true},
		{"bad type", ";;;", []byte("hello\tworld\r\n"), true},
		{"pdf", "application/pdf", []byte("%PDF-1.7\n\x00\x01"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsText(tt.ct, tt.body); got != tt.want {
				t.Errorf("IsText(%q) = %v", tt.ct, got)
			}
		})
	}
}
