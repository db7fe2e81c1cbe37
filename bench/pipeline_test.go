package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/app"
	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/redistest"
)

// inProcess is the gateway wired in this process by internal/app, exactly
// as the binary wires it, in front of the bench upstream. It exists so
// that the whole pipeline can be profiled with go test -cpuprofile.
type inProcess struct {
	url     string
	support string // a support user's token (tenant acme)
}

type wireOpts struct {
	redis bool // the Redis limiter and store (else memory)
	otlp  bool // tracing exported to a discarding OTLP sink (else never sampled)
}

func wireInProcess(tb testing.TB, o wireOpts) *inProcess {
	tb.Helper()
	ctx := context.Background()
	up, err := startUpstream()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(up.close)
	iss, err := startIssuer()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = iss.Close() })
	otlp := ""
	if o.otlp {
		sink, err := startOTLPSink()
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(sink.close)
		otlp = sink.url
	}
	redisURL := ""
	if o.redis {
		redisURL = redistest.StartServer(tb).URL()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	listen := ln.Addr().String()
	dir := tb.TempDir()
	gc := gwConfig{redisURL: redisURL, otlp: otlp}
	cfg, err := config.Parse([]byte(gc.yaml(listen, iss.URL(), up.url, dir)), func(string) (string, bool) { return "", false })
	if err != nil {
		tb.Fatal(err)
	}
	gw, err := app.Build(ctx, cfg, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gw.Close(context.Background()) })
	hs := &http.Server{Handler: gw.Server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	tb.Cleanup(func() { _ = hs.Close() })

	g := &inProcess{url: "http://" + listen}
	g.support, err = iss.Mint(map[string]any{"sub": "alice", "aud": g.url + "/mcp", "azp": "bench-agent", "roles": []string{"support"}, "tenant": "acme"}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// BenchmarkPipeline is one MCP tools/call through the whole in-process
// gateway (client and server in this process; the upstream too), with the
// full pipeline as `go run ./bench` configures it. Serial runs one caller;
// Parallel runs GOMAXPROCS×4 callers, one MCP client each. no-export is
// the memory limiter with no OTLP endpoint: nothing is sampled, so no span
// work at all.
func BenchmarkPipeline(b *testing.B) {
	for _, w := range []struct {
		name string
		o    wireOpts
	}{{"full", wireOpts{redis: true, otlp: true}}, {"memory-limiter", wireOpts{otlp: true}}, {"no-export", wireOpts{}}} {
		b.Run(w.name, func(b *testing.B) {
			g := wireInProcess(b, w.o)
			for _, er := range eras {
				b.Run(er.name+"/serial", func(b *testing.B) {
					benchCalls(b, g, er, 1)
				})
				b.Run(er.name+"/parallel", func(b *testing.B) {
					benchCalls(b, g, er, 4)
				})
			}
		})
	}
}

func benchCalls(b *testing.B, g *inProcess, er era, par int) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	defer tr.CloseIdleConnections()
	n := 1
	if par > 1 {
		n = par * runtime.GOMAXPROCS(0)
	}
	clients, err := connectClients(g.url, g.support, er, n, tr)
	if err != nil {
		b.Fatal(err)
	}
	defer clients.close()
	call := gatewayCaller(clients, true)
	// Warm the token cache, the visibility cache and the connections.
	for w := 0; w < n; w++ {
		if err := call(context.Background(), w, w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if par == 1 {
		for i := 0; b.Loop(); i++ {
			if err := call(context.Background(), 0, i); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	var next atomic.Int64
	b.SetParallelism(par)
	b.RunParallel(func(pb *testing.PB) {
		w := int(next.Add(1)-1) % n
		for i := 0; pb.Next(); i++ {
			if err := call(context.Background(), w, i); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestPipelineInProcess checks the in-process wiring the benchmark uses: a
// call in each era through the full pipeline returns the record with the
// card number masked, and a wrong token is refused.
func TestPipelineInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	g := wireInProcess(t, wireOpts{redis: true, otlp: true})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	for _, er := range eras {
		clients, err := connectClients(g.url, g.support, er, 1, tr)
		if err != nil {
			t.Fatal(err)
		}
		call := gatewayCaller(clients, true)
		for i := 0; i < 3; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := call(ctx, 0, i)
			cancel()
			if err != nil {
				t.Fatalf("%s call %d: %v", er.name, i, err)
			}
		}
		clients.close()
	}
	if _, err := connectClients(g.url, g.support+"x", eras[0], 1, tr); err == nil {
		t.Fatal("a token with a broken signature was accepted")
	}
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
}
