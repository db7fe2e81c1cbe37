package tools

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// Bounds on what one MCP upstream may hand the gateway: a hostile server
// cannot exhaust memory with a huge list or message.
const (
	// MaxListItems bounds each list (tools, resources, templates, prompts)
	// of one upstream; a longer list is an error for that upstream.
	MaxListItems = 2000
	// MaxListPages bounds the pages followed for one list.
	MaxListPages = 100
	// MaxMCPMessageBytes bounds one message from an MCP upstream (an HTTP
	// response or SSE event, or one line of a stdio server).
	MaxMCPMessageBytes = 8 << 20
)

// Backoff of reconnection and restarts.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
	// stableAfter resets the backoff once a connection lived this long.
	stableAfter = 30 * time.Second
	// probeEvery is how often an idle HTTP upstream is checked.
	probeEvery = 15 * time.Second
)

// legacyStdioVersion is the protocol revision spoken to command upstreams.
const legacyStdioVersion = "2025-11-25"

// AssertionMeta is the _meta key that carries the identity assertion to a
// command (stdio) upstream.
const AssertionMeta = "harness/assertion"

// ErrUpstreamDown is the status of an MCP upstream that is not connected.
var ErrUpstreamDown = errors.New("not connected")

// ClientRequests answers, for one call, the requests an upstream server
// sends its client during that call (sampling, elicitation, roots): the
// gateway relays them to the agent that made the call.
type ClientRequests interface {
	CreateMessage(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)
	Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error)
	ListRoots(ctx context.Context, req mcp.ListRootsRequest) (*mcp.ListRootsResult, error)
}

// MCPCall is what one call to an MCP upstream carries besides its
// arguments.
type MCPCall struct {
	// Assertion is the identity of the human and agent for the upstream
	// (the gateway's assertion, or a token of the company IdP); empty sends
	// none. An mcp upstream gets it as Authorization: Bearer (or as
	// Harness-Assertion when headers set Authorization); a command
	// upstream in params._meta["harness/assertion"].
	Assertion string
	// ProgressToken is the agent's progress token for this call, if any.
	ProgressToken mcp.ProgressToken
	// Notify, when set, receives the notifications the upstream sends for
	// this call (notifications/progress with the agent's token,
	// notifications/message).
	Notify func(method string, params map[string]any)
	// Requests, when set, answers the upstream's requests to its client
	// made during this call; without it they are refused.
	Requests ClientRequests
	// Legacy is set for a call of an agent on a session-based revision
	// (2025-11-25 and before): an mcp upstream is then asked over a
	// connection of that era, on which it may send the call's sampling,
	// elicitation and roots requests to be relayed to the agent.
	Legacy bool
	// ClientCapabilities, when set, are the agent's capabilities declared
	// on its 2026-07-28 request: the upstream sees them in place of the
	// gateway's own, so it asks only for what the agent can answer.
	ClientCapabilities *mcp.ClientCapabilities
	// Retry, when set, carries the agent's answers to an input_required
	// result (2026-07-28) and the upstream's requestState, for the
	// upstream; input_required results are returned, not answered by the
	// gateway.
	Retry *mcp.MultiRoundTripParams
}

type callKey struct{}

// mcpConn is the gateway's connection to one MCP upstream: it connects
// (starting the process of a command upstream), lists what the server
// offers, reconnects with backoff when the connection or process is lost,
// and asks the catalogue to relist on list_changed.
type mcpConn struct {
	up        Upstream
	client    *http.Client
	logger    *slog.Logger
	onChange  func(upstream string)
	onUpdated func(upstream, uri string) // notifications/resources/updated

	mu      sync.Mutex
	cli     *client.Client
	fail    func(error)   // ends the current connection, with why
	why     error         // why the last connection was lost
	ready   chan struct{} // closed when a connection is up (replaced on loss)
	status  error
	started bool
	stop    context.CancelFunc
	done    chan struct{}

	relayMu  sync.Mutex
	calls    []*MCPCall          // in flight, oldest first
	progress map[string]*MCPCall // upstream progress token → call

	// version, when set, is the only protocol revision this connection
	// speaks (the legacy twin).
	version string
	// legacy is the 2025-11-25 connection to an mcp upstream for the calls
	// of legacy agents, started at its first such call; nil for a command
	// upstream (always legacy) and for the twin itself.
	legacy *mcpConn
}

