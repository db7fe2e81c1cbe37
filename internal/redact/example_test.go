package redact_test

import (
	"fmt"

	"github.com/agentharness/harness/internal/redact"
)

func ExampleRedactor_JSON() {
	rd, err := redact.Compile(redact.Rules{
		Paths:     []string{"[*].orders[*].iban"},
		Context:   map[string][]string{"tenant_id": {"acme"}},
		Detectors: []string{"secret", "credit_card", "email"},
	})
	if err != nil {
		panic(err)
	}
	out, rep, err := rd.JSON([]byte(`[
		{"tenant_id": "acme", "email": "alice@example.com", "orders": [{"id": 1, "iban": "DE89370400440532013000"}]},
		{"tenant_id": "globex", "email": "bob@example.com"},
		{"tenant_id": "acme", "note": "card 4111 1111 1111 1111"}
	]`))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
	fmt.Println(rep.Counts, rep.Total())

	out, rep, _ = rd.JSON([]byte(`{"tenant_id": "globex", "name": "Wile E."}`))
	fmt.Println(string(out), rep.ContextEmpty)
	// Output:
	// [{"tenant_id":"acme","email":"[REDACTED:email]","orders":[{"id":1,"iban":"[REDACTED:field]"}]},{"tenant_id":"acme","note":"card [REDACTED:credit_card]"}]
	// map[context:1 credit_card:1 email:1 field:1] 4
	// null true
}
