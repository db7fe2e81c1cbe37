package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/store"
)

func TestDigestCanonical(t *testing.T) {
	a, err := DigestJSON([]byte(`{"tool":"issue_refund","arguments":{"amount":250,"order_id":"o-1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{
		`{"arguments":{"order_id":"o-1","amount":250},"tool":"issue_refund"}`,
		` { "arguments" : { "amount" : 2.5e2 , "order_id" : "\u006f-1" } , "tool" : "issue_refund" } `,
		`{"tool":"issue_refund","arguments":{"amount":250.0,"order_id":"o-1"}}`,
	} {
		b, err := DigestJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%s hashes %s, want %s", doc, b, a)
		}
	}
	d, _ := Digest("issue_refund", map[string]any{"amount": 250, "order_id": "o-1"})
	if d != a {
		t.Errorf("Digest = %s, want %s", d, a)
	}
	for _, doc := range []string{
		`{"tool":"issue_refund","arguments":{"amount":251,"order_id":"o-1"}}`,
		`{"tool":"issue_refund","arguments":{"amount":"250","order_id":"o-1"}}`,
		`{"tool":"delete_ticket","arguments":{"amount":250,"order_id":"o-1"}}`,
	} {
		if b, _ := DigestJSON([]byte(doc)); b == a {
			t.Errorf("%s hashes like the original", doc)
		}
	}
}

// FuzzDigest: a document and its re-encoding (other key order, spacing)
// hash equally; canonicalisation is idempotent.
func FuzzDigest(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[true,null,"x"]}`, `{"b":2.50,"a":{"z":"\u00e9","y":-0}}`, `[1e3, "\ud83d\ude00"]`, `"s"`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var v any
		if json.Unmarshal(doc, &v) != nil {
			return
		}
		d1, err := DigestJSON(doc)
		if err != nil {
			return // JSON that RFC 8785 rejects (e.g. numbers out of range) is never hashed
		}
		re, err := json.MarshalIndent(v, " ", "\t")
		if err != nil {
			t.Fatal(err)
		}
		d2, err := DigestJSON(re)
		if err != nil {
			t.Fatalf("re-encoding %s fails: %v", re, err)
		}
		if d1 != d2 {
			t.Fatalf("%s and %s hash differently", doc, re)
		}
	})
}

func newService(t *testing.T) (*Service, *time.Time) {
	t.Helper()
	now := time.Now()
	s := New(store.NewMemory())
	s.now = func() time.Time { return now }
	return s, &now
}

