package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// era is a protocol era of MCP.
type era struct {
	name    string
	version string // "" = the client's default (2026-07-28, stateless)
	raw     bool   // replay the modern era's request with a plain http.Client
}

var eras = []era{{"modern", "", false}, {"legacy", "2025-11-25", false}}

// rawEra is the modern era driven by replaying the mcp-go client's request.
var rawEra = era{"modern, raw JSON-RPC", "", true}

// caller makes one call; worker w, call n. It returns an error for a failed
// call or a wrong result.
type caller func(ctx context.Context, w, n int) error

// roundResult is what one round measured.
type roundResult struct {
	lat     []time.Duration
	errs    int
	firstEr error
	elapsed time.Duration
}

// runRound runs conc workers, each calling in a loop until d has passed.
func runRound(conc int, d time.Duration, call caller) roundResult {
	var mu sync.Mutex
	var res roundResult
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			errs := 0
			var first error
			for n := w * 7; time.Now().Before(deadline); n++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t0 := time.Now()
				err := call(ctx, w, n)
				el := time.Since(t0)
				cancel()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, el)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			if res.firstEr == nil {
				res.firstEr = first
			}
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// directCaller is the baseline: the same GET the gateway makes, by a plain
// Go http.Client.
func directCaller(c *http.Client, upstreamURL string) caller {
	return func(ctx context.Context, _, n int) error {
		id := customerID(n)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstreamURL+"/customers/"+id, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || len(body) != recordSize {
			return fmt.Errorf("direct: status %d, %d bytes", resp.StatusCode, len(body))
		}
		return nil
	}
}

// mcpClients are one initialized MCP client per worker.
type mcpClients struct {
	cs []*client.Client
}

func (m *mcpClients) close() {
	for _, c := range m.cs {
		_ = c.Close()
	}
}

// connectClients opens n MCP clients to the gateway in era e, sharing one
// pooled HTTP transport (as many idle connections as workers).
func connectClients(gwURL, token string, e era, n int, tr http.RoundTripper) (*mcpClients, error) {
	m := &mcpClients{}
	for i := 0; i < n; i++ {
		st, err := transport.NewStreamableHTTP(gwURL+"/mcp",
			transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}),
			transport.WithHTTPBasicClient(&http.Client{Transport: tr}))
		if err != nil {
			m.close()
			return nil, err
		}
		var opts []client.ClientOption
		if e.version != "" {
			opts = append(opts, client.WithProtocolVersion(e.version))
		}
		c := client.NewClient(st, opts...)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = c.Start(ctx)
		if err == nil {
			req := mcp.InitializeRequest{}
			req.Params.ClientInfo = mcp.Implementation{Name: "harness-bench", Version: "1"}
			req.Params.ProtocolVersion = e.version
			_, err = c.Initialize(ctx, req)
		}
		cancel()
		if err != nil {
			_ = c.Close()
			m.close()
			return nil, fmt.Errorf("initialize (%s): %w", e.name, err)
		}
		m.cs = append(m.cs, c)
	}
	return m, nil
}

// gatewayCaller calls the tool through the gateway with worker w's client
// and checks the result: not an error, the right record, and — for a
// caller whose results are redacted — the card number masked.
func gatewayCaller(m *mcpClients, redacted bool) caller {
	return func(ctx context.Context, w, n int) error {
		id := customerID(n)
		req := mcp.CallToolRequest{}
		req.Params.Name = toolName
		req.Params.Arguments = map[string]any{"customer_id": id}
		res, err := m.cs[w].CallTool(ctx, req)
		if err != nil {
			return err
		}
		var text string
		for _, c := range res.Content {
			if tc, ok := mcp.AsTextContent(c); ok {
				text += tc.Text
			}
		}
		switch {
		case res.IsError:
			return fmt.Errorf("tool error: %.300s", text)
		case !strings.Contains(text, `"customer_id":"`+id+`"`):
			return fmt.Errorf("wrong record for %s: %.200s", id, text)
		case redacted == strings.Contains(text, cardNumber):
			return fmt.Errorf("card number redacted=%v expected=%v: %.200s", !redacted, redacted, text)
		}
		return nil
	}
}

// stats summarises latencies.
type stats struct {
	calls      int
	errs       int
	p50, p99   time.Duration
	throughput float64 // calls per second
}

