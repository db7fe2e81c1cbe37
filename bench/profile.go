package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// profEntry is one function of a CPU profile: its cumulative CPU per call
// (own CPU per call in flat).
type profEntry struct {
	name    string
	mode    string // for a stage: "cum" or "flat"
	perCall time.Duration
	flat    time.Duration
	pct     float64 // of the profile's total samples
}

// profileResult is a CPU profile of the gateway taken during a round.
type profileResult struct {
	duration time.Duration
	conc     int
	calls    int
	total    time.Duration // CPU per call over the whole profile
	top      []profEntry   // the top cumulative entries
	stages   []profEntry   // per stage (stageRules), same order
}

// stageRules name the pipeline's stages by their functions. A "cum" rule's
// figure is the largest cumulative entry whose name matches (the stage with
// everything it calls); a "flat" rule's is the sum of the matching
// functions' own CPU (a package's own code, wherever it is called from).
var stageRules = []struct{ stage, mode, re string }{
	{"whole request (HTTP server connection)", "cum", `^net/http\.\(\*conn\)\.serve$`},
	{"mcp-go streamable HTTP handler (incl. the tool pipeline)", "cum", `mcp-go/server\.\(\*StreamableHTTPServer\)\.ServeHTTP$`},
	{"tools/call fast path, modern era (`fastCall`: one decode, incl. the tool pipeline)", "cum", `harness/internal/server\.\(\*Server\)\.fastCall$`},
	{"tool pipeline (`callTool`)", "cum", `harness/internal/server\.\(\*Server\)\.callTool$`},
	{"token verification (`internal/authn`)", "cum", `harness/internal/authn\.`},
	{"session lookup (legacy era only)", "cum", `harness/internal/store\..*GetSession$`},
	{"policy (`policy`)", "cum", `^github\.com/agentharness/harness/policy\.`},
	{"rate limiter (`internal/ratelimit`)", "cum", `harness/internal/ratelimit\.`},
	{"upstream request (`tools`)", "cum", `^github\.com/agentharness/harness/tools\.`},
	{"redaction (`internal/redact`)", "cum", `harness/internal/redact\.`},
	{"audit (`internal/audit`)", "cum", `harness/internal/audit\.`},
	{"audit: chaining and encoding a record (`Log.enqueueLocked`)", "cum", `harness/internal/audit\.\(\*Log\)\.enqueueLocked$`},
	{"audit: the group write(2) of a batch of records (`Log.writeBatch`)", "cum", `harness/internal/audit\.\(\*Log\)\.writeBatch$`},
	{"tracing: spans started (sampled calls only)", "cum", `^go\.opentelemetry\.io/otel/sdk/trace\.\(\*tracer\)\.Start$`},
	{"tracing: spans ended and queued for export", "cum", `^go\.opentelemetry\.io/otel/sdk/trace\.\(\*recordingSpan\)\.End$`},
	{"metrics: stage and call histograms and counters (`internal/telemetry`)", "cum", `harness/internal/telemetry\.\(\*Telemetry\)\.Record(Call|Stage)$`},
	{"own code of mcp-go", "flat", `^github\.com/mark3labs/mcp-go/`},
	{"own code of OpenTelemetry", "flat", `^go\.opentelemetry\.io/`},
	{"own code of the Redis client", "flat", `^github\.com/redis/go-redis/`},
	{"own code of encoding/json", "flat", `^encoding/json\.`},
	{"syscalls (own CPU, i.e. in the kernel)", "flat", `^(syscall\.|(internal/runtime|runtime/internal)/syscall[./])`},
	{"garbage collector (background marking)", "cum", `^runtime\.gcBgMarkWorker$`},
}

// profile takes a CPU profile of g (its HARNESS_PPROF_LISTEN endpoint)
// while call runs at conc for d, and reads it with `go tool pprof`.
func (e *env) profile(pprofAddr string, conc int, d time.Duration, call caller, dir string) (*profileResult, error) {
	secs := int(d / time.Second)
	if secs < 1 {
		secs = 1
	}
	file := filepath.Join(dir, "cpu.pprof")
	fetched := make(chan error, 1)
	go func() {
		fetched <- fetchProfile("http://"+pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), file)
	}()
	r := runRound(conc, time.Duration(secs)*time.Second, call)
	if err := <-fetched; err != nil {
		return nil, err
	}
	if r.errs > 0 && len(r.lat) == 0 {
		return nil, fmt.Errorf("profile round: %d errors, first: %v", r.errs, r.firstEr)
	}
	calls := len(r.lat) + r.errs
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=0", file).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w", err)
	}
	res, err := parsePprofTop(string(out), calls)
	if err != nil {
		return nil, err
	}
	res.duration, res.conc, res.calls = time.Duration(secs)*time.Second, conc, calls
	return res, nil
}

