package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/agentharness/harness/internal/config"
)

// pprofEnv names the opt-in profiling listener: unset (the default), no
// profiling endpoint exists. It is for benchmarks and debugging on the
// gateway's own machine, so only a loopback address is accepted.
const pprofEnv = "HARNESS_PPROF_LISTEN"

// pprofListen listens on addr for the profiling endpoint, refusing any
// address that is not loopback (a profile shows code paths and timings, and
// the endpoint has no authentication).
func pprofListen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", pprofEnv, addr, err)
	}
	if !config.IsLoopbackHost(host) {
		return nil, fmt.Errorf("%s=%q: only a loopback address (127.0.0.1, ::1, localhost) is allowed", pprofEnv, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pprofEnv, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%s=%q: resolved to %s, not loopback", pprofEnv, addr, ln.Addr())
	}
	return ln, nil
}

// pprofHandler serves /debug/pprof/ (net/http/pprof) on its own mux.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// servePprof serves the profiling endpoint on ln until ctx ends.
func servePprof(ctx context.Context, ln net.Listener, log *slog.Logger) {
	srv := &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Warn("profiling endpoint enabled (no authentication; loopback only)", "pprof", "http://"+ln.Addr().String()+"/debug/pprof/")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("profiling listener stopped", "err", err)
	}
}
