package environments

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentharness/harness/internal/audit"
	"github.com/agentharness/harness/internal/authn"
	"github.com/agentharness/harness/internal/devissuer"
)

const (
	testRepo   = "acme/crm"
	testSecret = "0123456789abcdef-webhook"
	publicURL  = "https://gw.example.com"
)

// clock is a manually advanced clock for expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// hostEvent is one call a fakeHost received.
type hostEvent struct {
	op   string // open or retire
	name string
}

// fakeHost stands for internal/app's adapter of the server (the Host
// seam): it records what it was asked to serve.
type fakeHost struct {
	mu      sync.Mutex
	serving map[string]*Env
	events  chan hostEvent
	fail    bool
}

func newHost() *fakeHost {
	return &fakeHost{serving: map[string]*Env{}, events: make(chan hostEvent, 1000)}
}

func (h *fakeHost) Open(_ context.Context, e *Env) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail {
		return io.ErrUnexpectedEOF
	}
	h.serving[e.Name] = e
	h.events <- hostEvent{"open", e.Name}
	return nil
}

func (h *fakeHost) Retire(_ context.Context, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.serving, name)
	h.events <- hostEvent{"retire", name}
}

func (h *fakeHost) served(name string) *Env {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.serving[name]
}

// drain forgets the events received so far.
func (h *fakeHost) drain() {
	for {
		select {
		case <-h.events:
		default:
			return
		}
	}
}

// waitFor waits for the host's event (a hang is a failure, not a
// threshold).
func (h *fakeHost) waitFor(t *testing.T, op, name string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-h.events:
			if ev.op == op && ev.name == name {
				return
			}
		case <-deadline:
			t.Fatalf("the host was never asked to %s %s", op, name)
		}
	}
}

// records collects audit records; while failing is set, Write fails as a
// full disk would (the way internal/server's tests simulate it).
type records struct {
	mu      sync.Mutex
	all     []*audit.Record
	failing atomic.Bool
}

// errAuditDown is the failing audit trail's error.
var errAuditDown = errors.New("write audit.log: no space left on device")

func (r *records) Write(_ context.Context, rec *audit.Record) error {
	if r.failing.Load() {
		return errAuditDown
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var cp audit.Record
	_ = json.Unmarshal(b, &cp)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, &cp)
	return nil
}

func (r *records) find(action, name string) []*audit.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*audit.Record
	for _, rec := range r.all {
		if rec.Kind == audit.KindEnvironment && rec.Action == action && rec.Preview != nil && rec.Preview.Name == name {
			out = append(out, rec)
		}
	}
	return out
}

func (r *records) json(t *testing.T) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := json.Marshal(r.all)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// world is a CI issuer, a human issuer and what a manager needs.
type world struct {
	ci, idp *devissuer.Issuer
	humans  *authn.Authenticator
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	for _, p := range []**devissuer.Issuer{&w.ci, &w.idp} {
		iss, err := devissuer.New(devissuer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := iss.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = iss.Close() })
		*p = iss
	}
	a, err := authn.New(context.Background(), authn.Config{Issuers: []authn.IssuerConfig{{Issuer: w.idp.URL(), Audiences: []string{publicURL}}}})
	if err != nil {
		t.Fatal(err)
	}
	w.humans = a
	return w
}

// ciToken is a GitHub-Actions-shaped token.
func (w *world) ciToken(t testing.TB, repo string, pr int, extra map[string]any) string {
	t.Helper()
	claims := map[string]any{
		"sub": "repo:" + repo + ":pull_request", "aud": publicURL, "repository": repo, "actor": "alice",
		"ref": "refs/pull/" + itoa(pr) + "/merge", "event_name": "pull_request",
		"job_workflow_ref": repo + "/.github/workflows/preview.yml@refs/pull/" + itoa(pr) + "/merge",
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok, err := w.ci.Mint(claims, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// humanToken is a human's token with roles.
func (w *world) humanToken(t testing.TB, sub string, roles ...string) string {
	t.Helper()
	tok, err := w.idp.Mint(map[string]any{"sub": sub, "aud": publicURL, "roles": roles, "azp": "cli", "email": sub + "@acme.test"}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// options are a manager's options in w, on st, with host and rec.
func (w *world) options(st Store, host Host, rec Auditor, clk *clock) Options {
	pats, _ := ParsePatterns([]string{"https://*.preview.acme.internal", "http://127.0.0.1:*"})
	return Options{
		PublicURL:        publicURL,
		CIIssuers:        []CIIssuer{{Issuer: w.ci.URL(), Audiences: []string{publicURL}, Claims: map[string]string{"repository": testRepo, "event_name": "pull_request"}}},
		AdminRoles:       []string{"platform-admin"},
		Humans:           w.humans,
		AllowedUpstreams: pats,
		WebhookSecret:    testSecret,
		DefaultTTL:       24 * time.Hour, MaxTTL: 168 * time.Hour, Max: 3,
		Store: st, Host: host, Audit: rec,
		Now: clk.Now, SweepEvery: 5 * time.Millisecond,
	}
}

// start runs a manager and an httptest server of its routes.
func start(t *testing.T, o Options) (*Manager, *httptest.Server) {
	t.Helper()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	t.Cleanup(m.Stop)
	mux := http.NewServeMux()
	for p, h := range m.Routes() {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return m, srv
}

// call sends a request and decodes the JSON answer.
func call(t *testing.T, method, url, token string, body []byte, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %q", method, url, b)
		}
	}
	return resp.StatusCode, out
}

// body is a PUT body for pr with the branch upstream at url.
func body(t testing.TB, pr int, url string, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{
		"branch": "feat-x", "pull_request": pr, "repository": testRepo, "owner": "alice", "ttl": "2h",
		"upstreams": map[string]any{"crm": map[string]any{"base_url": url, "openapi": url + "/openapi.json"}},
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bundleB64 is a base64 OPA bundle of files.
func bundleB64(t testing.TB, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(content))
	}
	_ = tw.Close()
	_ = zw.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func contains(m map[string]any, key, sub string) bool {
	s, _ := m[key].(string)
	return strings.Contains(s, sub)
}

// sign is the X-Hub-Signature-256 of body.
func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
