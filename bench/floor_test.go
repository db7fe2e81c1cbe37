package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFloorAnswersToolsCall drives the floor translator with the bench's
// own mcp-go client, in both eras: a tools/call returns the upstream's
// record, unredacted, as text content.
func TestFloorAnswersToolsCall(t *testing.T) {
	up, err := startUpstream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.close)
	srv := httptest.NewServer(floorHandler(up.url, http.DefaultClient))
	t.Cleanup(srv.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	for _, er := range eras {
		t.Run(er.name, func(t *testing.T) {
			clients, err := connectClients(srv.URL, "unused", er, 1, tr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(clients.close)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// redacted=false: the floor must return the card number as is.
			if err := gatewayCaller(clients, false)(ctx, 0, 3); err != nil {
				t.Fatal(err)
			}
			if got := clients.cs[0].GetServerCapabilities(); got.Tools == nil {
				t.Errorf("server capabilities %+v: no tools", got)
			}
		})
	}
	if n := up.calls.Load(); n != int64(len(eras)) {
		t.Errorf("upstream calls = %d, want %d", n, len(eras))
	}
}

func TestFloorRejectsUnknownMethod(t *testing.T) {
	srv := httptest.NewServer(floorHandler("http://127.0.0.1:1", http.DefaultClient))
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	if !strings.Contains(b.String(), `"code":-32601`) {
		t.Errorf("unknown method answered %q, want error -32601", b.String())
	}
}
