package server

import (
	"encoding/json"
	"testing"
)

// FuzzEdgeParsers: the edge's parsers of client bytes never panic and
// always produce valid JSON where they promise it.
func FuzzEdgeParsers(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"2.0","method":"x","params":{"_meta":{"a":1}}}`,
		`{"jsonrpc":"2.0","method":"x","params":null}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"m","data":[1]}}`,
		`{"error":"session not found","request_id":"r"}`,
		"Invalid session ID\n",
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
		`[1,2]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if out, ok := withMetaVersion(b, "2026-07-28"); ok && !json.Valid(out) {
			t.Fatalf("withMetaVersion produced invalid JSON: %q", out)
		}
		if out := rpcErrorBody(400, b, "rid", nil); !json.Valid(out) {
			t.Fatalf("rpcErrorBody produced invalid JSON: %q", out)
		}
		for _, ct := range []string{"text/event-stream", "application/json"} {
			for _, m := range messagesOf(ct, b) {
				if !json.Valid(m) {
					t.Fatalf("messagesOf returned invalid JSON %q", m)
				}
			}
		}
	})
}
