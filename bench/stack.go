package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentharness/harness/internal/devissuer"
)

// recordSize is the size of the JSON record the upstream answers per call.
const recordSize = 1024

// numIDs is how many distinct customer ids the load cycles through.
const numIDs = 100

// upstreamDoc is the OpenAPI document of the bench upstream: one read
// operation tagged "customers", so a support user may call it.
const upstreamDoc = `{"openapi":"3.1.0","info":{"title":"bench","version":"1"},"paths":{
 "/customers/{customer_id}":{"get":{"operationId":"get_customer","summary":"Get a customer","tags":["customers"],
  "parameters":[{"name":"customer_id","in":"path","required":true,"schema":{"type":"string"}}],
  "responses":{"200":{"description":"the customer"}}}}}}`

// toolName is the gateway's name for the upstream operation.
const toolName = "crm_get_customer"

// cardNumber is in every record; the gateway must mask it for a support
// user (policy obligation "card_number" and the credit_card detector).
const cardNumber = "4111 1111 1111 1111"

// customerID is the id of call n.
func customerID(n int) string { return "c-" + strconv.Itoa(n%numIDs) }

// record is the 1 KiB JSON record of one customer, padded to recordSize.
func record(id string) []byte {
	head := fmt.Sprintf(`{"customer_id":%q,"tenant_id":"acme","name":"Ada Lovelace","email":"ada.lovelace@example.com",`+
		`"phone":"+44 20 7946 0958","card_number":%q,"plan":"enterprise","status":"active",`+
		`"address":{"street":"12 Analytical Row","city":"London","postcode":"EC1A 1BB","country":"GB"},`+
		`"orders":[{"order_id":"o-1001","total":129.5,"currency":"EUR","tenant_id":"acme"},{"order_id":"o-1002","total":89.0,"currency":"EUR","tenant_id":"acme"}],`+
		`"tags":["vip","newsletter"],"created_at":"2024-03-01T10:00:00Z","notes":"`, id, cardNumber)
	tail := `"}`
	pad := recordSize - len(head) - len(tail)
	if pad < 0 {
		pad = 0
	}
	var b bytes.Buffer
	b.WriteString(head)
	// Plain prose, nothing a detector would flag.
	words := "customer prefers email contact about invoices and renewal dates "
	for b.Len() < len(head)+pad {
		b.WriteString(words)
	}
	b.Truncate(len(head) + pad)
	b.WriteString(tail)
	return b.Bytes()
}

// upstream is the fast Go upstream: the OpenAPI document and a 1 KiB JSON
// record per call.
type upstream struct {
	srv   *http.Server
	url   string
	calls atomic.Int64
	conns atomic.Int64 // TCP connections accepted
}

