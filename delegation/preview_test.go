package delegation

import (
	"context"
	"net/http"
	"testing"
	"time"
)

const testPreview = testIssuer + "/env/pr-1/mcp"

type liveResources map[string]bool

func (l liveResources) Live(r string) bool { return l[r] }

// TestExchangeForPreview: resource= of a live preview gives a token whose
// aud is that preview (and OnIssue is told); an unknown or retired preview,
// or a mix of environments, is invalid_target; without Resources only
// production is a target.
func TestExchangeForPreview(t *testing.T) {
	e := newEnv(t)
	live := liveResources{testPreview: true}
	ask := func(resources ...string) (int, tokenReply) {
		f := e.form(e.humanToken(t, nil), e.agentToken(t, "agent-42"), "tool:*")
		for _, r := range resources {
			f.Add("resource", r)
		}
		return e.exchange(t, f)
	}
	if code, rep := ask(testPreview); code != http.StatusBadRequest || rep.Error != "invalid_target" {
		t.Fatalf("preview without Resources: %d %s, want invalid_target", code, rep.Error)
	}
	e.ex.Resources = live
	code, rep := ask(testPreview)
	if code != http.StatusOK {
		t.Fatalf("live preview: %d %s: %s", code, rep.Error, rep.ErrorDescription)
	}
	_, c := stdVerify(t, jwks(t, e.keys), rep.AccessToken)
	if c["aud"] != testPreview {
		t.Errorf("aud = %v, want %s", c["aud"], testPreview)
	}
	if last := e.issued[len(e.issued)-1]; last.Resource != testPreview {
		t.Errorf("OnIssue resource = %q, want the preview", last.Resource)
	}
	if _, err := e.ex.VerifyDelegation(context.Background(), rep.AccessToken); err != nil {
		t.Errorf("a preview's delegation token does not verify (it must, to be revoked): %v", err)
	}
	code, rep = ask()
	if _, c := stdVerify(t, jwks(t, e.keys), rep.AccessToken); code != http.StatusOK || c["aud"] != testAudience {
		t.Errorf("no resource: %d aud %v, want production's", code, c["aud"])
	}
	for name, rs := range map[string][]string{
		"unknown preview":          {testIssuer + "/env/pr-2/mcp"},
		"production and preview":   {testAudience, testPreview},
		"another gateway's":        {"https://elsewhere.test/env/pr-1/mcp"},
		"a path under the preview": {testPreview + "/x"},
	} {
		if code, rep := ask(rs...); code != http.StatusBadRequest || rep.Error != "invalid_target" {
			t.Errorf("%s: %d %s, want invalid_target", name, code, rep.Error)
		}
	}
	live[testPreview] = false
	if code, rep := ask(testPreview); code != http.StatusBadRequest || rep.Error != "invalid_target" || rep.ErrorDescription == "" {
		t.Errorf("retired preview: %d %s %q, want invalid_target", code, rep.Error, rep.ErrorDescription)
	}
}

// TestPreviewTokenStaysInItsPreview: a subject token confined to a preview
// is exchanged for that preview only (by default, and when asked), never
// for production or another preview.
func TestPreviewTokenStaysInItsPreview(t *testing.T) {
	e := newEnv(t)
	other := testIssuer + "/env/pr-2/mcp"
	e.ex.Resources = liveResources{testPreview: true, other: true}
	e.verifier.fixed["confined"] = &Subject{Issuer: idpIssuer, Subject: "alice", Agent: "agent-42", Resource: testPreview,
		Claims: map[string]any{"exp": float64(e.clock.Now().Add(time.Hour).Unix())}}
	ask := func(resources ...string) (int, tokenReply) {
		f := e.form("confined", "", "tool:*")
		for _, r := range resources {
			f.Add("resource", r)
		}
		return e.exchange(t, f)
	}
	for _, rs := range [][]string{nil, {testPreview}} {
		code, rep := ask(rs...)
		if code != http.StatusOK {
			t.Fatalf("%v: %d %s", rs, code, rep.Error)
		}
		if _, c := stdVerify(t, jwks(t, e.keys), rep.AccessToken); c["aud"] != testPreview {
			t.Errorf("%v: aud %v, want the preview", rs, c["aud"])
		}
	}
	for _, r := range []string{testAudience, other} {
		if code, rep := ask(r); code != http.StatusBadRequest || rep.Error != "invalid_target" {
			t.Errorf("confined token toward %s: %d %s, want invalid_target", r, code, rep.Error)
		}
	}
}

// TestIssueForPreview: Issue (the OAuth flow) gives a Subject's Resource as
// aud, and refuses a preview that is not live.
func TestIssueForPreview(t *testing.T) {
	e := newEnv(t)
	live := liveResources{testPreview: true}
	e.ex.Resources = live
	subj := &Subject{Issuer: idpIssuer, Subject: "alice", Resource: testPreview}
	tok, iss, err := e.ex.Issue(context.Background(), subj, "agent-42", []string{"tool:*"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, c := stdVerify(t, jwks(t, e.keys), tok); c["aud"] != testPreview || iss.Resource != testPreview {
		t.Errorf("aud %v, Issued.Resource %q: want the preview", c["aud"], iss.Resource)
	}
	live[testPreview] = false
	if _, _, err := e.ex.Issue(context.Background(), subj, "agent-42", []string{"tool:*"}, time.Minute); err == nil {
		t.Error("a token issued for a retired preview")
	}
}
