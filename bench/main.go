// Command bench is the end-to-end load benchmark of the gateway: the real
// binary with the full pipeline on (token verification, the default OPA
// policy, the Redis limiter, redaction with the default detectors, audit to
// a file, tracing exported to a sink that discards it), against a fast Go
// upstream, compared with calling that upstream directly. It writes a
// Markdown report (docs/benchmarks.md with -out).
//
//	go run ./bench                      # about 4 minutes, with a 60 s soak
//	go run ./bench -quick               # about 1 minute
//	go run ./bench -out docs/benchmarks.md
//
// Everything listens on 127.0.0.1; redis-server runs on a free port
// (never 6379) without persistence.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentharness/harness/internal/devissuer"
)

type options struct {
	quick      bool
	out        string
	soak       time.Duration
	rounds     int
	round      time.Duration
	warm       time.Duration
	varRounds  int
	varRound   time.Duration
	gateway    string
	noVariants bool
	profile    time.Duration
}

func main() {
	if u := os.Getenv(floorEnv); u != "" {
		if err := serveFloor(u); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.BoolVar(&o.quick, "quick", false, "a short run (about 1 minute): shorter rounds, a 10 s soak")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report to this file (docs/benchmarks.md)")
	flag.DurationVar(&o.soak, "soak", 0, "soak duration at concurrency 16 (default 60s, 10s with -quick)")
	flag.IntVar(&o.rounds, "rounds", 0, "direct/gateway round pairs per cell of the main matrix (default 3, 1 with -quick)")
	flag.DurationVar(&o.round, "round", 0, "duration of one round (default 2s, 500ms with -quick)")
	flag.StringVar(&o.gateway, "gateway", "", "a prebuilt gateway binary (default: go build ./cmd/gateway)")
	flag.DurationVar(&o.profile, "profile", 0, "duration of the gateway's CPU profile at concurrency 16 (default 10s, 3s with -quick)")
	flag.BoolVar(&o.noVariants, "no-variants", false, "skip the stage switch-off runs")
	flag.Parse()
	if o.quick {
		o.rounds = orInt(o.rounds, 1)
		o.round = orDur(o.round, 500*time.Millisecond)
		o.soak = orDur(o.soak, 10*time.Second)
		o.warm = 300 * time.Millisecond
		o.varRounds, o.varRound = 1, 500*time.Millisecond
		o.profile = orDur(o.profile, 3*time.Second)
	} else {
		o.rounds = orInt(o.rounds, 3)
		o.round = orDur(o.round, 2*time.Second)
		o.soak = orDur(o.soak, 60*time.Second)
		o.warm = time.Second
		o.varRounds, o.varRound = 3, time.Second
		o.profile = orDur(o.profile, 10*time.Second)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func orInt(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func orDur(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// env is the bench's fixed environment: upstream, issuer, Redis, OTLP sink,
// HTTP clients.
type env struct {
	o        options
	root     string
	bin      string
	up       *upstream
	iss      *devissuer.Issuer
	redis    *proc
	redisURL string
	sink     *otlpSink
	floor    *floorProc
	direct   *http.Client
	mcpTr    *http.Transport
	scrape   *http.Client
	cleanup  []func()
}

func (e *env) close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

func run(o options) error {
	started := time.Now()
	e := &env{o: o}
	defer e.close()
	// Stop children on Ctrl-C too.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		e.close()
		os.Exit(130)
	}()

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	e.root = root
	tmp, err := os.MkdirTemp("", "harness-bench-")
	if err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, func() { os.RemoveAll(tmp) })
	e.bin = o.gateway
	if e.bin == "" {
		e.bin = filepath.Join(tmp, "gateway")
		logf("building the gateway (no race detector)")
		if err := buildGateway(context.Background(), root, e.bin); err != nil {
			return fmt.Errorf("building the gateway: %w", err)
		}
	}
	if e.up, err = startUpstream(); err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, e.up.close)
	if e.iss, err = startIssuer(); err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, func() { _ = e.iss.Close() })
	if e.sink, err = startOTLPSink(); err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, e.sink.close)
	if e.redis, e.redisURL, err = startRedis(tmp); err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, e.redis.stop)
	if e.floor, err = startFloor(e.up.url); err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, e.floor.stop)

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	e.direct = &http.Client{Transport: tr}
	e.mcpTr = http.DefaultTransport.(*http.Transport).Clone()
	e.mcpTr.MaxIdleConnsPerHost = 64
	e.scrape = &http.Client{Timeout: 10 * time.Second}

	rep := &report{opts: o, machine: machineInfo(root)}

	// 1. The full pipeline: both eras, c=1 and c=16, support user.
	full := gwConfig{redisURL: e.redisURL, otlp: e.sink.url}
	pprofPort, err := freePort()
	if err != nil {
		return err
	}
	pprofAddr := "127.0.0.1:" + strconv.Itoa(pprofPort)
	withPprof := full
	withPprof.env = []string{"HARNESS_PPROF_LISTEN=" + pprofAddr}
	g, err := startGateway(e.bin, e.iss.URL(), e.up.url, withPprof)
	if err != nil {
		return err
	}
	e.cleanup = append(e.cleanup, g.stop)
	support, admin := e.tokens(g.url)
	// Idle cost: the gateway's CPU over 2 s with no calls.
	if t0, err := cpuTicks(g.pid()); err == nil {
		time.Sleep(2 * time.Second)
		if t1, err := cpuTicks(g.pid()); err == nil {
			rep.idleCPU = float64(t1-t0) / clockTicks / 2
		}
	}
	for _, er := range eras {
		for _, conc := range []int{1, 16} {
			logf("full pipeline, %s era, concurrency %d", er.name, conc)
			c, err := e.measureWithFloor(g, er, conc, support, o.rounds, o.round, o.warm)
			if err != nil {
				return err
			}
			c.label = "full pipeline"
			rep.main = append(rep.main, c)
		}
	}
	for _, conc := range []int{1, 16} {
		logf("full pipeline, admin (no obligations), concurrency %d", conc)
		c, err := e.measure(g, eras[0], conc, admin, true, o.varRounds, o.varRound, o.warm/2)
		if err != nil {
			return err
		}
		c.label = "admin caller (no field/context obligations)"
		rep.admin = append(rep.admin, c)
	}
	for _, conc := range []int{1, 16} {
		logf("full pipeline, raw JSON-RPC client (no mcp-go client), concurrency %d", conc)
		c, err := e.measure(g, rawEra, conc, support, true, o.rounds, o.round, o.warm)
		if err != nil {
			return err
		}
		c.label = "full pipeline"
		rep.raw = append(rep.raw, c)
	}

	// A CPU profile of the gateway at concurrency 16, modern era.
	logf("CPU profile: %s at concurrency 16", o.profile)
	{
		clients, err := connectClients(g.url, support, eras[0], 16, e.mcpTr)
		if err != nil {
			return err
		}
		rep.profile, err = e.profile(pprofAddr, 16, o.profile, gatewayCaller(clients, true), tmp)
		clients.close()
		if err != nil {
			return err
		}
	}

	// 2. Soak: memory over time at concurrency 16.
	logf("soak: %s at concurrency 16", o.soak)
	if rep.soak, err = e.soak(g, support, o.soak); err != nil {
		return err
	}
	if rep.peakRSSKB, err = memKB(g.pid(), "VmHWM"); err != nil {
		return err
	}
	if rep.auditLines, err = countLines(filepath.Join(g.dir, "audit.log")); err != nil {
		return err
	}
	rep.upstreamCalls = e.up.calls.Load()
	rep.upstreamConns = e.up.conns.Load()
	rep.otlpExports = e.sink.exports.Load()
	g.stop()

	// 3. Stages switched off in turn, each on a fresh gateway process.
	if !o.noVariants {
		variants := []struct {
			name string
			cfg  gwConfig
		}{
			{"full pipeline", full},
			{"limiter and store: Redis → memory (`redis_url: \"\"`)", gwConfig{redisURL: "", otlp: e.sink.url}},
			{"detectors off (`redaction.detectors: []`)", gwConfig{redisURL: e.redisURL, otlp: e.sink.url, detectors: []string{}}},
			{"tracing not exported (`otlp_endpoint: \"\"`, never sampled)", gwConfig{redisURL: e.redisURL}},
			{"audit to stdout → /dev/null (`audit.path: \"-\"`; still chained)", gwConfig{redisURL: e.redisURL, otlp: e.sink.url, auditStdout: true}},
			{"all four above at once (floor: authn, policy, assertion, MCP)", gwConfig{detectors: []string{}, auditStdout: true}},
			{"full pipeline with `GOGC=400` (environment, not a stage)", gwConfig{redisURL: e.redisURL, otlp: e.sink.url, env: []string{"GOGC=400"}}},
		}
		// Every variant runs at once (idle when not measured) and their
		// rounds are interleaved, so that drift in the machine's load falls
		// on all of them alike.
		type running struct {
			name   string
			g      *gatewayProc
			meters [2]*meter
		}
		var runs []*running
		defer func() {
			for _, r := range runs {
				for _, m := range r.meters {
					if m != nil {
						m.close()
					}
				}
				r.g.stop()
			}
		}()
		for _, v := range variants {
			g, err := startGateway(e.bin, e.iss.URL(), e.up.url, v.cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			r := &running{name: v.name, g: g}
			runs = append(runs, r)
			support, _ := e.tokens(g.url)
			for i, conc := range []int{1, 16} {
				logf("variant %q, concurrency %d: warm-up", v.name, conc)
				if r.meters[i], err = e.newMeter(g, eras[0], conc, support, true, o.warm/2); err != nil {
					return fmt.Errorf("%s: %w", v.name, err)
				}
			}
		}
		for round := 0; round < o.varRounds; round++ {
			logf("variants: round %d of %d", round+1, o.varRounds)
			for _, r := range runs {
				for _, m := range r.meters {
					if err := m.round(o.varRound); err != nil {
						return fmt.Errorf("%s: %w", r.name, err)
					}
				}
			}
		}
		for _, r := range runs {
			row := variantRow{name: r.name}
			for i, m := range r.meters {
				row.cells[i] = m.finish()
				row.cells[i].label = r.name
			}
			if row.peakRSSKB, err = memKB(r.g.pid(), "VmHWM"); err != nil {
				return err
			}
			rep.variants = append(rep.variants, row)
		}
	}
	rep.duration = time.Since(started)
	rep.machine.loadEnd = loadavg()

	md := rep.markdown()
	fmt.Print(md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			return err
		}
		logf("wrote %s", o.out)
	}
	if n := rep.totalErrors(); n > 0 {
		return fmt.Errorf("%d calls failed (see the report)", n)
	}
	return nil
}

