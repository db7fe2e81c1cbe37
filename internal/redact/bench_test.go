package redact

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

var (
	firstNames = []string{"Alice", "Bob", "Carmen", "Dmitri", "Eve", "Farah", "Gustavo", "Hana", "Ivan", "Jun"}
	lastNames  = []string{"Smith", "Okafor", "García", "Ivanova", "Nakamura", "Müller", "Haddad", "Kowalski"}
	words      = strings.Fields("the customer asked about delivery of order and wants a refund for the damaged item please call back after lunch " +
		"shipment delayed due to weather warehouse confirmed stock priority support ticket escalated resolved invoice attached")
)

// records returns a realistic JSON result of about size bytes: an array of
// customer records with nested orders, free-text notes and numbers, a few
// of which hold PII.
func records(size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []any
	n := 0
	for i := 0; n < size; i++ {
		fn, ln := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		var note strings.Builder
		for range 8 + rng.IntN(20) {
			note.WriteString(words[rng.IntN(len(words))])
			note.WriteByte(' ')
		}
		if i%10 == 0 {
			note.WriteString("card 4111 1111 1111 1111 on file")
		}
		var orders []any
		for j := range 1 + rng.IntN(3) {
			orders = append(orders, map[string]any{
				"id":     fmt.Sprintf("ord_%08d", i*10+j),
				"amount": json.Number(fmt.Sprintf("%d.%02d", rng.IntN(5000), rng.IntN(100))),
				"status": []string{"shipped", "pending", "refunded"}[rng.IntN(3)],
				"iban":   "DE89370400440532013000",
				"items":  []any{map[string]any{"sku": fmt.Sprintf("SKU-%05d", rng.IntN(99999)), "qty": rng.IntN(9) + 1}},
			})
		}
		rec := map[string]any{
			"id":         i,
			"tenant_id":  []string{"acme", "acme", "acme", "globex"}[rng.IntN(4)],
			"name":       fn + " " + ln,
			"email":      strings.ToLower(fn) + "." + strings.ToLower(ln) + "@example.com",
			"created_at": "2024-01-15T10:00:00Z",
			"balance":    json.Number(fmt.Sprintf("%d.%02d", rng.IntN(100000), rng.IntN(100))),
			"notes":      note.String(),
			"orders":     orders,
		}
		b, _ := json.Marshal(rec)
		n += len(b) + 1
		out = append(out, rec)
	}
	b, _ := json.Marshal(out)
	return b
}

var benchSizes = []struct {
	name string
	size int
}{{"1KiB", 1 << 10}, {"100KiB", 100 << 10}, {"5MiB", 5 << 20}}

// BenchmarkJSON measures the full pass: parse, context filter, path masks,
// default detectors, emit.
func BenchmarkJSON(b *testing.B) {
	rd := mustCompile(b, Rules{
		Detectors: DefaultDetectors(),
		Paths:     []string{"[*].orders[*].iban", "balance"},
		Context:   map[string][]string{"tenant_id": {"acme"}},
	})
	for _, sz := range benchSizes {
		data := records(sz.size)
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := rd.JSON(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJSONAllDetectors is BenchmarkJSON with every detector on.
func BenchmarkJSONAllDetectors(b *testing.B) {
	rd := mustCompile(b, Rules{Detectors: KnownDetectors(), Context: map[string][]string{"tenant_id": {"acme"}}})
	for _, sz := range benchSizes {
		data := records(sz.size)
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, _, err := rd.JSON(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDetect measures the detector pass alone over the raw bytes.
func BenchmarkDetect(b *testing.B) {
	for _, set := range []struct {
		name string
		dets []string
	}{{"default", DefaultDetectors()}, {"all", KnownDetectors()}} {
		rd := mustCompile(b, Rules{Detectors: set.dets})
		for _, sz := range benchSizes {
			data := records(sz.size)
			b.Run(set.name+"/"+sz.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				var ms []match
				for b.Loop() {
					ms = rd.det.find(data, ms[:0])
				}
			})
		}
	}
}

// BenchmarkBaseline is encoding/json over the same data, for comparison.
func BenchmarkBaseline(b *testing.B) {
	for _, sz := range benchSizes {
		data := records(sz.size)
		b.Run("Valid/"+sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				json.Valid(data)
			}
		})
		b.Run("Unmarshal/"+sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var v any
				if err := json.Unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompile measures compiling typical per-call rules.
func BenchmarkCompile(b *testing.B) {
	r := Rules{Detectors: DefaultDetectors(), Paths: []string{"card_number", "orders[*].iban"}, Context: map[string][]string{"tenant_id": {"acme"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(r); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBenchmarkData(t *testing.T) {
	data := records(100 << 10)
	if !json.Valid(data) || len(data) < 100<<10 {
		t.Fatalf("bad benchmark data: %d bytes", len(data))
	}
	rd := mustCompile(t, Rules{Detectors: DefaultDetectors(), Paths: []string{"[*].orders[*].iban"}, Context: map[string][]string{"tenant_id": {"acme"}}})
	out, rep, err := rd.JSON(data)
	if err != nil || !json.Valid(out) {
		t.Fatal(err)
	}
	if rep.Counts[KindContext] == 0 || rep.Counts[KindCreditCard] == 0 || rep.Counts[KindField] == 0 || strings.Contains(string(out), "globex") {
		t.Errorf("report %+v", rep)
	}
}