func startUpstream() (*upstream, error) {
	recs := make(map[string][]byte, numIDs)
	for i := 0; i < numIDs; i++ {
		recs[customerID(i)] = record(customerID(i))
	}
	u := &upstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, upstreamDoc)
	})
	mux.HandleFunc("GET /customers/{customer_id}", func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		rec, ok := recs[r.PathValue("customer_id")]
		if !ok {
			http.Error(w, `{"detail":"not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(rec)))
		w.Write(rec)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			u.conns.Add(1)
		}
	}}
	u.url = "http://" + ln.Addr().String()
	go u.srv.Serve(ln)
	return u, nil
}

func (u *upstream) close() { _ = u.srv.Close() }

// otlpSink accepts OTLP/HTTP trace exports and discards them: tracing is
// on and exporting, to an exporter that costs the gateway nothing extra.
type otlpSink struct {
	srv     *http.Server
	url     string
	exports atomic.Int64
}

func startOTLPSink() (*otlpSink, error) {
	s := &otlpSink{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	s.url = "http://" + ln.Addr().String()
	go s.srv.Serve(ln)
	return s, nil
}

func (s *otlpSink) close() { _ = s.srv.Close() }

// proc is a child process (redis-server or the gateway) in its own process
// group, stopped with SIGTERM (SIGKILL after 10 s).
type proc struct {
	name string
	cmd  *exec.Cmd
	tail *boundedBuffer
	done chan struct{}
}

func startProc(name string, cmd *exec.Cmd, stdout io.Writer) (*proc, error) {
	p := &proc{name: name, cmd: cmd, tail: &boundedBuffer{max: 256 << 10}, done: make(chan struct{})}
	// Child output (stderr, and stdout unless given) is kept, bounded.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if stdout == nil {
		cmd.Stdout = pw
	} else {
		cmd.Stdout = stdout
	}
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pw.Close()
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(p.tail, pr); pr.Close(); close(copied) }()
	go func() {
		_ = cmd.Wait()
		<-copied
		close(p.done)
	}()
	return p, nil
}

// boundedBuffer keeps the last max bytes written to it.
type boundedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if len(b.b) > b.max {
		b.b = append([]byte(nil), b.b[len(b.b)-b.max:]...)
	}
	return len(p), nil
}

func (b *boundedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.b...)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// output is what the process wrote so far (the last 256 KiB).
func (p *proc) output() string { return string(p.tail.bytes()) }

func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRedis runs a throwaway redis-server on a free loopback port (never
// 6379), without persistence.
func startRedis(dir string) (*proc, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", errors.New("redis-server is not installed (apt-get install redis-server)")
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		if port == 6379 {
			continue
		}
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "yes")
		p, err := startProc("redis-server", cmd, nil)
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := waitRedis(addr, p, 10*time.Second); err != nil {
			p.stop()
			lastErr = fmt.Errorf("%w\n%s", err, p.output())
			continue
		}
		return p, "redis://" + addr + "/0", nil
	}
	return nil, "", fmt.Errorf("redis-server did not start: %v", lastErr)
}

func waitRedis(addr string, p *proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if p.exited() {
			return errors.New("redis-server exited")
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis at %s did not answer PING within %s", addr, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gwConfig is one configuration of the gateway: the full pipeline, or the
// full pipeline with one stage switched off (by configuration only).
type gwConfig struct {
	redisURL    string   // "" = in-memory limiter and store
	detectors   []string // nil = the product default; empty = none
	auditStdout bool     // audit.path "-" (stdout to /dev/null) instead of a file
	otlp        string   // "" = tracing not exported (never sampled)
	env         []string // extra environment of the gateway process
}

func (c gwConfig) yaml(listen, issuer, upstreamURL, dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\npublic_url: %q\nenvironment: bench\n", listen, "http://"+listen)
	fmt.Fprintf(&b, "auth:\n  issuers:\n    - issuer: %q\n", issuer)
	fmt.Fprintf(&b, "upstreams:\n  - name: crm\n    base_url: %q\n    openapi: %q\n    timeout: 10s\n", upstreamURL, upstreamURL+"/openapi.json")
	fmt.Fprintf(&b, "ratelimit:\n  redis_url: %q\n  default: {requests: 100000000, per: 1s}\n  on_error: deny\n", c.redisURL)
	if c.detectors != nil {
		q := make([]string, len(c.detectors))
		for i, d := range c.detectors {
			q[i] = strconv.Quote(d)
		}
		fmt.Fprintf(&b, "redaction:\n  detectors: [%s]\n", strings.Join(q, ", "))
	}
	path := filepath.Join(dir, "audit.log")
	if c.auditStdout {
		path = "-"
	}
	fmt.Fprintf(&b, "audit:\n  path: %q\n  on_error: deny\n", path)
	fmt.Fprintf(&b, "telemetry:\n  otlp_endpoint: %q\n", c.otlp)
	return b.String()
}

// gatewayProc is a running gateway binary.
type gatewayProc struct {
	*proc
	url string
	dir string
}

// startGateway writes the config and runs `gateway serve` on it; it returns
// once /readyz answers 200 (IdP, upstream document, policy, audit, Redis).
func startGateway(bin, issuer, upstreamURL string, c gwConfig) (*gatewayProc, error) {
	dir, err := os.MkdirTemp("", "harness-bench-gw-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	cfgPath := filepath.Join(dir, "harness.yaml")
	if err := os.WriteFile(cfgPath, []byte(c.yaml(listen, issuer, upstreamURL, dir)), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "info")
	cmd.Env = append(os.Environ(), c.env...)
	var stdout io.Writer
	if c.auditStdout {
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		defer devnull.Close()
		stdout = devnull
	}
	p, err := startProc("gateway", cmd, stdout)
	if err != nil {
		return nil, err
	}
	g := &gatewayProc{proc: p, url: "http://" + listen, dir: dir}
	if err := waitReady(g.url+"/readyz", p, 60*time.Second); err != nil {
		g.stop()
		return nil, fmt.Errorf("%w\n--- gateway output ---\n%s", err, p.output())
	}
	return g, nil
}

// problems are the last warnings and errors the gateway logged.
func (g *gatewayProc) problems() string {
	var out []string
	for _, line := range strings.Split(g.output(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	if len(out) > 10 {
		out = out[len(out)-10:]
	}
	return strings.Join(out, "\n")
}

func (g *gatewayProc) stop() {
	g.proc.stop()
	_ = os.RemoveAll(g.dir)
}

func waitReady(url string, p *proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: 3 * time.Second}
	var last string
	for {
		if p.exited() {
			return errors.New("the gateway exited")
		}
		resp, err := c.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (last: %s)", url, d, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startIssuer runs the development OIDC issuer in this process.
func startIssuer() (*devissuer.Issuer, error) {
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		return nil, err
	}
	if err := iss.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return iss, nil
}

// buildGateway builds the gateway binary (no race detector) from the module
// at root.
func buildGateway(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/gateway")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}