func newMCPConn(up Upstream, hc *http.Client, logger *slog.Logger, onChange func(string), onUpdated func(string, string)) *mcpConn {
	m := &mcpConn{
		up: up, client: hc, onChange: onChange, onUpdated: onUpdated,
		logger: logger.With("upstream", up.Name, "kind", up.Kind()),
		status: ErrNotLoaded, ready: make(chan struct{}), progress: map[string]*MCPCall{},
	}
	if up.MCP != "" {
		// The twin only carries calls: the catalogue comes from m, so its
		// connects and list changes relist nothing.
		m.legacy = &mcpConn{
			up: up, client: hc, onChange: func(string) {}, onUpdated: onUpdated, version: legacyStdioVersion,
			logger: m.logger.With("era", legacyStdioVersion),
			status: ErrNotLoaded, ready: make(chan struct{}), progress: map[string]*MCPCall{},
		}
	}
	return m
}

// start runs the connection loop until close.
func (m *mcpConn) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return
	}
	m.started = true
	ctx, cancel := context.WithCancel(context.Background())
	m.stop, m.done = cancel, make(chan struct{})
	go m.run(ctx)
}

// close stops the loop, the connection and any process.
func (m *mcpConn) close() {
	m.mu.Lock()
	stop, done := m.stop, m.done
	m.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if m.legacy != nil {
		m.legacy.close()
	}
}

// Status is nil when connected, else why not.
func (m *mcpConn) Status() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// waitReady waits until the first connection attempt settled (or ctx ends).
// Unless wait, an upstream known to be down fails at once.
func (m *mcpConn) waitReady(ctx context.Context, wait bool) (*client.Client, error) {
	m.mu.Lock()
	cli, ready, st := m.cli, m.ready, m.status
	m.mu.Unlock()
	if cli != nil {
		return cli, nil
	}
	if !wait && st != nil && !errors.Is(st, ErrNotLoaded) {
		return nil, st
	}
	select {
	case <-ready:
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.cli == nil {
			return nil, m.status
		}
		return m.cli, nil
	case <-ctx.Done():
		if st == nil || errors.Is(st, ErrNotLoaded) {
			st = ErrUpstreamDown
		}
		return nil, st
	}
}

