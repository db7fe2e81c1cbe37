package sampleapi

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func BenchmarkGetCustomer(b *testing.B) {
	h := New().Handler()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/customers/c-1", nil))
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func BenchmarkCreateTicket(b *testing.B) {
	h := New().Handler()
	const body = `{"customer_id":"c-1","subject":"Broken","body":"It broke","priority":"high"}`
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/tickets", strings.NewReader(body)))
		if rec.Code != 201 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