// tokens mints a support user's token (tenant acme: field and context
// obligations apply) and an admin's, both for gwURL's resource.
func (e *env) tokens(gwURL string) (support, admin string) {
	mint := func(sub string, roles []string, extra map[string]any) string {
		c := map[string]any{"sub": sub, "aud": gwURL + "/mcp", "azp": "bench-agent", "roles": roles, "email": sub + "@example.com"}
		for k, v := range extra {
			c[k] = v
		}
		tok, err := e.iss.Mint(c, time.Hour)
		if err != nil {
			panic(err)
		}
		return tok
	}
	return mint("alice", []string{"support"}, map[string]any{"tenant": "acme"}), mint("bob", []string{"admin"}, nil)
}

// cell is one measured configuration: era × concurrency.
type cell struct {
	label        string
	era          string
	conc         int
	direct, gw   stats
	gwCalls      int
	cpuPerCall   time.Duration // gateway utime+stime ÷ calls
	redisPerCall time.Duration // redis-server utime+stime ÷ calls
	// The bench process (MCP or HTTP client and upstream) per call, in
	// gateway rounds and in direct rounds.
	benchPerCall, benchDirectPerCall time.Duration
	warmErrs                         int // failed calls during the warm-up
	// The floor (bench/floor.go) in the same rounds, when measured: its
	// latencies and throughput, and its process's CPU per call.
	floor           *stats
	floorCPUPerCall time.Duration
	stages          map[string]time.Duration
	firstErr        error
}