func summarize(rs []roundResult) (stats, error) {
	var all []time.Duration
	var el time.Duration
	var s stats
	var first error
	for _, r := range rs {
		all = append(all, r.lat...)
		el += r.elapsed
		s.errs += r.errs
		if first == nil {
			first = r.firstEr
		}
	}
	s.calls = len(all)
	if len(all) > 0 {
		slices.Sort(all)
		s.p50 = percentile(all, 0.50)
		s.p99 = percentile(all, 0.99)
	}
	if el > 0 {
		s.throughput = float64(s.calls) / el.Seconds()
	}
	return s, first
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// clockTicks is sysconf(_SC_CLK_TCK); 100 on every Linux this runs on.
const clockTicks = 100

// cpuTicks reads utime+stime of pid (in clock ticks) from /proc/pid/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; fields resume after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unparsable /proc/pid/stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/pid/stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unparsable utime/stime")
	}
	return ut + st, nil
}

// memKB reads a field such as VmRSS or VmHWM (kB) from /proc/pid/status.
func memKB(pid int, field string) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v := strings.Fields(rest)
			if len(v) == 0 {
				break
			}
			return strconv.ParseInt(v[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// stageStats are the sums and counts of harness_stage_duration_seconds by
// stage, scraped from the gateway's /metrics.
type stageStats map[string]struct {
	sum   float64
	count float64
}

func scrapeStages(c *http.Client, gwURL string) (stageStats, error) {
	resp, err := c.Get(gwURL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d", resp.StatusCode)
	}
	out := stageStats{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var isSum bool
		switch {
		case strings.HasPrefix(line, "harness_stage_duration_seconds_sum{"):
			isSum = true
		case strings.HasPrefix(line, "harness_stage_duration_seconds_count{"):
		default:
			continue
		}
		_, rest, _ := strings.Cut(line, `stage="`)
		stage, _, ok := strings.Cut(rest, `"`)
		if !ok {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		e := out[stage]
		if isSum {
			e.sum += v
		} else {
			e.count += v
		}
		out[stage] = e
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("/metrics has no harness_stage_duration_seconds")
	}
	return out, nil
}

// means is the mean duration per stage between two scrapes.
func (after stageStats) means(before stageStats) map[string]time.Duration {
	m := map[string]time.Duration{}
	for st, a := range after {
		b := before[st]
		if n := a.count - b.count; n > 0 {
			m[st] = time.Duration((a.sum - b.sum) / n * float64(time.Second))
		}
	}
	return m
}

// add accumulates the deltas of a round into acc (sum/count pairs).
func (acc stageStats) add(before, after stageStats) {
	for st, a := range after {
		b := before[st]
		e := acc[st]
		e.sum += a.sum - b.sum
		e.count += a.count - b.count
		acc[st] = e
	}
}

// recorder is an http.RoundTripper that keeps the first tools/call request
// the mcp-go client sends (headers and body), so that it can be replayed.
type recorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	header http.Header
	body   []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Method == http.MethodPost {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		r.mu.Lock()
		if r.body == nil && bytes.Contains(b, []byte(`"tools/call"`)) {
			r.header, r.body = req.Header.Clone(), b
		}
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

// rawCaller replays the mcp-go client's own tools/call request (modern
// era: no session) with a plain http.Client, varying the customer id, and
// checks the answer's bytes: the gateway's cost without the mcp-go
// client's.
func rawCaller(gwURL, token string, tr *http.Transport) (caller, error) {
	rec := &recorder{next: tr}
	st, err := transport.NewStreamableHTTP(gwURL+"/mcp",
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}),
		transport.WithHTTPBasicClient(&http.Client{Transport: rec}))
	if err != nil {
		return nil, err
	}
	c := client.NewClient(st)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		return nil, err
	}
	if err := gatewayCaller(&mcpClients{cs: []*client.Client{c}}, true)(ctx, 0, 0); err != nil {
		return nil, err
	}
	rec.mu.Lock()
	header, body := rec.header, rec.body
	rec.mu.Unlock()
	idArg := []byte(`"customer_id":"` + customerID(0) + `"`)
	if body == nil || !bytes.Contains(body, idArg) {
		return nil, fmt.Errorf("could not record a tools/call request: %q", body)
	}
	hc := &http.Client{Transport: tr}
	return func(ctx context.Context, _, n int) error {
		id := customerID(n)
		want := []byte(`"customer_id":"` + id + `"`)
		b := bytes.Replace(body, idArg, want, 1)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, gwURL+"/mcp", bytes.NewReader(b))
		if err != nil {
			return err
		}
		for k, vs := range header {
			req.Header[k] = vs
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return err
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("raw tools/call: %d %.200s", resp.StatusCode, out)
		case bytes.Contains(out, []byte(`"isError":true`)):
			return fmt.Errorf("raw tools/call: tool error: %.300s", out)
		case !bytes.Contains(out, want):
			return fmt.Errorf("raw tools/call: wrong record for %s: %.200s", id, out)
		case bytes.Contains(out, []byte(cardNumber)):
			return fmt.Errorf("raw tools/call: card number not masked: %.200s", out)
		}
		return nil
	}, nil
}