func (m *mcpConn) run(ctx context.Context) {
	defer close(m.done)
	backoff := minBackoff
	for {
		started := time.Now()
		cli, lost, fail, cleanup, err := m.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.setDown(fmt.Errorf("connect: %w", err))
			m.logger.Warn("mcp upstream unavailable; retrying", "err", err, "retry_in", backoff)
		} else {
			m.mu.Lock()
			m.cli, m.fail, m.status = cli, fail, nil
			close(m.ready)
			m.mu.Unlock()
			m.logger.Info("mcp upstream connected", "protocol", cli.ProtocolVersion())
			go m.onChange(m.up.Name)
			var why error
			select {
			case <-ctx.Done():
			case <-lost:
			}
			m.mu.Lock()
			why = m.why
			m.cli, m.fail = nil, nil
			m.ready = make(chan struct{})
			m.mu.Unlock()
			cleanup()
			if ctx.Err() != nil {
				m.setDown(errors.New("stopped"))
				return
			}
			m.setDown(fmt.Errorf("connection lost: %w", why))
			m.logger.Warn("mcp upstream connection lost; reconnecting", "err", why, "retry_in", backoff)
			go m.onChange(m.up.Name)
			if time.Since(started) > stableAfter {
				backoff = minBackoff
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (m *mcpConn) setDown(err error) {
	m.mu.Lock()
	m.status = err
	m.mu.Unlock()
}

// connect opens one connection: the transport, the process of a command
// upstream, the MCP handshake (either era) and the change notifications.
// lost is closed when the connection is lost (fail closes it, with why);
// cleanup releases it.
func (m *mcpConn) connect(ctx context.Context) (cli *client.Client, lost chan struct{}, fail func(error), cleanup func(), err error) {
	lost = make(chan struct{})
	var lostOnce sync.Once
	fail = func(why error) {
		lostOnce.Do(func() {
			m.mu.Lock()
			m.why = why
			m.mu.Unlock()
			close(lost)
		})
	}
	var tr transport.Interface
	var proc *exec.Cmd
	var exited <-chan struct{}
	opts := []client.ClientOption{
		client.WithSamplingHandler(relayHandler{m}),
		client.WithElicitationHandler(relayHandler{m}),
		client.WithRootsHandler(relayHandler{m}),
		// A 2026-07-28 upstream's input_required results go back to the
		// agent, whose retry carries the answers (MCPCall.Retry).
		client.WithManualInputRoundTrips(),
	}
	switch {
	case m.up.MCP != "":
		hopts := []transport.StreamableHTTPCOption{
			transport.WithHTTPBasicClient(noRedirects(m.client)),
			transport.WithHTTPHeaderFunc(m.headerFunc),
			transport.WithHTTPMaxMessageBytes(MaxMCPMessageBytes),
			transport.WithHTTPLogger(m.logger),
		}
		if len(m.up.Headers) > 0 {
			hopts = append(hopts, transport.WithHTTPHeaders(m.up.Headers))
		}
		h, err := transport.NewStreamableHTTP(m.up.MCP, hopts...)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		tr = h
	case len(m.up.Command) > 0:
		p, stdio, ex, err := m.spawn(ctx, fail)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		proc, tr, exited = p, stdio, ex
		// Over stdio the session-based revision carries what relaying
		// needs (notifications and requests of a call on the one stream);
		// stdio servers in use speak it.
		opts = append(opts, client.WithProtocolVersion(legacyStdioVersion))
	default:
		return nil, nil, nil, nil, errors.New("neither mcp nor command is set")
	}
	if m.version != "" {
		opts = append(opts, client.WithProtocolVersion(m.version))
	}
	cli = client.NewClient(tr, opts...)
	cleanup = func() {
		_ = cli.Close()
		if proc != nil {
			stopProcess(proc, exited)
		}
	}
	if err := cli.Start(ctx); err != nil {
		cleanup()
		return nil, nil, nil, nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, m.up.Timeout)
	defer cancel()
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "harness-gateway", Version: "1"}
	if _, err := cli.Initialize(ictx, init); err != nil {
		cleanup()
		return nil, nil, nil, nil, fmt.Errorf("initialize: %w", err)
	}
	cli.OnNotification(m.notification)
	cli.OnConnectionLost(func(err error) { fail(fmt.Errorf("connection lost: %w", err)) })
	caps := cli.GetServerCapabilities()
	if caps.Logging != nil {
		// The upstream logs everything to the gateway; each agent's session
		// gets the messages of its own calls at or above its own level
		// (filtered by the gateway), so no agent sets the level for others.
		req := mcp.SetLevelRequest{}
		req.Params.Level = mcp.LoggingLevelDebug
		//lint:ignore SA1019 a legacy upstream learns the level by setLevel; a modern one per request
		if err := cli.SetLevel(ictx, req); err != nil {
			m.logger.Warn("mcp upstream refused logging/setLevel; its default level applies", "err", err)
		}
	}
	if mcp.IsModernProtocol(cli.ProtocolVersion()) {
		filter := mcp.SubscriptionFilter{
			ToolsListChanged:     caps.Tools != nil && caps.Tools.ListChanged,
			ResourcesListChanged: caps.Resources != nil && caps.Resources.ListChanged,
			PromptsListChanged:   caps.Prompts != nil && caps.Prompts.ListChanged,
		}
		if !filter.IsEmpty() {
			// The stream ends only when the connection does.
			lctx, stopListen := context.WithCancel(ctx)
			listening := make(chan struct{})
			go func() {
				defer close(listening)
				err := cli.Listen(lctx, filter)
				if lctx.Err() == nil {
					fail(fmt.Errorf("subscriptions/listen ended: %v", err))
				}
			}()
			prev := cleanup
			cleanup = func() { stopListen(); <-listening; prev() }
		}
	}
	if m.up.MCP != "" {
		// Legacy HTTP sessions have no stream to break when the server
		// goes: a periodic ping notices, as does the next failing call.
		pctx, stopProbe := context.WithCancel(ctx)
		go m.probe(pctx, cli, fail)
		prev := cleanup
		cleanup = func() { stopProbe(); prev() }
	}
	return cli, lost, fail, cleanup, nil
}

func (m *mcpConn) probe(ctx context.Context, cli *client.Client, fail func(error)) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, m.up.Timeout)
		var err error
		if mcp.IsModernProtocol(cli.ProtocolVersion()) {
			_, err = cli.ListToolsByPage(pctx, mcp.ListToolsRequest{})
		} else {
			//lint:ignore SA1019 a legacy session's liveness is only known by ping
			err = cli.Ping(pctx)
		}
		cancel()
		if err != nil && ctx.Err() == nil && isTransportError(err) {
			fail(err)
			return
		}
	}
}

// isTransportError reports an error of the connection (as opposed to a
// JSON-RPC error answer of a live server).
func isTransportError(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) || errors.Is(err, transport.ErrSessionTerminated) || errors.Is(err, transport.ErrTransportClosed)
}

