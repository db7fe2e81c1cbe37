package tools

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestInvoke(t *testing.T) {
	crm := loadTools(t, "fastapi-crm.openapi.json", "crm")
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/customers/c-1":
			w.Header().Set("Content-Type", "application/json")
			body, _ := io.ReadAll(r.Body)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"method": r.Method, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery,
				"authorization": r.Header.Get("Authorization"), "traceparent": r.Header.Get("Traceparent"), "body": string(body),
			})
		case r.URL.Path == "/customers/missing":
			http.Error(w, `{"detail":"customer not found"}`, http.StatusNotFound)
		case r.URL.Path == "/customers/boom":
			http.Error(w, "internal", http.StatusInternalServerError)
		case r.URL.Path == "/customers/big":
			_, _ = w.Write([]byte(strings.Repeat("x", 11)))
		case r.URL.Path == "/customers/exact":
			_, _ = w.Write([]byte(strings.Repeat("x", 10)))
		case r.URL.Path == "/customers/slow":
			<-r.Context().Done()
		case r.URL.Path == "/customers/redirect":
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	up := &Upstream{Name: "crm", BaseURL: srv.URL}
	hdr := http.Header{"Authorization": {"Bearer assertion"}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}

	t.Run("2xx json", func(t *testing.T) {
		resp, err := Invoke(context.Background(), srv.Client(), up, crm["crm_get_customer"], map[string]any{"customer_id": "c-1"}, hdr)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.OK() || resp.Status != 200 || resp.ContentType != "application/json" {
			t.Fatalf("response %d %q", resp.Status, resp.ContentType)
		}
		var got map[string]string
		if err := json.Unmarshal(resp.Body, &got); err != nil {
			t.Fatal(err)
		}
		if got["authorization"] != "Bearer assertion" || got["traceparent"] == "" || got["method"] != "GET" || got["path"] != "/customers/c-1" {
			t.Errorf("upstream saw %v", got)
		}
	})
	for _, tc := range []struct {
		name string
		id   string
		want int
	}{{"4xx is a response", "missing", 404}, {"5xx is a response", "boom", 500}, {"redirect not followed", "redirect", 302}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := Invoke(context.Background(), srv.Client(), up, crm["crm_get_customer"], map[string]any{"customer_id": tc.id}, nil)
			if err != nil {
				t.Fatalf("a status is not an error: %v", err)
			}
			if resp.Status != tc.want || resp.OK() {
				t.Errorf("status %d, want %d", resp.Status, tc.want)
			}
		})
	}
	if elsewhere.Load() != 0 {
		t.Error("a redirect reached another host")
	}
	t.Run("body at the cap", func(t *testing.T) {
		small := &Upstream{Name: "crm", BaseURL: srv.URL, MaxResponseBytes: 10}
		resp, err := Invoke(context.Background(), srv.Client(), small, crm["crm_get_customer"], map[string]any{"customer_id": "exact"}, nil)
		if err != nil || len(resp.Body) != 10 {
			t.Fatalf("10-byte body with a 10-byte cap: %v", err)
		}
	})
	t.Run("body over the cap", func(t *testing.T) {
		small := &Upstream{Name: "crm", BaseURL: srv.URL, MaxResponseBytes: 10}
		resp, err := Invoke(context.Background(), srv.Client(), small, crm["crm_get_customer"], map[string]any{"customer_id": "big"}, nil)
		if !errors.Is(err, ErrTooLarge) || resp != nil {
			t.Fatalf("want ErrTooLarge and no response, got %v", err)
		}
		if !strings.Contains(err.Error(), `upstream "crm"`) {
			t.Errorf("error does not name the upstream: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		quick := &Upstream{Name: "crm", BaseURL: srv.URL, Timeout: 20 * time.Millisecond}
		_, err := Invoke(context.Background(), srv.Client(), quick, crm["crm_get_customer"], map[string]any{"customer_id": "slow"}, nil)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `upstream "crm"`) || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("want a timeout naming the upstream, got %v", err)
		}
	})
	t.Run("argument error before any request", func(t *testing.T) {
		_, err := Invoke(context.Background(), srv.Client(), up, crm["crm_get_customer"], map[string]any{}, nil)
		if !errors.Is(err, ErrInvalidArguments) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("upstream down", func(t *testing.T) {
		down := httptest.NewServer(http.NotFoundHandler())
		downURL := down.URL
		down.Close()
		_, err := Invoke(context.Background(), nil, &Upstream{Name: "crm", BaseURL: downURL}, crm["crm_get_customer"], map[string]any{"customer_id": "c-1"}, nil)
		if err == nil || !strings.Contains(err.Error(), `upstream "crm"`) {
			t.Fatalf("want a transport error naming the upstream, got %v", err)
		}
	})
}

func TestLoadDocument(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("testdata", "fastapi-crm.openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/openapi.json":
			_, _ = w.Write(doc)
		case "/huge":
			chunk := make([]byte, 1<<20)
			for range MaxDocumentBytes/len(chunk) + 1 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			http.Error(w, "nope", http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	abs, _ := filepath.Abs(filepath.Join("testdata", "fastapi-crm.openapi.json"))
	cases := []struct {
		name, loc, wantErr string
	}{
		{"http", srv.URL + "/openapi.json", ""},
		{"file", filepath.Join("testdata", "fastapi-crm.openapi.json"), ""},
		{"file url", "file://" + abs, ""},
		{"404", srv.URL + "/missing", "status 404"},
		{"too large", srv.URL + "/huge", "body too large"},
		{"missing file", filepath.Join("testdata", "nope.json"), "no such file"},
		{"other scheme", "ftp://example.com/openapi.json", "only http, https and file"},
		{"empty", "", "no location"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := LoadDocument(context.Background(), srv.Client(), tc.loc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(b) != string(doc) {
				t.Fatalf("got %d bytes, %v", len(b), err)
			}
		})
	}
}

// TestInvokeErrorsCarryNoArgumentValues: a transport failure names the
// upstream, the method and the path template, never the values the agent
// sent (they may be personal data, and errors reach logs).
func TestInvokeErrorsCarryNoArgumentValues(t *testing.T) {
	tools, err := Convert("crm", []byte(`{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{
 "/customers/{id}":{"get":{"operationId":"get","parameters":[
  {"name":"id","in":"path","required":true,"schema":{"type":"string"}},
  {"name":"q","in":"query","schema":{"type":"string"}}],"responses":{"200":{"description":"ok"}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	up := &Upstream{Name: "crm", BaseURL: "http://127.0.0.1:1"} // nothing listens
	_, err = Invoke(context.Background(), nil, up, tools[0], map[string]any{"id": "078-05-1120", "q": "secret-query-value"}, nil)
	if err == nil {
		t.Fatal("a call to a closed port succeeded")
	}
	for _, v := range []string{"078-05-1120", "secret-query-value"} {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error %q carries the argument value %q", err, v)
		}
	}
	if !strings.Contains(err.Error(), "/customers/{id}") {
		t.Errorf("error %q does not name the path template", err)
	}
}

// BenchmarkInvoke is one upstream call as the gateway makes it (a 1 KiB
// JSON record with its Content-Length, headers from the caller), for
// -benchmem allocation counts of the client side of tools.Invoke.
func BenchmarkInvoke(b *testing.B) {
	crm := loadTools(b, "fastapi-crm.openapi.json", "crm")
	rec := []byte(`{"customer_id":"c-1","notes":"` + strings.Repeat("n", 990) + `"}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(rec)))
		_, _ = w.Write(rec)
	}))
	b.Cleanup(srv.Close)
	up := &Upstream{Name: "crm", BaseURL: srv.URL}
	hdr := http.Header{"Authorization": {"Bearer assertion"}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	args := map[string]any{"customer_id": "c-1"}
	client := srv.Client()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := Invoke(ctx, client, up, crm["crm_get_customer"], args, hdr)
		if err != nil || len(resp.Body) != len(rec) {
			b.Fatal(err)
		}
	}
}

// TestReadCappedSized: a declared length only sizes the buffer; the cap
// applies to the bytes actually read, whatever the body declared.
func TestReadCappedSized(t *testing.T) {
	const limit = 64
	for _, size := range []int{0, 1, 63, 64, 65, 200, 5000} {
		body := strings.Repeat("b", size)
		for _, hint := range []int64{-1, 0, 1, int64(size) - 1, int64(size), int64(size) + 1, limit, limit + 1, 1 << 40} {
			got, err := readCappedSized(strings.NewReader(body), limit, hint)
			if size > limit {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("size %d hint %d: err %v, want ErrTooLarge", size, hint, err)
				}
				continue
			}
			if err != nil || string(got) != body {
				t.Fatalf("size %d hint %d: got %d bytes, err %v", size, hint, len(got), err)
			}
		}
	}
	// A read error is returned, not a short body.
	boom := errors.New("boom")
	if _, err := readCappedSized(io.MultiReader(strings.NewReader("abc"), iotestErrReader{boom}), limit, 3); !errors.Is(err, boom) {
		t.Fatalf("err %v, want %v", err, boom)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }
