package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFetchRecordsGuardsToken: the admin token goes only to an https or
// loopback URL, and never along a redirect.
func TestFetchRecordsGuardsToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("admin-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
	}))
	t.Cleanup(elsewhere.Close)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(redirect.Close)

	for _, tc := range []struct{ name, url, want string }{
		{"plain http to another host", "http://harness.example.com", "only over https"},
		{"plain http to a name that looks loopback", "http://127.0.0.1.attacker.example", "only over https"},
		{"not a URL", "ftp://x", "not an http(s) URL"},
		{"credentials in url", "https://u:hunter2@harness.example.com", "not an http(s) URL"},
		{"redirect", redirect.URL, "302"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fetchRecords(context.Background(), replayArgs{url: tc.url, tokenFile: tokenFile, limit: 10}, time.Time{}, time.Time{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("err = %v shows the URL's password", err)
			}
		})
	}
	if leaked.Load() {
		t.Error("the admin token followed a redirect")
	}
}