// headerFunc adds the call's identity to every HTTP request of that call.
func (m *mcpConn) headerFunc(ctx context.Context) map[string]string {
	c, _ := ctx.Value(callKey{}).(*MCPCall)
	if c == nil || c.Assertion == "" {
		return nil
	}
	for k := range m.up.Headers {
		if strings.EqualFold(k, "Authorization") {
			return map[string]string{"Harness-Assertion": c.Assertion}
		}
	}
	return map[string]string{"Authorization": "Bearer " + c.Assertion}
}

// spawn starts a command upstream with its stdio as the transport. Its
// stderr goes to the log line by line; a line longer than
// MaxMCPMessageBytes on stdout ends the connection. fail is called when
// the process exits.
func (m *mcpConn) spawn(ctx context.Context, fail func(error)) (*exec.Cmd, *transport.Stdio, <-chan struct{}, error) {
	cmd := exec.Command(m.up.Command[0], m.up.Command[1:]...)
	cmd.Env = os.Environ()
	for k, v := range m.up.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	setProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start %s: %w", m.up.Command[0], err)
	}
	m.logger.Info("mcp upstream process started", "pid", cmd.Process.Pid, "program", m.up.Command[0])
	exited := make(chan struct{})
	var logs sync.WaitGroup
	logs.Go(func() { m.logStderr(stderr) })
	go func() {
		logs.Wait() // stderr read to its end before Wait closes the pipe
		err := cmd.Wait()
		close(exited)
		if err == nil {
			err = errors.New("exit status 0")
		}
		if ctx.Err() == nil {
			m.logger.Warn("mcp upstream process exited", "err", err)
		}
		fail(fmt.Errorf("process exited: %w", err))
	}()
	out := &lineLimit{r: stdout, max: MaxMCPMessageBytes, onExceed: func() {
		fail(fmt.Errorf("a message longer than %d bytes", MaxMCPMessageBytes))
	}}
	return cmd, transport.NewIO(out, stdin, nil), exited, nil
}

func (m *mcpConn) logStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		m.logger.Info("mcp upstream stderr", "line", sc.Text())
	}
	_, _ = io.Copy(io.Discard, r) // a line too long: keep draining
}

// stopProcess ends a command upstream whose stdin the transport closed:
// the process (group) gets SIGTERM, then SIGKILL after a grace period.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	if cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	case <-time.After(500 * time.Millisecond): // stdin closed: time to leave
	}
	terminate(cmd)
	select {
	case <-exited:
	case <-time.After(3 * time.Second):
		kill(cmd)
		<-exited
	}
}

// lineLimit fails a stdio stream whose current line exceeds max bytes.
type lineLimit struct {
	r        io.Reader
	max      int
	n        int
	onExceed func()
}

func (l *lineLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.n = 0
			continue
		}
		l.n++
		if l.n > l.max {
			l.onExceed()
			return 0, fmt.Errorf("mcp upstream: %w: a message longer than %d bytes", ErrTooLarge, l.max)
		}
	}
	return n, err
}

// notification routes a notification of the upstream: list changes to the
// catalogue, progress and log messages to the call they belong to.
func (m *mcpConn) notification(n mcp.JSONRPCNotification) {
	switch n.Method {
	case string(mcp.MethodNotificationToolsListChanged), string(mcp.MethodNotificationResourcesListChanged),
		string(mcp.MethodNotificationPromptsListChanged):
		m.logger.Info("mcp upstream catalogue changed", "notification", n.Method)
		go m.onChange(m.up.Name)
	case string(mcp.MethodNotificationProgress):
		params := n.Params.AdditionalFields
		tok := fmt.Sprint(params["progressToken"])
		m.relayMu.Lock()
		c := m.progress[tok]
		m.relayMu.Unlock()
		if c != nil && c.Notify != nil {
			out := make(map[string]any, len(params))
			for k, v := range params {
				out[k] = v
			}
			out["progressToken"] = c.ProgressToken
			c.Notify(n.Method, out)
		}
	case string(mcp.MethodNotificationResourceUpdated):
		if uri, _ := n.Params.AdditionalFields["uri"].(string); uri != "" && m.onUpdated != nil {
			m.onUpdated(m.up.Name, uri)
		}
	case "notifications/message":
		if c := m.soleCall(); c != nil && c.Notify != nil {
			c.Notify(n.Method, n.Params.AdditionalFields)
		}
	}
}

