package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"
)

// fakeCollector is an OTLP/HTTP logs endpoint that keeps what it receives.
type fakeCollector struct {
	mu   sync.Mutex
	recs []*logspb.LogRecord
}

func (c *fakeCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	var req collogspb.ExportLogsServiceRequest
	if r.URL.Path != "/v1/logs" || proto.Unmarshal(b, &req) != nil {
		http.Error(w, "bad request", 400)
		return
	}
	c.mu.Lock()
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			c.recs = append(c.recs, sl.LogRecords...)
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
	_, _ = w.Write(out)
}

func attrsOf(r *logspb.LogRecord) map[string]string {
	m := map[string]string{}
	for _, kv := range r.Attributes {
		m[kv.Key] = kv.Value.GetStringValue()
	}
	return m
}

func TestExportSendsEveryRecord(t *testing.T) {
	col := &fakeCollector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	exp, err := NewExporter(ctx, ExportConfig{Endpoint: srv.URL, ServiceName: "harness", Environment: "test"})
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, Config{Path: filepath.Join(t.TempDir(), "audit.log"), Fsync: FsyncNever})
	el := &ExportingLog{Log: l, Exporter: exp}
	var written []*Record
	for i := range 5 {
		r := mixedRecord(i)
		r.Email, r.Name = "alice@acme.example", "Alice Smith"
		if err := el.Write(ctx, r); err != nil {
			t.Fatal(err)
		}
		written = append(written, r)
	}
	if err := exp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.recs) != len(written) {
		t.Fatalf("collector got %d log records, want %d", len(col.recs), len(written))
	}
	for i, lr := range col.recs {
		a, w := attrsOf(lr), written[i]
		if a["id"] != w.ID || a["hash"] != w.Hash || a["subject"] != "alice" || a["email"] != "alice@acme.example" || a["name"] != "Alice Smith" || a["agent"] != "copilot" ||
			a["tool"] != w.Tool || a["decision"] != w.Decision {
			t.Errorf("record %d attributes %v, want those of %+v", i, a, w)
		}
		if !bytes.Contains([]byte(lr.Body.GetStringValue()), []byte(w.Tool)) {
			t.Errorf("body %q", lr.Body.GetStringValue())
		}
	}
	if exp.Dropped() != 0 || exp.Ready(ctx) != nil {
		t.Errorf("dropped %d, ready %v", exp.Dropped(), exp.Ready(ctx))
	}
}

// TestExportNeverBlocksACall: with the collector a black hole (it accepts
// connections and never answers), every write still succeeds; what cannot
// be queued is counted and reported by Ready.
func TestExportNeverBlocksACall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // never read, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	ctx := context.Background()
	exp, err := NewExporter(ctx, ExportConfig{Endpoint: "http://" + ln.Addr().String(), Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, Config{Path: filepath.Join(t.TempDir(), "audit.log"), Fsync: FsyncNever})
	el := &ExportingLog{Log: l, Exporter: exp}
	const n = 2000
	for i := range n {
		if err := el.Write(ctx, mixedRecord(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	_ = l.Close()
	if exp.Dropped() == 0 {
		t.Fatal("nothing counted as dropped with a 4-record queue and a dead collector")
	}
	if err := exp.Ready(ctx); err == nil {
		t.Fatal("Ready does not report the drops")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel() // do not wait for the black hole
	_ = exp.Close(cctx)
}