// measure runs warm-up, then rounds pairs of direct and gateway rounds,
// alternating, at conc.
func (e *env) measure(g *gatewayProc, er era, conc int, token string, redacted bool, rounds int, d, warm time.Duration) (*cell, error) {
	m, err := e.newMeter(g, er, conc, token, redacted, warm)
	if err != nil {
		return nil, err
	}
	defer m.close()
	for i := 0; i < rounds; i++ {
		if err := m.round(d); err != nil {
			return nil, err
		}
	}
	return m.finish(), nil
}

// measureWithFloor is measure with a floor round (the same calls through
// the minimal translator, by the same kind of mcp-go client) between the
// direct and the gateway round of every pair.
func (e *env) measureWithFloor(g *gatewayProc, er era, conc int, token string, rounds int, d, warm time.Duration) (*cell, error) {
	m, err := e.newMeter(g, er, conc, token, true, warm)
	if err != nil {
		return nil, err
	}
	defer m.close()
	fc, err := connectClients(e.floor.url, "unused", er, conc, e.mcpTr)
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	defer fc.close()
	m.floorCall = gatewayCaller(fc, false)
	runRound(conc, warm/2, m.floorCall)
	for i := 0; i < rounds; i++ {
		if err := m.round(d); err != nil {
			return nil, err
		}
	}
	return m.finish(), nil
}

