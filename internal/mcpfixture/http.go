package mcpfixture

import (
	"io"
	"net/http"

	"github.com/mark3labs/mcp-go/server"
)

// NewHTTPHandler serves the fixture over streamable HTTP at /mcp (stateful
// sessions for 2025-11-25, stateless for 2026-07-28) and the test hook
// POST /fixture/description?tool=NAME, whose body becomes the tool's new
// description, and GET /healthz (200) for readiness probes.
func (f *Fixture) NewHTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/mcp", server.NewStreamableHTTPServer(f.Server, server.WithStateful(true)))
	mux.HandleFunc("POST /fixture/description", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := f.SetDescription(r.URL.Query().Get("tool"), string(body)); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