// begin registers a call in flight for relaying; end forgets it.
func (m *mcpConn) begin(c *MCPCall) (upstreamToken string, end func()) {
	m.relayMu.Lock()
	defer m.relayMu.Unlock()
	m.calls = append(m.calls, c)
	if c.ProgressToken != nil {
		var b [12]byte
		_, _ = rand.Read(b[:])
		upstreamToken = "harness-" + hex.EncodeToString(b[:])
		m.progress[upstreamToken] = c
	}
	return upstreamToken, func() {
		m.relayMu.Lock()
		defer m.relayMu.Unlock()
		for i, x := range m.calls {
			if x == c {
				m.calls = append(m.calls[:i], m.calls[i+1:]...)
				break
			}
		}
		if upstreamToken != "" {
			delete(m.progress, upstreamToken)
		}
	}
}

// soleCall is the one call in flight on this connection, or nil. A stdio
// or legacy upstream's log message or request to its client names no
// call; it is relayed only when exactly one call is in flight, so one
// agent's call can never hand its upstream's messages (or a sampling
// prompt) to another agent's client. With several calls in flight such a
// message is dropped and such a request refused (fail closed).
func (m *mcpConn) soleCall() *MCPCall {
	m.relayMu.Lock()
	defer m.relayMu.Unlock()
	if len(m.calls) != 1 {
		return nil
	}
	return m.calls[0]
}

// relayHandler answers an upstream's requests to its client with the
// call in flight that caused them.
type relayHandler struct{ m *mcpConn }

func (h relayHandler) call(ctx context.Context) (ClientRequests, error) {
	c, _ := ctx.Value(callKey{}).(*MCPCall)
	if c == nil {
		c = h.m.soleCall()
	}
	if c == nil || c.Requests == nil {
		return nil, errors.New("no single call in flight whose client could answer (requests that name no call are relayed only while exactly one call is in flight)")
	}
	return c.Requests, nil
}

func (h relayHandler) CreateMessage(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	r, err := h.call(ctx)
	if err != nil {
		return nil, err
	}
	return r.CreateMessage(ctx, req)
}

func (h relayHandler) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	r, err := h.call(ctx)
	if err != nil {
		return nil, err
	}
	return r.Elicit(ctx, req)
}

func (h relayHandler) ListRoots(ctx context.Context, req mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	r, err := h.call(ctx)
	if err != nil {
		return nil, err
	}
	return r.ListRoots(ctx, req)
}

// do runs one request of a call on the current connection, with the
// upstream's timeout and the call's identity. A session the upstream no
// longer knows (it restarted) is reconnected and the request sent once
// more: the upstream never saw the first.
func (m *mcpConn) do(ctx context.Context, c *MCPCall, f func(context.Context, *client.Client, string) error) error {
	if c == nil {
		c = &MCPCall{}
	}
	if c.Legacy && m.legacy != nil {
		m.legacy.start()
		return m.legacy.do(ctx, c, f)
	}
	ctx, cancel := context.WithTimeout(ctx, m.up.Timeout)
	defer cancel()
	ctx = context.WithValue(ctx, callKey{}, c)
	if c.ClientCapabilities != nil {
		ctx = client.WithRequestClientCapabilities(ctx, *c.ClientCapabilities)
	}
	// Every call is registered, even one with nothing to relay: soleCall
	// must see all calls in flight, or a message of this call that names
	// no call would reach another agent's client.
	tok, end := m.begin(c)
	defer end()
	for attempt := 0; ; attempt++ {
		cli, err := m.waitReady(ctx, attempt > 0)
		if err != nil {
			return fmt.Errorf("upstream %q: %w", m.up.Name, err)
		}
		err = f(ctx, cli, tok)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("upstream %q: %w", m.up.Name, ctx.Err())
		}
		if isTransportError(err) {
			m.mu.Lock()
			fail := m.fail
			if m.cli != cli {
				fail = nil
			}
			m.mu.Unlock()
			if fail != nil {
				fail(err)
			}
			if errors.Is(err, transport.ErrSessionTerminated) && attempt == 0 {
				continue
			}
		}
		return fmt.Errorf("upstream %q: %w", m.up.Name, err)
	}
}

// meta is the _meta of a request of call c: the progress token the
// upstream uses for it and, for a command upstream, the assertion.
func (m *mcpConn) meta(c *MCPCall, tok string) *mcp.Meta {
	var meta *mcp.Meta
	if tok != "" {
		meta = &mcp.Meta{ProgressToken: tok}
	}
	if c != nil && c.Assertion != "" && len(m.up.Command) > 0 {
		if meta == nil {
			meta = &mcp.Meta{}
		}
		meta.AdditionalFields = map[string]any{AssertionMeta: c.Assertion}
	}
	return meta
}
