package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentharness/harness/internal/app"
	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/config"
)

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", l.format)
	}
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve --config FILE [flags]", stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); required")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "how long in-flight calls may finish after SIGTERM")
	acceptOrigin := fs.Bool("accept-new-audit-origin", false, "let an audit log with records start a checkpoint history when no witness holds one for its origin")
	var lf logFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "gateway serve: --config FILE is required")
		fs.Usage()
		return errUsage
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	return serve(ctx, cfg, log, *grace, nil, nil, app.Options{AcceptNewAuditOrigin: *acceptOrigin})
}

// serve runs a gateway for cfg until ctx ends, on ln (nil: listen on
// cfg.Listen). ready, if set, is called once requests are accepted.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, grace time.Duration, ln net.Listener, ready func(), opts app.Options) error {
	start := time.Now()
	log.Info("starting Harness", "version", version, "environment", cfg.Environment, "public_url", cfg.PublicURL)
	// Bind first: a gateway that cannot have its port must not touch the
	// audit file (Build opens it, locks it and appends a start record).
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
	}
	gw, err := app.BuildWith(ctx, cfg, log, version, opts)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer gw.Close(context.Background())

	for _, is := range cfg.Auth.Issuers {
		log.Info("trusting identity provider", "issuer", is.Issuer, "audiences", strings.Join(is.Audiences, ","), "roles_claim", is.RolesClaim)
	}

	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Server.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.Server.MetricsListen)
		if err != nil {
			return fmt.Errorf("listen on %s (server.metrics_listen): %w", cfg.Server.MetricsListen, err)
		}
		go func() {
			if err := gw.Server.ServeMetrics(bg, mln); err != nil {
				log.Error("metrics listener stopped", "err", err)
			}
		}()
		log.Info("metrics served only on server.metrics_listen", "metrics", "http://"+mln.Addr().String()+"/metrics")
	}
	if cfg.Policy.Dir != "" {
		go func() {
			if err := gw.Policy.Watch(bg); err != nil && bg.Err() == nil {
				log.Error("policy watcher stopped", "err", err)
			}
		}()
	}
	if addr := os.Getenv(pprofEnv); addr != "" {
		pln, err := pprofListen(addr)
		if err != nil {
			return err
		}
		go servePprof(bg, pln, log)
	}
	go reloadOnSIGHUP(bg, gw, log)
	// Keep the public key in the shared store even if it loses its data.
	go gw.Keys.Maintain(bg, 5*time.Second)
	go refreshLoop(bg, gw, log)

	log.Info("ready", "mcp", cfg.ResourceURL(), "listen", ln.Addr().String(), "startup", time.Since(start).Round(time.Millisecond))
	if ready != nil {
		ready()
	}
	err = gw.Server.Serve(ctx, ln, grace)
	log.Info("stopped")
	return err
}

// reloadOnSIGHUP reloads the policy and refreshes the tool catalogue.
func reloadOnSIGHUP(ctx context.Context, gw *app.App, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading policy and tools")
			gw.Security.Event(ctx, &audit.Record{Event: audit.EventConfigReload, Reason: "SIGHUP: reloading policy and tools"})
			if err := gw.Policy.Reload(ctx); err != nil {
				log.Error("policy reload failed; the last good policy stays", "err", err)
			}
			if err := gw.Server.RefreshTools(ctx); err != nil {
				log.Error("tool refresh incomplete", "err", err)
			}
		}
	}
}

// refreshLoop retries broken upstream documents until they load, then
// refreshes every catalogRefresh.
func refreshLoop(ctx context.Context, gw *app.App, log *slog.Logger) {
	const catalogRefresh = 5 * time.Minute
	retry := 5 * time.Second
	for {
		wait := catalogRefresh
		if gw.Server.ToolsBroken() {
			wait = retry
			if retry < time.Minute {
				retry *= 2
			}
		} else {
			retry = 5 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := gw.Server.RefreshTools(ctx); err != nil {
			log.Warn("tool refresh incomplete", "err", err)
		}
	}
}
