package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/devissuer"
)

// gatewayBin is the gateway binary built once for all tests.
var gatewayBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// -short is the quick local loop (make test-short); CI never sets it.
		fmt.Println("e2e: skipped with -short")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "harness-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatewayBin = filepath.Join(dir, "gateway")
	args := []string{"build", "-o", gatewayBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/gateway")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the gateway:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a free 127.0.0.1 port as host:port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHTTP polls url until it answers want (or the deadline passes).
func waitHTTP(t testing.TB, url string, want int, d time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within %s (last: %v)\n%s", url, want, d, err, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a goroutine-safe log sink for child processes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a child process stopped at cleanup.
type process struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

func startProcess(t testing.TB, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.logs.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// python is Debian's interpreter, which has python3-fastapi and uvicorn.
func python() string {
	if p := os.Getenv("HARNESS_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// startFastAPI runs examples/fastapi as a real uvicorn process.
func startFastAPI(t testing.TB) string {
	t.Helper()
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(python(), "-m", "uvicorn", "app:app", "--app-dir", "../examples/fastapi",
		"--host", host, "--port", port, "--log-level", "warning")
	p := startProcess(t, "fastapi", cmd)
	base := "http://" + addr
	waitHTTP(t, base+"/openapi.json", 200, 30*time.Second, p.logs.String)
	return base
}

// startIssuer runs a development OIDC issuer on loopback.
func startIssuer(t testing.TB) *devissuer.Issuer {
	t.Helper()
	iss, err := devissuer.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	return iss
}

// gateway is a running gateway binary.
type gateway struct {
	*process
	URL       string
	Dir       string
	AuditPath string
}

// startGateway writes cfg (a YAML template: {{LISTEN}}, {{DIR}} are
// replaced) and runs `gateway serve` on it.
func startGateway(t testing.TB, cfg string, env ...string) *gateway {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg = strings.ReplaceAll(cfg, "{{LISTEN}}", addr)
	cfg = strings.ReplaceAll(cfg, "{{DIR}}", dir)
	path := filepath.Join(dir, "harness.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gatewayBin, "serve", "--config", path, "--log-level", "debug")
	cmd.Env = append(append(os.Environ(), "HARNESS_SERVER_ADMIN_TOKEN="+e2eAdminToken), env...)
	g := &gateway{process: startProcess(t, "gateway", cmd), URL: "http://" + addr, Dir: dir, AuditPath: filepath.Join(dir, "audit.log")}
	waitHTTP(t, g.URL+"/healthz", 200, 60*time.Second, g.logs.String)
	return g
}

// e2eAdminToken is every test gateway's server.admin_token: with it
// /readyz shows what is wrong.
const e2eAdminToken = "e2e-admin-token-0123456789"

// getReadyz GETs /readyz of the gateway at gwURL with the admin token.
func getReadyz(gwURL string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, gwURL+"/readyz", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	return http.DefaultClient.Do(req)
}

// mint returns a token from iss for the gateway at gwURL.
func mint(t testing.TB, iss *devissuer.Issuer, gwURL string, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"aud": gwURL + "/mcp", "azp": "test-agent"}
	for k, v := range claims {
		c[k] = v
	}
	tok, err := iss.Mint(c, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// era names a protocol era for table tests.
type era struct {
	name    string
	version string // "" = the client's default (2026-07-28, stateless)
}

var eras = []era{{"modern", ""}, {"legacy", "2025-11-25"}}

// connect opens an initialized MCP client with token in the given era.
func connect(t testing.TB, gwURL, token string, e era, opts ...transport.StreamableHTTPCOption) *client.Client {
	t.Helper()
	return connectWith(t, gwURL, token, e, "harness-e2e", nil, opts...)
}

// connectWith is connect announcing itself as name, with client options
// (capabilities, elicitation or sampling handlers) on top of the era's.
func connectWith(t testing.TB, gwURL, token string, e era, name string, copts []client.ClientOption, opts ...transport.StreamableHTTPCOption) *client.Client {
	t.Helper()
	opts = append([]transport.StreamableHTTPCOption{transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token})}, opts...)
	tr, err := transport.NewStreamableHTTP(gwURL+"/mcp", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if e.version != "" {
		copts = append([]client.ClientOption{client.WithProtocolVersion(e.version)}, copts...)
	}
	c := client.NewClient(tr, copts...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: name, Version: "1"}
	req.Params.ProtocolVersion = e.version
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize (%s): %v", e.name, err)
	}
	return c
}

func callTool(t testing.TB, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return res
}

func resultText(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := mcp.AsTextContent(c); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func listNames(t testing.TB, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