// meter measures one cell: its clients, warm-up, and the sums of its
// rounds, so that rounds of several cells can be interleaved in time.
type meter struct {
	e       *env
	g       *gatewayProc
	er      era
	c       *cell
	gwCall  caller
	dirCall caller
	close   func()
	warmErr error

	dr, gr, fr                                   []roundResult
	floorCall                                    caller // nil: no floor rounds
	floorTicks                                   int64
	floorCalls                                   int
	acc                                          stageStats
	ticks, redisTicks, selfTicks, selfDirectTick int64
	directCalls                                  int
}

func (e *env) newMeter(g *gatewayProc, er era, conc int, token string, redacted bool, warm time.Duration) (*meter, error) {
	m := &meter{e: e, g: g, er: er, c: &cell{era: er.name, conc: conc}, acc: stageStats{}, close: func() {}}
	if er.raw {
		call, err := rawCaller(g.url, token, e.mcpTr)
		if err != nil {
			return nil, err
		}
		m.gwCall = call
	} else {
		clients, err := connectClients(g.url, token, er, conc, e.mcpTr)
		if err != nil {
			return nil, err
		}
		m.close = clients.close
		m.gwCall = gatewayCaller(clients, redacted)
	}
	m.dirCall = directCaller(e.direct, e.up.url)
	// Warm-up: connections, the token and visibility caches, pools. A
	// warm-up that fails outright is a broken setup; a few failures are
	// counted with the cell's errors.
	w := runRound(conc, warm, m.gwCall)
	if w.errs > 0 && len(w.lat) == 0 {
		m.close()
		return nil, fmt.Errorf("warm-up through the gateway: %d errors, first: %v\n--- gateway warnings and errors ---\n%s", w.errs, w.firstEr, g.problems())
	}
	m.c.warmErrs, m.warmErr = w.errs, w.firstEr
	runRound(conc, warm/2, m.dirCall)
	return m, nil
}

