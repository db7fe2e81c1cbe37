package redact

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// planted values every fuzz input carries; none may survive redaction.
var planted = []string{
	"4111111111111111", "5555-5555-5555-4444", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "AKIAIOSFODNN7EXAMPLE",
	ghToken, jwt, "alice@example.com", "123-45-6789", "DE89370400440532013000",
	"postgres://admin:hunter2@10.0.0.5/crm", "Password=hunter2", pemBlock,
}

// foreign marks a record of another tenant; no record holding it may survive.
const foreign = "FOREIGN-RECORD-7f3a"

// survived reports whether the planted p is still in out, beyond the copies
// the fuzz text s itself holds (each s appears twice around p).
func survived(out, s, p string) bool {
	return strings.Count(out, p) > 2*strings.Count(s, p)
}

func fuzzRedactor(t testing.TB) *Redactor {
	return mustCompile(t, Rules{
		Detectors: KnownDetectors(),
		Paths:     []string{"password", "orders[*].iban", "[*].a"},
		Context:   map[string][]string{"tenant_id": {"acme"}},
	})
}

func FuzzJSON(f *testing.F) {
	for _, s := range []string{
		`{"tenant_id":"acme","orders":[{"iban":"DE89370400440532013000","id":1}],"password":"x"}`,
		`[{"a":1,"tenant_id":"globex"},{"b":"4111 1111 1111 1111"}]`,
		`{"k\u0065y":"\u0034111111111111111\n","n":-1.5e10,"t":[true,false,null]}`,
		`"Bearer abcdefghijklmnop"`, `[]`, `{}`, `0`, `{"a":`, `[1,]`, "\"\xff\"",
		`{"aws_secret_access_key":"x","x":[[[[{}]]]]}`,
		// Attacks: a foreign tenant named below the record, or under a key
		// spelled another way.
		`[{"name":"Globex secret deal","amount":1000000,"owner":{"tenant_id":"globex"}}]`,
		`[{"Tenant_ID":"globex"},{"tenant\u200b_id":"globex"},{"ｔｅｎａｎｔ_ｉｄ":"globex"}]`,
		`{"PASSWORD":"x","pass\u200bword":"y","Orders":[{"IBAN":"z"}]}`,
	} {
		f.Add([]byte(s), "note")
	}
	f.Add([]byte(`{"x":"+1 415 555 2671"}`), "4111 1111 1111 ")
	f.Add([]byte(`1`), "-----BEGIN PRIVATE KEY-----")
	f.Fuzz(func(t *testing.T, data []byte, s string) {
		rd := fuzzRedactor(t)
		out, rep, err := rd.JSON(data)
		if valid := json.Valid(data); valid != (err == nil) {
			t.Fatalf("json.Valid=%v but err=%v for %q", valid, err, data)
		}
		if err == nil {
			if !json.Valid(out) {
				t.Fatalf("invalid output %q for %q", out, data)
			}
			if rep.ContextEmpty && (string(out) != "null" || rep.Counts[KindContext] != 1) {
				t.Fatalf("inconsistent report %+v for %q", rep, out)
			}
			var v any
			if json.Unmarshal(data, &v) == nil {
				rd.Value(v)
			}
		}

		// Plant every value in strings, keys and arrays around the fuzz text.
		var parts []any
		obj := map[string]any{}
		for _, p := range planted {
			x := s + " " + p + " " + s
			parts = append(parts, x)
			obj[x] = x
		}
		// Plant foreign-tenant records: the tenant named deep below the
		// record, under spellings of the key that must match, and under
		// the fuzz text as a key when it folds to the context key.
		var records []any
		for _, k := range []string{"tenant_id", "Tenant_ID", "TENANT_ID", "tenant\u200b_id", "\ufefftenant_id", "ｔｅｎａｎｔ_ｉｄ", "tenant_\u2060id", s} {
			owner := map[string]any{k: "globex", "note": s}
			if foldKey(k) != "tenant_id" {
				owner = map[string]any{"tenant_id": s + "-globex", k: s}
			}
			records = append(records,
				map[string]any{"name": foreign, "s": s, "owner": owner},
				map[string]any{"name": "mine", "deep": []any{map[string]any{"a": map[string]any{"b": owner}, "x": foreign}}},
				map[string]any{"name": "ok", "tenant_id": "acme"})
		}
		doc, err := json.Marshal(map[string]any{"note": parts, "obj": obj, "n": json.Number("4111111111111111"), "tenant_id": "acme", "records": records})
		if err != nil {
			t.Fatal(err)
		}
		out, _, err = rd.JSON(doc)
		if err != nil {
			t.Fatalf("JSON(%s): %v", doc, err)
		}
		for _, p := range append(planted, foreign) {
			if survived(string(out), s, p) {
				t.Fatalf("%q survived in %s", p, out)
			}
		}
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatal(err)
		}
		rv, _ := rd.Value(v)
		vb, _ := json.Marshal(rv)
		for _, p := range append(planted, foreign) {
			if survived(string(vb), s, p) {
				t.Fatalf("%q survived Value in %s", p, vb)
			}
		}
	})
}

func FuzzText(f *testing.F) {
	for _, s := range []string{
		"", "plain", "card 4111-1111-1111-1111 exp 12/25", "+44 (0)20 7946 0958", "a@b.co", "DE89 3704 0044 0532 0130 00",
		"-----BEGIN EC PRIVATE KEY-----\nx", "aws_secret_access_key=", "postgres://admin:hunter2@", "a://:@", "pwd= x", "DB_PASSWORD='", "eyJa.eyJb.", "Bearer ", "xoxb-", "1-800-555-0199",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rd := fuzzRedactor(t)
		out, rep := rd.Text(s)
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("Text broke UTF-8: %q -> %q", s, out)
		}
		if got := strings.Count(out, "[REDACTED:") - strings.Count(s, "[REDACTED:"); got < rep.Total() {
			t.Fatalf("report %+v but %d masks in %q", rep, got, out)
		}
		counts := Scan(s, KnownDetectors())
		for k, n := range rep.Counts {
			if counts[k] != n {
				t.Fatalf("Scan %v != Text report %v for %q", counts, rep.Counts, s)
			}
		}
		for _, p := range planted {
			x := s + " " + p + " " + s
			out, _ := rd.Text(x)
			if survived(out, s, p) {
				t.Fatalf("%q survived in %q", p, out)
			}
		}
	})
}
