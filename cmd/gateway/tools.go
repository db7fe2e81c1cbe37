package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/agentharness/harness/internal/config"
	"github.com/agentharness/harness/internal/pins"
	"github.com/agentharness/harness/internal/ratelimit"
	"github.com/agentharness/harness/internal/store"
)

const toolsUsage = `Usage:
  gateway tools pins --config FILE                 list the pinned tool definitions of MCP upstreams and pending changes
  gateway tools approve --config FILE TOOL...|--all   approve the changed definitions of these tools (or all)
`

func cmdTools(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "pins" && args[0] != "approve") {
		fmt.Fprint(stderr, toolsUsage)
		return errUsage
	}
	sub := args[0]
	fs := newFlags("tools "+sub, strings.TrimSpace(strings.SplitN(toolsUsage, "\n", 3)[map[string]int{"pins": 1, "approve": 2}[sub]]), stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML); required")
	all := false
	if sub == "approve" {
		fs.BoolVar(&all, "all", false, "approve every pending change")
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" || (sub == "approve" && !all && fs.NArg() == 0) {
		fmt.Fprint(stderr, toolsUsage)
		return errUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fmt.Errorf("%s: %w", *cfgPath, err)
	}
	if cfg.RateLimit.RedisURL == "" {
		return fmt.Errorf("%s: without ratelimit.redis_url the pins live in the running gateway's memory; set it to list and approve them from here", *cfgPath)
	}
	rdb, err := ratelimit.ParseRedisURL(cfg.RateLimit.RedisURL, 5*time.Second)
	if err != nil {
		return fmt.Errorf("ratelimit.redis_url: %w", err)
	}
	defer rdb.Close()
	p := pins.New(store.NewRedis(rdb, "harness:", 5*time.Second))
	var ups []config.Upstream
	for _, u := range cfg.Upstreams {
		if u.Kind() != "openapi" {
			ups = append(ups, u)
		}
	}
	if sub == "pins" {
		return listPins(ctx, p, ups, stdout)
	}
	return approvePins(ctx, p, ups, fs.Args(), all, stdout)
}

func listPins(ctx context.Context, p *pins.Pins, ups []config.Upstream, stdout io.Writer) error {
	for _, u := range ups {
		m, err := p.Load(ctx, u.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s (pin: %s): %d tool(s) pinned\n", u.Name, u.Pin, len(m))
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			e := m[n]
			fmt.Fprintf(stdout, "  %s  sha256:%s  pinned %s\n", u.ToolPrefix()+n, short(e.Digest), e.PinnedAt.UTC().Format(time.RFC3339))
			if e.Pending != nil {
				fmt.Fprintf(stdout, "    CHANGED  sha256:%s  seen %s  description: %q\n", short(e.Pending.Digest),
					e.Pending.SeenAt.UTC().Format(time.RFC3339), e.Pending.Description)
			}
		}
	}
	return nil
}

func approvePins(ctx context.Context, p *pins.Pins, ups []config.Upstream, names []string, all bool, stdout io.Writer) error {
	found := map[string]bool{}
	total := 0
	for _, u := range ups {
		var ops []string
		if !all {
			m, err := p.Load(ctx, u.Name)
			if err != nil {
				return err
			}
			for _, n := range names {
				if op, ok := strings.CutPrefix(n, u.ToolPrefix()); ok && m[op] != nil {
					ops = append(ops, op)
					found[n] = true
				}
			}
			if len(ops) == 0 {
				continue
			}
		}
		done, err := p.Approve(ctx, u.Name, ops, time.Now())
		if err != nil {
			return err
		}
		for _, op := range done {
			fmt.Fprintf(stdout, "approved %s\n", u.ToolPrefix()+op)
			total++
		}
	}
	for _, n := range names {
		if !found[n] {
			return fmt.Errorf("no pinned tool %s", n)
		}
	}
	if total == 0 {
		fmt.Fprintln(stdout, "nothing to approve: no pending change")
	}
	return nil
}

func short(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}
