package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestPeopleAreNamed: a human whose sub is opaque (as Dex's is) is named by
// email and name in the audit record, in `audit show`, in `audit tail
// --subject <email>` and in the upstream's identity assertion.
func TestPeopleAreNamed(t *testing.T) {
	ds := startDelegationStack(t)
	const sub = "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs"
	tok := mint(t, ds.iss, ds.gw.URL, map[string]any{"sub": sub, "roles": []string{"admin"},
		"email": "dana@acme.example", "name": "Dana Ops", "azp": "copilot-9"})
	w := gatewayWhoami(t, ds.gw.URL, tok, eras[0])
	if w.AssertionClaims["sub"] != sub || w.AssertionClaims["email"] != "dana@acme.example" || w.AssertionClaims["name"] != "Dana Ops" {
		t.Errorf("assertion claims %v: want sub, email and name", w.AssertionClaims)
	}

	// The record of the call names the person (the file is written within
	// the batch interval; poll until the call's record is there).
	var rec map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for rec == nil {
		for _, line := range strings.Split(readFile(t, ds.gw.AuditPath), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["tool"] == "crm_whoami" {
				rec = r
			}
		}
		if rec == nil && time.Now().After(deadline) {
			t.Fatal("no audit record of the call")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rec["subject"] != sub || rec["email"] != "dana@acme.example" || rec["name"] != "Dana Ops" {
		t.Errorf("audit record %v: want subject, email and name", rec)
	}

	out, code := audRunGateway(t, "audit", "show", ds.gw.AuditPath)
	if want := "ALLOW Dana Ops <dana@acme.example> (" + sub + ") via copilot-9 → crm_whoami"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("audit show (exit %d) lacks %q:\n%s", code, want, out)
	}
	out, code = audRunGateway(t, "audit", "tail", "--subject", "Dana@acme.example", ds.gw.AuditPath)
	if code != 0 || !strings.Contains(out, "crm_whoami") {
		t.Errorf("audit tail --subject <email> (exit %d):\n%s", code, out)
	}
	out, _ = audRunGateway(t, "audit", "tail", "--subject", "bob@acme.example", ds.gw.AuditPath)
	if strings.Contains(out, "crm_whoami") {
		t.Errorf("audit tail --subject of another email shows dana's call:\n%s", out)
	}
}
