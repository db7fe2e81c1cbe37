package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRedactionThroughBinary: a support user of acme sees only acme's
// records, with card numbers masked; secrets, cards and SSNs are masked for
// everyone by default, in text and structured content alike.
func TestRedactionThroughBinary(t *testing.T) {
	st := startStack(t, "")
	viewer := mint(t, st.iss, st.gw.URL, map[string]any{"sub": "carol", "roles": []string{"viewer"}, "tenant": "globex"})
	secrets := []string{"4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881", "3782 822463 10005",
		"sk_live_51HxAcmeFakeKey0000000000", "078-05-1120"}
	for _, e := range eras {
		t.Run(e.name, func(t *testing.T) {
			alice := connect(t, st.gw.URL, st.tokens["alice"], e)
			res := callTool(t, alice, "crm_list_customers", nil)
			txt := resultText(res)
			structured, _ := json.Marshal(res.StructuredContent)
			if res.IsError || !strings.Contains(txt, "c-1") || !strings.Contains(txt, "c-2") {
				t.Fatalf("alice's customers: %v %s", res.IsError, txt)
			}
			for _, out := range []string{txt, string(structured)} {
				if strings.Contains(out, "globex") || strings.Contains(out, "c-3") || strings.Contains(out, "c-4") {
					t.Errorf("another tenant's record reached alice: %s", out)
				}
				if !strings.Contains(out, "[REDACTED:") {
					t.Errorf("nothing masked: %s", out)
				}
				for _, s := range secrets {
					if strings.Contains(out, s) {
						t.Errorf("%q survived: %s", s, out)
					}
				}
			}

			// A record of another tenant comes back as a clear refusal.
			res = callTool(t, connect(t, st.gw.URL, viewer, e), "crm_get_customer", map[string]any{"customer_id": "c-1"})
			if txt := resultText(res); !res.IsError || !strings.Contains(txt, "no record in your context") || strings.Contains(txt, "Alice Anders") {
				t.Errorf("carol (globex) reading an acme customer: %v %s", res.IsError, txt)
			}

			// An admin sees every tenant, but the default detectors still
			// mask secrets, cards and SSNs.
			bob := connect(t, st.gw.URL, st.tokens["bob"], e)
			res = callTool(t, bob, "crm_list_customers", nil)
			txt = resultText(res)
			structured, _ = json.Marshal(res.StructuredContent)
			if res.IsError || !strings.Contains(txt, "c-3") {
				t.Fatalf("bob's customers: %s", txt)
			}
			for _, out := range []string{txt, string(structured)} {
				for _, s := range secrets {
					if strings.Contains(out, s) {
						t.Errorf("%q survived for the admin: %s", s, out)
					}
				}
			}
		})
	}
	// The audit trail counts redactions, never the values.
	audit := readFile(t, st.gw.AuditPath)
	if !strings.Contains(audit, `"redaction_kinds"`) {
		t.Error("no redaction counts in the audit trail")
	}
	for _, s := range secrets {
		if strings.Contains(audit, s) {
			t.Errorf("%q reached the audit trail", s)
		}
	}
}

// TestDelegationKeepsTenantContext: a delegation narrows what an agent may
// do; it must never widen what the human may see. The tenant claim travels
// into the delegation token, so the context filter still applies.
func TestDelegationKeepsTenantContext(t *testing.T) {
	st := startStack(t, "")
	deleg := delegate(t, st.gw.URL, st.tokens["alice"], "", "tool:crm_*")
	for _, e := range eras {
		c := connect(t, st.gw.URL, deleg, e)
		res := callTool(t, c, "crm_list_customers", nil)
		txt := resultText(res)
		if res.IsError || !strings.Contains(txt, "c-1") {
			t.Fatalf("%s: alice's delegated agent cannot list her customers: %s", e.name, txt)
		}
		if strings.Contains(txt, "globex") || strings.Contains(txt, "c-3") {
			t.Errorf("%s: a delegation widened alice's tenant context: %s", e.name, txt)
		}
	}
}
