package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPprofListenLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"localhost:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"[::]:0", false},
		{"192.0.2.1:6060", false},
		{"example.com:6060", false},
		{"127.0.0.1", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			ln, err := pprofListen(tc.addr)
			if err == nil {
				ln.Close()
			}
			if tc.ok && err != nil {
				t.Fatalf("pprofListen(%q): %v", tc.addr, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("pprofListen(%q) accepted a non-loopback address", tc.addr)
			}
		})
	}
}

func TestPprofHandlerServesIndex(t *testing.T) {
	srv := httptest.NewServer(pprofHandler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "goroutine") {
		t.Fatalf("/debug/pprof/: %d %.200s", resp.StatusCode, b)
	}
	resp2, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the pprof listener: %d, want 404", resp2.StatusCode)
	}
}