// round runs one direct round, then one gateway round, of d each.
func (m *meter) round(d time.Duration) error {
	e, g, conc := m.e, m.g, m.c.conc
	self := os.Getpid()
	s0, err := cpuTicks(self)
	if err != nil {
		return err
	}
	r := runRound(conc, d, m.dirCall)
	s1, err := cpuTicks(self)
	if err != nil {
		return err
	}
	m.dr = append(m.dr, r)
	m.selfDirectTick += s1 - s0
	m.directCalls += len(r.lat) + r.errs
	if m.floorCall != nil {
		f0, err := cpuTicks(e.floor.pid())
		if err != nil {
			return err
		}
		r := runRound(conc, d, m.floorCall)
		f1, err := cpuTicks(e.floor.pid())
		if err != nil {
			return err
		}
		m.fr = append(m.fr, r)
		m.floorTicks += f1 - f0
		m.floorCalls += len(r.lat) + r.errs
	}
	m0, err := scrapeStages(e.scrape, g.url)
	if err != nil {
		return err
	}
	t0, err1 := cpuTicks(g.pid())
	r0, err2 := cpuTicks(e.redis.pid())
	s0, err5 := cpuTicks(self)
	r = runRound(conc, d, m.gwCall)
	t1, err3 := cpuTicks(g.pid())
	r1, err4 := cpuTicks(e.redis.pid())
	s1, err6 := cpuTicks(self)
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return err
	}
	m1, err := scrapeStages(e.scrape, g.url)
	if err != nil {
		return err
	}
	m.gr = append(m.gr, r)
	m.acc.add(m0, m1)
	m.ticks += t1 - t0
	m.redisTicks += r1 - r0
	m.selfTicks += s1 - s0
	m.c.gwCalls += len(r.lat) + r.errs
	return nil
}

// finish summarises the rounds into the cell.
func (m *meter) finish() *cell {
	c := m.c
	var e1, e2 error
	c.direct, e1 = summarize(m.dr)
	c.gw, e2 = summarize(m.gr)
	c.firstErr = errors.Join(e1, e2)
	if c.firstErr == nil && m.warmErr != nil {
		c.firstErr = fmt.Errorf("warm-up: %w", m.warmErr)
	}
	perCall := func(ticks int64, calls int) time.Duration {
		if calls == 0 {
			return 0
		}
		return time.Duration(float64(ticks) * float64(time.Second) / clockTicks / float64(calls))
	}
	c.cpuPerCall = perCall(m.ticks, c.gwCalls)
	c.redisPerCall = perCall(m.redisTicks, c.gwCalls)
	c.benchPerCall = perCall(m.selfTicks, c.gwCalls)
	c.benchDirectPerCall = perCall(m.selfDirectTick, m.directCalls)
	c.stages = m.acc.means(stageStats{})
	if m.floorCall != nil {
		fs, err := summarize(m.fr)
		c.floor, c.floorCPUPerCall = &fs, perCall(m.floorTicks, m.floorCalls)
		if c.firstErr == nil && err != nil {
			c.firstErr = fmt.Errorf("floor: %w", err)
		}
	}
	if c.firstErr != nil {
		logf("errors (%s, c=%d): %v\n--- gateway warnings and errors ---\n%s", m.er.name, c.conc, c.firstErr, m.g.problems())
	}
	return c
}

// soakResult is the gateway's memory over the soak.
type soakResult struct {
	duration time.Duration
	samples  []int64 // VmRSS kB every 5 s
	gw       stats
	firstErr error
}

func (e *env) soak(g *gatewayProc, token string, d time.Duration) (*soakResult, error) {
	const conc = 16
	clients, err := connectClients(g.url, token, eras[0], conc, e.mcpTr)
	if err != nil {
		return nil, err
	}
	defer clients.close()
	res := &soakResult{duration: d}
	done := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				sampled <- nil
				return
			case <-tick.C:
				kb, err := memKB(g.pid(), "VmRSS")
				if err != nil {
					sampled <- err
					return
				}
				res.samples = append(res.samples, kb)
			}
		}
	}()
	// A little past d so that the last 5 s sample falls inside the load.
	r := runRound(conc, d+time.Second, gatewayCaller(clients, true))
	close(done)
	if err := <-sampled; err != nil {
		return nil, err
	}
	res.gw, res.firstErr = summarize([]roundResult{r})
	if res.firstErr != nil {
		logf("soak errors: %v\n--- gateway warnings and errors ---\n%s", res.firstErr, g.problems())
	}
	return res, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the bench from inside the harness module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

func countLines(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), "\n"), nil
}