func fetchProfile(url, file string) error {
	c := &http.Client{Timeout: time.Minute}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// parsePprofTop reads `go tool pprof -top -cum` output: the total from the
// "Duration: …, Total samples = …" line, then one entry per line
// (flat flat% sum% cum cum% name).
func parsePprofTop(out string, calls int) (*profileResult, error) {
	if calls == 0 {
		return nil, errors.New("no calls during the profile")
	}
	res := &profileResult{}
	var total float64
	var entries []profEntry
	for _, line := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(line, "Total samples = "); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				total = pprofSeconds(f[0])
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[4], "%") {
			continue
		}
		flat, cum := pprofSeconds(f[0]), pprofSeconds(f[3])
		if cum < 0 || flat < 0 {
			continue
		}
		pct, _ := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		entries = append(entries, profEntry{name: strings.Join(f[5:], " "), perCall: perCallOf(cum, calls), flat: perCallOf(flat, calls), pct: pct})
	}
	if total <= 0 || len(entries) == 0 {
		return nil, fmt.Errorf("unreadable pprof output: %.300s", out)
	}
	res.total = perCallOf(total, calls)
	res.top = entries[:min(10, len(entries))]
	for _, rule := range stageRules {
		re := regexp.MustCompile(rule.re)
		st := profEntry{name: rule.stage, mode: rule.mode}
		for _, e := range entries {
			switch {
			case !re.MatchString(e.name):
			case rule.mode == "flat":
				st.perCall += e.flat
			case e.perCall > st.perCall:
				st.perCall, st.pct = e.perCall, e.pct
			}
		}
		if rule.mode == "flat" && res.total > 0 {
			st.pct = 100 * float64(st.perCall) / float64(res.total)
		}
		res.stages = append(res.stages, st)
	}
	return res, nil
}

func perCallOf(seconds float64, calls int) time.Duration {
	return time.Duration(seconds / float64(calls) * float64(time.Second))
}

// pprofSeconds parses pprof's durations ("1.23s", "450ms", "0"); -1 if not one.
func pprofSeconds(s string) float64 {
	if s == "0" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return -1
	}
	return d.Seconds()
}

// markdown writes the profile's tables.
func (r *profileResult) markdown(p func(string, ...any)) {
	p("### CPU profile of this run\n\n")
	p("A CPU profile of the full-pipeline gateway taken by this run (`HARNESS_PPROF_LISTEN`, `/debug/pprof/profile`) during %s of modern-era calls at concurrency %d (%d calls), ", r.duration, r.conc, r.calls)
	p("read with `go tool pprof -top -cum`. CPU per call is the cumulative CPU of an entry ÷ the calls in the profile; the whole profile came to %s per call (the profiler's own sampling adds a little). ", us(r.total))
	p("Entries overlap (an entry includes everything it calls).\n\n")
	p("Per stage (`stageRules` in `bench/profile.go`): *cum* is the largest cumulative entry among the stage's functions (the stage with everything it calls), ")
	p("*own* the sum of the matching functions' own CPU (a library's own code, wherever it is called from).\n\n")
	p("| stage | | CPU per call | %% of profile |\n|---|---|--:|--:|\n")
	for _, e := range r.stages {
		kind := "cum"
		if e.mode == "flat" {
			kind = "own"
		}
		p("| %s | %s | %s | %.1f%% |\n", e.name, kind, us(e.perCall), e.pct)
	}
	p("\nTop 10 cumulative entries:\n\n")
	p("| function | CPU per call | %% of profile |\n|---|--:|--:|\n")
	for _, e := range r.top {
		p("| `%s` | %s | %.1f%% |\n", strings.ReplaceAll(e.name, "|", "\\|"), us(e.perCall), e.pct)
	}
	p("\n")
}
