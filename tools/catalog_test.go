package tools

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// docServer serves an OpenAPI document that tests can swap, plus a tiny API.
type docServer struct {
	*httptest.Server
	doc atomic.Pointer[[]byte]
}

func newDocServer(t *testing.T, doc []byte) *docServer {
	t.Helper()
	s := &docServer{}
	s.set(doc)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi.json" {
			d := *s.doc.Load()
			if d == nil {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write(d)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *docServer) set(doc []byte) { s.doc.Store(&doc) }

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCatalog(t *testing.T) {
	crmDoc := readTestdata(t, "fastapi-crm.openapi.json")
	good := newDocServer(t, crmDoc)
	broken := newDocServer(t, []byte(`{"openapi": "3.0.0", "paths": `))
	c := NewCatalog([]Upstream{
		{Name: "crm", BaseURL: good.URL},
		{Name: "shop", BaseURL: broken.URL, OpenAPI: broken.URL + "/openapi.json"},
	}, good.Client(), slog.New(slog.DiscardHandler))

	if st := c.Status(); !errors.Is(st["crm"], ErrNotLoaded) || c.Version() != 0 || len(c.Tools()) != 0 {
		t.Fatalf("before refresh: status %v, version %d", st, c.Version())
	}
	if _, _, ok := c.Lookup("crm_get_customer"); ok {
		t.Fatal("lookup before refresh succeeded")
	}

	err := c.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), `upstream "shop"`) || strings.Contains(err.Error(), `upstream "crm"`) {
		t.Fatalf("refresh error %v, want only shop's failure", err)
	}
	st := c.Status()
	if st["crm"] != nil || st["shop"] == nil {
		t.Fatalf("status %v", st)
	}
	tools := c.Tools()
	if len(tools) != 13 || !slices.IsSortedFunc(tools, func(a, b *Tool) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatalf("got %d tools, sorted=%v", len(tools), slices.IsSortedFunc(tools, func(a, b *Tool) int { return strings.Compare(a.Name, b.Name) }))
	}
	v1 := c.Version()
	if v1 != 1 {
		t.Errorf("version after first load %d, want 1", v1)
	}
	tool, up, ok := c.Lookup("crm_get_customer")
	if !ok || tool.Name != "crm_get_customer" || up.Name != "crm" || up.BaseURL != good.URL || up.Timeout != DefaultTimeout {
		t.Fatalf("lookup: %v %+v %v", tool, up, ok)
	}
	up.BaseURL = "http://evil" // a copy: the catalogue is unaffected
	if _, up2, _ := c.Lookup("crm_get_customer"); up2.BaseURL != good.URL {
		t.Error("lookup hands out the catalogue's own upstream")
	}

	// Same documents again: the version stays.
	_ = c.Refresh(context.Background())
	if c.Version() != v1 {
		t.Errorf("version changed without a change: %d", c.Version())
	}

	// crm breaks: it keeps its last good tools and reports the failure.
	good.set(nil)
	if err := c.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), `upstream "crm"`) {
		t.Fatalf("refresh error %v", err)
	}
	if c.Status()["crm"] == nil || len(c.Tools()) != 13 || c.Version() != v1 {
		t.Errorf("broken crm: status %v, %d tools, version %d", c.Status()["crm"], len(c.Tools()), c.Version())
	}

	// shop heals with a new document: its tools appear, the version moves.
	broken.set(readTestdata(t, "fastapi31.openapi.json"))
	good.set(crmDoc)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if len(c.Tools()) != 13+7 || c.Version() != v1+1 {
		t.Errorf("after heal: %d tools, version %d", len(c.Tools()), c.Version())
	}
	if _, up, ok := c.Lookup("shop_get_product"); !ok || up.Name != "shop" {
		t.Error("shop tool missing")
	}
}

func TestCatalogBadConfig(t *testing.T) {
	c := NewCatalog([]Upstream{
		{Name: "a", BaseURL: "ftp://x"},
		{Name: "b", BaseURL: "http://127.0.0.1:1", OpenAPI: filepath.Join("testdata", "recursive.openapi.yaml")},
		{Name: "b", BaseURL: "http://127.0.0.1:1", OpenAPI: filepath.Join("testdata", "recursive.openapi.yaml")},
		{Name: "", BaseURL: "http://127.0.0.1:1"},
	}, nil, nil)
	err := c.Refresh(context.Background())
	for _, want := range []string{"scheme", "configured twice", "no name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if len(c.Tools()) != 2 {
		t.Errorf("the healthy upstream's tools should load: %d", len(c.Tools()))
	}
}

func TestCatalogRefreshUnderLoad(t *testing.T) {
	crmDoc := readTestdata(t, "fastapi-crm.openapi.json")
	alt := []byte(strings.Replace(string(crmDoc), `"operationId": "get_order"`, `"operationId": "fetch_order"`, 1))
	srv := newDocServer(t, crmDoc)
	c := NewCatalog([]Upstream{{Name: "crm", BaseURL: srv.URL}}, srv.Client(), nil)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var calls atomic.Int64
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				tool, up, ok := c.Lookup("crm_get_customer")
				if !ok {
					t.Error("stable tool vanished during refresh")
					return
				}
				resp, err := Invoke(context.Background(), srv.Client(), up, tool, map[string]any{"customer_id": "c-1"}, nil)
				if err != nil || resp.Status != 200 {
					t.Errorf("invoke during refresh: %v", err)
					return
				}
				_ = c.Tools()
				_ = c.Status()
				_ = c.Version()
				calls.Add(1)
			}
		})
	}
	for i := range 6 {
		if i%2 == 0 {
			srv.set(alt)
		} else {
			srv.set(crmDoc)
		}
		if err := c.Refresh(context.Background()); err != nil {
			t.Error(err)
		}
	}
	for calls.Load() == 0 && !t.Failed() {
		_ = c.Refresh(context.Background())
	}
	cancel()
	wg.Wait()
	if c.Version() != 7 {
		t.Errorf("version %d after 6 changes, want 7", c.Version())
	}
}
