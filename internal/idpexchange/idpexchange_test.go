package idpexchange

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const subjectTok = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"

// idp is an httptest token endpoint; handle answers each checked request.
func idp(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		handle(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func newEx(t *testing.T, url string, mod func(*Config)) *Exchanger {
	t.Helper()
	cfg := Config{TokenURL: url, ClientID: "harness gw", ClientSecret: "s3cr:et", Audience: "hr-api", Scope: "hr.read hr.write"}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExchangeSuccess(t *testing.T) {
	var bad atomic.Value
	srv, n := idp(t, func(w http.ResponseWriter, r *http.Request) {
		id, sec, ok := r.BasicAuth()
		_ = r.ParseForm()
		f := r.PostForm
		switch {
		case r.Method != http.MethodPost, r.Header.Get("Content-Type") != "application/x-www-form-urlencoded":
			bad.Store("method or content type")
		case !ok || id != "harness+gw" || sec != "s3cr%3Aet": // RFC 6749 2.3.1 form-encoding
			bad.Store(fmt.Sprintf("basic auth %q %q", id, sec))
		case f.Get("grant_type") != GrantType, f.Get("subject_token") != subjectTok,
			f.Get("subject_token_type") != AccessTokenType, f.Get("requested_token_type") != AccessTokenType,
			f.Get("audience") != "hr-api", f.Get("scope") != "hr.read hr.write",
			f.Get("client_secret") != "":
			bad.Store("form " + f.Encode())
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"idp-token-1","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":300}`)
	})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := newEx(t, srv.URL, func(c *Config) { c.Now = func() time.Time { return now } })
	tok, exp, err := e.Exchange(context.Background(), subjectTok, "hr")
	if err != nil {
		t.Fatal(err)
	}
	if v := bad.Load(); v != nil {
		t.Fatalf("request to the IdP: %v", v)
	}
	if tok != "idp-token-1" || !exp.Equal(now.Add(300*time.Second)) {
		t.Errorf("got %q %v", tok, exp)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests", n.Load())
	}
}

func TestExchangeCaching(t *testing.T) {
	var seq atomic.Int64
	srv, n := idp(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":120}`, seq.Add(1))
	})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &now
	e := newEx(t, srv.URL, func(c *Config) { c.Now = func() time.Time { return *clock } })
	ctx := context.Background()
	get := func(subject, upstream string) string {
		t.Helper()
		tok, _, err := e.Exchange(ctx, subject, upstream)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a := get(subjectTok, "hr")
	if b := get(subjectTok, "hr"); b != a || n.Load() != 1 {
		t.Errorf("second call: %q (first %q), %d requests: want the cached token", b, a, n.Load())
	}
	if c := get(subjectTok+"x", "hr"); c == a {
		t.Error("another subject token got the same IdP token")
	}
	if d := get(subjectTok, "payroll"); d == a {
		t.Error("another upstream got the same IdP token")
	}
	before := n.Load()
	now = now.Add(100 * time.Second) // 20 s left: inside the renewal margin
	if e2 := get(subjectTok, "hr"); e2 == a || n.Load() != before+1 {
		t.Errorf("near expiry: %q, %d requests: want a fresh exchange", e2, n.Load()-before)
	}
}

func TestExchangeErrorBody(t *testing.T) {
	srv, _ := idp(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"subject token expired"}`)
	})
	_, _, err := newEx(t, srv.URL, nil).Exchange(context.Background(), subjectTok, "hr")
	if !errors.Is(err, ErrExchange) || !strings.Contains(err.Error(), "400 invalid_grant: subject token expired") {
		t.Fatalf("err = %v", err)
	}

	// A description echoing the subject token or the secret is withheld.
	for _, echo := range []string{subjectTok, "s3cr:et", "eyJraWQiOiJ4In0.eyJzdWIiOiJib2IifQ.sig"} {
		srv, _ := idp(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad: %s"}`, echo)
		})
		_, _, err := newEx(t, srv.URL, nil).Exchange(context.Background(), subjectTok, "hr")
		if err == nil || strings.Contains(err.Error(), echo) || !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("err = %v", err)
		}
	}

	// Not JSON, or 200 without a token: a clear error, nothing echoed.
	for _, body := range []string{"<html>" + subjectTok, `{"token_type":"Bearer"}`, `{"access_token":"x","token_type":"mac"}`, `{"access_token":"x","expires_in":-3}`} {
		srv, _ := idp(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })
		_, _, err := newEx(t, srv.URL, nil).Exchange(context.Background(), subjectTok, "hr")
		if !errors.Is(err, ErrExchange) || strings.Contains(err.Error(), subjectTok) {
			t.Errorf("%s: err = %v", body, err)
		}
	}
}

func TestExchangeTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, _ := idp(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	e := newEx(t, srv.URL, func(c *Config) { c.Timeout = 50 * time.Millisecond })
	done := make(chan error, 1)
	go func() {
		_, _, err := e.Exchange(context.Background(), subjectTok, "hr")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrExchange) || !strings.Contains(err.Error(), "timed out") {
			t.Errorf("err = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the exchange did not give up")
	}
}

func TestExchangeOversize(t *testing.T) {
	srv, _ := idp(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer"}`, strings.Repeat("a", MaxResponse))
	})
	_, _, err := newEx(t, srv.URL, nil).Exchange(context.Background(), subjectTok, "hr")
	if !errors.Is(err, ErrExchange) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestExchangeUnreachableAndNoSubject(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	e := newEx(t, url, nil)
	if _, _, err := e.Exchange(context.Background(), subjectTok, "hr"); !errors.Is(err, ErrExchange) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("err = %v", err)
	}
	if _, _, err := e.Exchange(context.Background(), "", "hr"); !errors.Is(err, ErrExchange) {
		t.Errorf("empty subject: err = %v", err)
	}
	if _, err := New(Config{TokenURL: "ftp://x", ClientID: "a"}); err == nil {
		t.Error("ftp token URL accepted")
	}
	if _, err := New(Config{TokenURL: "https://idp"}); err == nil {
		t.Error("no client id accepted")
	}
}

// TestExchangeNeverFollowsRedirects: the request carries the human's token;
// a token endpoint that redirects must not make the gateway send it on.
func TestExchangeNeverFollowsRedirects(t *testing.T) {
	evil, evilHits := idp(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	srv, _ := idp(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, evil.URL, http.StatusTemporaryRedirect)
	})
	_, _, err := newEx(t, srv.URL, nil).Exchange(context.Background(), subjectTok, "hr")
	if !errors.Is(err, ErrExchange) {
		t.Errorf("err = %v, want ErrExchange", err)
	}
	if evilHits.Load() != 0 {
		t.Error("the redirect target received the exchange request (and the human's token)")
	}
	if _, err := New(Config{TokenURL: "https://user:pw@idp.example.com/token", ClientID: "x"}); err == nil {
		t.Error("a token URL with credentials was accepted")
	}
}