func TestCheckLifecycle(t *testing.T) {
	ctx := context.Background()
	s, now := newService(t)
	b := Binding{Digest: "d1", Issuer: "iss", Subject: "alice", Agent: "agent-1", Environment: "prod"}
	tmpl := Request{Tool: "issue_refund", Approvers: []string{"role:admin"}, Reason: "r"}

	o, err := s.Check(ctx, b, tmpl, time.Minute)
	if err != nil || !o.Created || o.Granted {
		t.Fatalf("first call: %+v %v", o, err)
	}
	id := o.Request.ID
	o, _ = s.Check(ctx, b, tmpl, time.Minute)
	if o.Created || o.Request.ID != id || o.Granted {
		t.Fatalf("identical pending call: %+v, want request %s", o, id)
	}
	other := b
	other.Agent = "agent-2"
	if o, _ = s.Check(ctx, other, tmpl, time.Minute); !o.Created || o.Request.ID == id {
		t.Fatalf("another agent shares the request: %+v", o)
	}
	if _, err := s.Decide(ctx, id, true, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decide(ctx, id, false, "carol"); err == nil {
		t.Fatal("a decided request was decided again")
	}
	o, _ = s.Check(ctx, b, tmpl, time.Minute)
	if !o.Granted || o.Request.ID != id || o.Request.By != "bob" {
		t.Fatalf("approved call: %+v", o)
	}
	o, _ = s.Check(ctx, b, tmpl, time.Minute)
	if o.Granted || !o.Created || o.Request.ID == id {
		t.Fatalf("second retry ran without a new approval: %+v", o)
	}
	// Denied.
	id2 := o.Request.ID
	if _, err := s.Decide(ctx, id2, false, "bob"); err != nil {
		t.Fatal(err)
	}
	o, _ = s.Check(ctx, b, tmpl, time.Minute)
	if !o.Denied || o.Granted || o.Request.By != "bob" {
		t.Fatalf("denied call: %+v", o)
	}
	// Expired: an approval past its ttl does not run the call.
	o, _ = s.Check(ctx, b, tmpl, time.Minute)
	if _, err := s.Decide(ctx, o.Request.ID, true, "bob"); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(2 * time.Minute)
	if o2, _ := s.Check(ctx, b, tmpl, time.Minute); o2.Granted || !o2.Created {
		t.Fatalf("expired approval ran the call: %+v", o2)
	}
	if _, err := s.Decide(ctx, o.Request.ID, true, "bob"); err != ErrNotFound {
		t.Fatalf("deciding an expired request: %v", err)
	}
}

func TestMayDecide(t *testing.T) {
	r := Request{Issuer: "iss", Subject: "alice", Approvers: []string{"role:admin", "user:carol@example.com"}}
	tests := []struct {
		name string
		a    Approver
		req  Request
		want bool
	}{
		{"admin", Approver{Issuer: "iss", Subject: "bob", Roles: []string{"admin"}}, r, true},
		{"user by email", Approver{Issuer: "iss", Subject: "c1", Email: "Carol@example.com"}, r, true},
		{"not listed", Approver{Issuer: "iss", Subject: "dave", Roles: []string{"support"}}, r, false},
		{"own agent, admin, self not listed", Approver{Issuer: "iss", Subject: "alice", Roles: []string{"admin"}}, r, false},
		{"self listed", Approver{Issuer: "iss", Subject: "alice"}, Request{Issuer: "iss", Subject: "alice", Approvers: []string{"self"}}, true},
		{"self from another issuer", Approver{Issuer: "other", Subject: "alice"}, Request{Issuer: "iss", Subject: "alice", Approvers: []string{"self"}}, false},
		{"anonymous", Approver{}, r, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.req.MayDecide(tt.a); got != tt.want {
				t.Errorf("MayDecide = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	s, now := newService(t)
	tmpl := Request{Tool: "t", Approvers: []string{"self"}}
	a, _ := s.Check(ctx, Binding{Digest: "a", Subject: "alice"}, tmpl, time.Minute)
	b, _ := s.Check(ctx, Binding{Digest: "b", Subject: "alice"}, tmpl, 3*time.Minute)
	open, err := s.Open(ctx)
	if err != nil || len(open) != 2 || open[0].ID != a.Request.ID || open[1].ID != b.Request.ID {
		t.Fatalf("Open = %+v, %v", open, err)
	}
	*now = now.Add(2 * time.Minute)
	if open, _ = s.Open(ctx); len(open) != 1 || open[0].ID != b.Request.ID {
		t.Fatalf("Open after expiry = %+v", open)
	}
}

func TestWebhookSignedAndNeverBlocks(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	got := make(chan map[string]any, 1)
	fails := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get(SignatureHeader) != Sign([]byte(secret), body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if len(fails) < 1 { // the first delivery fails: retried
			fails <- struct{}{}
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		got <- m
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWebhook(ctx, srv.URL, secret, nil, slog.New(slog.DiscardHandler))
	w.backoff = time.Millisecond
	r := Request{ID: "req1", Tool: "issue_refund", Subject: "alice", Email: "alice@acme.example", Agent: "copilot", Reason: "refunds over 100", Approvers: []string{"role:admin"}, Expires: time.Now().Add(time.Minute)}
	w.Notify(r, "https://gw.example/approvals/req1")
	m := <-got
	if m["id"] != "req1" || m["url"] != "https://gw.example/approvals/req1" || !strings.Contains(m["text"].(string), "https://gw.example/approvals/req1") {
		t.Fatalf("webhook body %v", m)
	}
	if Sign([]byte(secret), []byte("x")) == Sign([]byte("other-secret-0123456"), []byte("x")) {
		t.Fatal("signature does not depend on the secret")
	}
}

func TestWebhookDownDoesNotBlock(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWebhook(ctx, srv.URL, "", nil, slog.New(slog.DiscardHandler))
	// The sender is stuck on the first POST; the queue fills; further
	// notifications are dropped, and Notify returns every time.
	for i := range WebhookQueue + 50 {
		w.Notify(Request{ID: fmt.Sprint(i)}, "u")
	}
	if n := len(w.queue); n > WebhookQueue {
		t.Fatalf("queue holds %d, bound %d", n, WebhookQueue)
	}
}

// TestRequestState: the requestState verifies only for the request and the
// binding (human, agent, environment, arguments) it was issued for.
func TestRequestState(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	b := Binding{Digest: "d1", Issuer: "iss", Subject: "alice", Agent: "copilot", Environment: "prod"}
	o, err := s.Check(ctx, b, Request{Tool: "issue_refund", Approvers: []string{"role:admin"}, Reason: "r"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st := o.Request.RequestState(b)
	if StateID(st) != o.Request.ID {
		t.Fatalf("StateID(%q) = %q, want %q", st, StateID(st), o.Request.ID)
	}
	stored, ok, err := s.Get(ctx, o.Request.ID)
	if err != nil || !ok || !stored.VerifyState(st, b) {
		t.Fatalf("the stored request does not verify its own state: %v %v", ok, err)
	}
	other := o.Request
	other.StateKey = []byte("another key, another request....")
	for name, tc := range map[string]struct {
		r     Request
		state string
		b     Binding
	}{
		"other digest":  {stored, st, Binding{Digest: "d2", Issuer: "iss", Subject: "alice", Agent: "copilot", Environment: "prod"}},
		"other agent":   {stored, st, Binding{Digest: "d1", Issuer: "iss", Subject: "alice", Agent: "copilot-b", Environment: "prod"}},
		"other human":   {stored, st, Binding{Digest: "d1", Issuer: "iss", Subject: "mallory", Agent: "copilot", Environment: "prod"}},
		"other key":     {other, st, b},
		"forged mac":    {stored, o.Request.ID + ".AAAA", b},
		"no mac":        {stored, o.Request.ID, b},
		"other request": {stored, "zzzz." + strings.SplitN(st, ".", 2)[1], b},
	} {
		if tc.r.VerifyState(tc.state, tc.b) {
			t.Errorf("%s: verified", name)
		}
	}
}

// TestWebhookFailureLogNamesNoURL: a webhook URL is a credential (a Slack
// incoming webhook's path is its secret); a failed delivery is logged with
// its cause, never with the URL.
func TestWebhookFailureLogNamesNoURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the POST fails to connect
	const secretPath = "/services/T0001/B0001/s3cr3tW3bh00kT0k3n"
	var logs bytes.Buffer
	w := &Webhook{url: "http://" + addr + secretPath, client: &http.Client{Timeout: 5 * time.Second},
		log: slog.New(slog.NewTextHandler(&logs, nil)), retries: 0}
	w.send(context.Background(), webhookEvent{ID: "req1"})
	out := logs.String()
	if !strings.Contains(out, "notification dropped") || !strings.Contains(out, "req1") {
		t.Fatalf("failed delivery not logged: %q", out)
	}
	if strings.Contains(out, "s3cr3tW3bh00kT0k3n") {
		t.Fatalf("log names the webhook URL: %q", out)
	}
}
