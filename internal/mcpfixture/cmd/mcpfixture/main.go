// Command mcpfixture runs the test MCP server of package mcpfixture over
// streamable HTTP (--listen, at /mcp) or stdio (--stdio). For tests only.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/agentharness/harness/internal/mcpfixture"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mcpfixture:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve streamable HTTP on (path /mcp); the bound address is printed to stdout")
	stdio := flag.Bool("stdio", false, "serve over stdin/stdout instead of HTTP")
	descFile := flag.String("description-file", "", `JSON file {"tool": "description"} applied at start and whenever it changes`)
	crash := flag.Bool("crash-tool", false, "add the tool fixture_crash, which exits the process with status 3")
	flag.Parse()

	var opts []mcpfixture.Option
	if *crash {
		opts = append(opts, mcpfixture.WithCrashTool(func() { os.Exit(3) }))
	}
	f := mcpfixture.New(opts...)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *descFile != "" {
		if err := applyDescriptions(f, *descFile, nil); err != nil {
			return err
		}
		go watchDescriptions(ctx, f, *descFile, log)
	}

	if *stdio {
		return server.ServeStdio(f.Server)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s/mcp\n", ln.Addr())
	srv := &http.Server{Handler: f.NewHTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// applyDescriptions reads the description file and applies it when its
// content differs from last; it returns the content read.
func applyDescriptions(f *mcpfixture.Fixture, path string, last []byte) error {
	b, err := os.ReadFile(path)
	if err != nil || bytes.Equal(b, last) {
		return err
	}
	var descs map[string]string
	if err := json.Unmarshal(b, &descs); err != nil {
		return fmt.Errorf("description file %s: %w", path, err)
	}
	return f.SetDescriptions(descs)
}

// watchDescriptions re-reads the description file every 100ms.
func watchDescriptions(ctx context.Context, f *mcpfixture.Fixture, path string, log *slog.Logger) {
	last, _ := os.ReadFile(path)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := os.ReadFile(path)
		if err != nil || bytes.Equal(b, last) {
			continue
		}
		if err := applyDescriptions(f, path, last); err != nil {
			log.Warn("description file", "err", err)
		}
		last = b
	}
}
