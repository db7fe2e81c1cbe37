package app

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/agentharness/harness/internal/config"
)

func TestRedactURL(t *testing.T) {
	got := RedactURL("redis://user:s3cret@redis:6379/0")
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "redis:6379") {
		t.Errorf("RedactURL = %q", got)
	}
	if got := RedactURL("://"); got != "(unparsable)" {
		t.Errorf("RedactURL(garbage) = %q", got)
	}
}

// TestBuildFailsCleanly: what cannot work stops the build with a clear
// error (never a panic), and what can be retried does not.
func TestBuildFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	parse := func(yaml string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(yaml), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := slog.New(slog.DiscardHandler)
	base := "auth: {issuers: [{issuer: https://idp.invalid}]}\n"

	// An unwritable audit path is fatal.
	_, err := Build(context.Background(), parse(base+"audit: {path: "+filepath.Join(dir, "missing", "dir", "audit.log")+"}\n"), log, "test")
	if err == nil || !strings.Contains(err.Error(), "audit") {
		t.Errorf("unwritable audit: %v", err)
	}
	// An unreachable upstream and IdP are not: the gateway starts and
	// /readyz says what is wrong.
	a, err := Build(context.Background(), parse(base+"audit: {path: "+filepath.Join(dir, "audit.log")+"}\nupstreams: [{name: crm, base_url: http://127.0.0.1:1, openapi: http://127.0.0.1:1/openapi.json}]\nserver: {admin_token: admin-token-0123456789}\n"), log, "test")
	if err != nil {
		t.Fatalf("unreachable upstream stopped the build: %v", err)
	}
	defer a.Close(context.Background())
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	req.Header.Set("Authorization", "Bearer admin-token-0123456789")
	a.Server.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "upstream:crm") {
		t.Errorf("readyz = %d %s", rec.Code, rec.Body.String())
	}
}

// TestLogComponentsOnce: every log line names its component once (the
// packages that add their own component are handed the plain logger).
func TestLogComponentsOnce(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte("auth: {issuers: [{issuer: https://idp.invalid}]}\naudit: {path: "+filepath.Join(dir, "audit.log")+"}\n"+
		"upstreams: [{name: crm, base_url: http://127.0.0.1:1, openapi: http://127.0.0.1:1/openapi.json}]\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var buf lockedBuffer // the gateway's background loops log while the test reads
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := Build(context.Background(), cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	seen := map[string]bool{}
	for _, line := range strings.Split(buf.String(), "\n") {
		if n := strings.Count(line, "component="); n > 1 {
			t.Errorf("component named %d times: %s", n, line)
		}
		if _, c, ok := strings.Cut(line, "component="); ok {
			seen[strings.Fields(c)[0]] = true
		}
	}
	for _, c := range []string{"tools", "keys"} {
		if !seen[c] {
			t.Errorf("no log line of %s (the test would prove nothing):\n%s", c, buf.String())
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
