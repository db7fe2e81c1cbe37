package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentharness/harness/internal/redact"
	"github.com/agentharness/harness/tools"
)

// TestRenderNonJSONResults: field masks hold whatever content type the
// upstream declares, and a body that is not JSON is withheld when the
// decision names redact or context (the attack: text/plain, x-json, a BOM,
// NDJSON or trailing garbage slipped tenant_id past the masks, and the
// audit record still claimed the redactions).
func TestRenderNonJSONResults(t *testing.T) {
	const rec = `{"name":"Acme deal","secret_note":"merger","card_number":"x","tenant_id":"globex"}`
	masks := mustRedactor(t, redact.Rules{Paths: []string{"secret_note", "card_number", "tenant_id"}, Detectors: redact.DefaultDetectors()})
	ctx := mustRedactor(t, redact.Rules{Context: map[string][]string{"tenant_id": {"acme"}}, Detectors: redact.DefaultDetectors()})
	detectorsOnly := mustRedactor(t, redact.Rules{Detectors: redact.DefaultDetectors()})
	tests := []struct {
		name     string
		red      *redact.Redactor
		ct, body string
		status   int
		want     string // in the text; "" for a withheld result
		fields   int    // field redactions reported
	}{
		{"application/json", masks, "application/json", rec, 200, `"Acme deal"`, 3},
		{"text/plain", masks, "text/plain; charset=utf-8", rec, 200, `"Acme deal"`, 3},
		{"application/x-json", masks, "application/x-json", rec, 200, `"Acme deal"`, 3},
		{"text/json", masks, "text/json", rec, 200, `"Acme deal"`, 3},
		{"no content type", masks, "", rec, 200, `"Acme deal"`, 3},
		{"byte-order mark", masks, "application/json", "\ufeff" + rec, 200, `"Acme deal"`, 3},
		{"byte-order mark as text", masks, "text/plain", "\ufeff \n" + rec, 200, `"Acme deal"`, 3},
		{"NDJSON", masks, "application/x-ndjson", rec + "\n" + rec + "\n", 200, "", 0},
		{"JSON then garbage", masks, "application/json", rec + " trailing", 200, "", 0},
		{"two JSON values", masks, "application/json", rec + rec, 200, "", 0},
		{"HTML", masks, "text/html", "<p>tenant_id: globex, secret_note: merger</p>", 200, "", 0},
		{"HTML error page", masks, "text/html", "<h1>500</h1> secret_note=merger", 500, "", 0},
		{"context rule, prose", ctx, "text/plain", "globex merger", 200, "", 0},
		{"context rule, nested foreign record as text/plain", ctx, "text/plain",
			`[{"name":"Globex secret deal","owner":{"tenant_id":"globex"}},{"name":"mine","owner":{"tenant_id":"acme"}}]`, 200, `"mine"`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, rep, withheld := render(tt.red, &tools.Response{Status: tt.status, ContentType: tt.ct, Body: []byte(tt.body)})
			txt := text(res)
			for _, leak := range []string{"merger", "globex", "Globex"} {
				if strings.Contains(txt, leak) {
					t.Errorf("%q reached the agent: %s", leak, txt)
				}
			}
			if tt.want == "" {
				if !res.IsError || !strings.Contains(txt, "not JSON") || !strings.Contains(txt, "withheld") || withheld == "" {
					t.Errorf("want a withheld result, got isError=%v %q (audit note %q)", res.IsError, txt, withheld)
				}
				if rep.Total() != 0 {
					t.Errorf("the audit would claim %d redactions that did not happen", rep.Total())
				}
				return
			}
			if res.IsError || !strings.Contains(txt, tt.want) || withheld != "" {
				t.Fatalf("want %s released, got isError=%v %q (withheld %q)", tt.want, res.IsError, txt, withheld)
			}
			if rep.Counts[redact.KindField] != tt.fields {
				t.Errorf("field redactions = %d, want %d", rep.Counts[redact.KindField], tt.fields)
			}
			if sc, _ := json.Marshal(res.StructuredContent); strings.Contains(string(sc), "merger") || strings.Contains(string(sc), "globex") {
				t.Errorf("structured content leaks: %s", sc)
			}
		})
	}

	// A decision with detectors only still passes text, detectors applied.
	res, rep, withheld := render(detectorsOnly, &tools.Response{Status: 200, ContentType: "text/plain", Body: []byte("card 4111 1111 1111 1111\nnot json")})
	if txt := text(res); res.IsError || withheld != "" || strings.Contains(txt, "4111") || !strings.Contains(txt, "not json") || rep.Counts[redact.KindCreditCard] != 1 {
		t.Errorf("detectors-only text: isError=%v %q %+v", res.IsError, txt, rep)
	}
}

func mustRedactor(t *testing.T, r redact.Rules) *redact.Redactor {
	t.Helper()
	rd, err := redact.Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

// FuzzRender: under a decision with field masks and a context filter, a
// result is either withheld or valid JSON; whatever the upstream declares
// or sends, no text that could not be masked is released.
func FuzzRender(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"text/plain", `{"secret_note":"merger","tenant_id":"acme"}`},
		{"application/x-json", `[{"Tenant_ID":"globex"},{"tenant_id":"acme"}]`},
		{"application/json", "\ufeff{\"secret_note\":1}"},
		{"application/x-ndjson", "{\"a\":1}\n{\"a\":2}\n"},
		{"application/json", `{"a":1} trailing`},
		{"text/html", "<p>secret_note: merger</p>"},
		{"", "postgres://admin:hunter2@10.0.0.5/crm"},
		{"application/octet-stream", "\x00\x01"},
	} {
		f.Add(s.ct, []byte(s.body), 200)
	}
	f.Add("text/plain", []byte("oops"), 500)
	f.Fuzz(func(t *testing.T, ct string, body []byte, status int) {
		if status < 100 || status > 599 {
			status = 200
		}
		red := mustRedactor(t, redact.Rules{
			Paths: []string{"secret_note"}, Context: map[string][]string{"tenant_id": {"acme"}}, Detectors: redact.KnownDetectors(),
		})
		res, rep, withheld := render(red, &tools.Response{Status: status, ContentType: ct, Body: body})
		txt := text(res)
		if withheld != "" {
			if !res.IsError || rep.Total() != 0 {
				t.Fatalf("withheld (%s) but isError=%v, %d redactions reported", withheld, res.IsError, rep.Total())
			}
			return
		}
		if rep.ContextEmpty || len(strings.TrimSpace(string(body))) == 0 {
			return
		}
		if status >= 400 {
			_, txt, _ = strings.Cut(txt, ": ")
		}
		if !json.Valid([]byte(txt)) {
			t.Fatalf("non-JSON released under field masks: %q (from %q, %q)", txt, ct, body)
		}
	})
}
