package sampleapi

import (
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

func base64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

var bodySeeds = []string{
	``, `{}`, `null`, `[]`, `"x"`, `{"customer_id":"c-1","subject":"s","body":"b"}`,
	`{"customer_id":"c-1","subject":"s","body":"b","priority":"high","tenant_id":"acme"}`,
	`{"tenant_id":"acme","order_id":"o-100","amount_cents":5,"reason":"late","comment":null}`,
	`{"amount_cents":-1}`, `{"amount_cents":1e400}`, `{"amount_cents":9007199254740993}`,
	`{"reply":{"author":"a","body":"b","replies":[{"author":"c","body":"d","replies":[]}]}}`,
	`{"reply":{"replies":"x"}}`, `{"status":"open","assignee":null}`, `{"a":`, `{} x`,
}

// checkParse asserts the invariant of every body parser: either a value and
// no error, or a 413/422 httpError (never another error, never a panic).
func checkParse(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return true
	}
	he, ok := errors.AsType[*httpError](err)
	if !ok || (he.status != 422 && he.status != 413) {
		t.Fatalf("unexpected error %v", err)
	}
	if he.status == 422 {
		if list, ok := he.detail.([]validationError); !ok || len(list) == 0 {
			t.Fatalf("422 without validation errors: %#v", he.detail)
		}
	}
	return false
}

func FuzzParseTicketCreate(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		in, err := parseTicketCreate(httptest.NewRequest("POST", "/tickets", strings.NewReader(body)))
		if !checkParse(t, err) {
			return
		}
		if in.CustomerID == "" && !strings.Contains(body, `"customer_id"`) {
			t.Fatalf("accepted a body without customer_id: %q", body)
		}
		if n := utf8.RuneCountInString(in.Subject); n < 1 || n > 200 {
			t.Fatalf("subject length %d accepted", n)
		}
		if !isOneOf(in.Priority, priorities) || (in.TenantID != "" && !isOneOf(in.TenantID, tenants)) {
			t.Fatalf("accepted %+v", in)
		}
	})
}

func FuzzParseTicketUpdate(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		in, err := parseTicketUpdate(httptest.NewRequest("PATCH", "/tickets/t-1", strings.NewReader(body)))
		if !checkParse(t, err) {
			return
		}
		if (in.Status != nil && !isOneOf(*in.Status, ticketStatuses)) || (in.Priority != nil && !isOneOf(*in.Priority, priorities)) {
			t.Fatalf("accepted %+v", in)
		}
	})
}

func FuzzParseRefundCreate(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		in, err := parseRefundCreate(httptest.NewRequest("POST", "/refunds", strings.NewReader(body)))
		if !checkParse(t, err) {
			return
		}
		if in.AmountCents <= 0 || !isOneOf(in.TenantID, tenants) || !isOneOf(in.Reason, refundReasons) {
			t.Fatalf("accepted %+v", in)
		}
	})
}

func FuzzUnverifiedClaims(f *testing.F) {
	f.Add(makeJWT(`{"sub":"alice","act":{"sub":"bot"},"roles":["a"],"exp":1,"extra":"x"}`))
	f.Add(makeJWT(`{}`))
	f.Add(makeJWT(`null`))
	f.Add("a.b.c")
	f.Add("..")
	f.Add("")
	f.Add("e30.e30.e30")
	f.Add(makeJWT(`{"sub":"a"} {"sub":"b"}`))
	f.Fuzz(func(t *testing.T, token string) {
		claims := unverifiedClaims(token)
		if claims == nil {
			return
		}
		if strings.Count(token, ".") != 2 {
			t.Fatalf("claims from a token with %d dots", strings.Count(token, "."))
		}
		for k := range claims {
			if !isOneOf(k, echoedClaims) {
				t.Fatalf("unlisted claim %q echoed", k)
			}
		}
	})
}
