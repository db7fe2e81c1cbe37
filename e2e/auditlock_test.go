package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditFileLock: a second gateway on the same audit file exits with a
// clear message, and one that cannot bind its port exits before touching
// the file; either way the running gateway's chain is untouched and still
// verifies.
func TestAuditFileLock(t *testing.T) {
	iss := startIssuer(t)
	cfg := fmt.Sprintf("listen: {{LISTEN}}\nauth:\n  issuers:\n    - issuer: %s\naudit:\n  path: {{DIR}}/audit.log\n  fsync: always\n", iss.URL())
	first := startGateway(t, cfg)
	before := readFile(t, first.AuditPath)
	listen := strings.TrimPrefix(first.URL, "http://")

	second := func(name, addr string) string {
		t.Helper()
		c := strings.ReplaceAll(strings.ReplaceAll(cfg, "{{LISTEN}}", addr), "{{DIR}}", first.Dir)
		path := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(path, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, gatewayBin, "serve", "--config", path).CombinedOutput()
		if err == nil {
			t.Fatalf("%s: a second gateway on the same audit file started:\n%s", name, out)
		}
		return string(out)
	}

	out := second("same-file", freeAddr(t))
	if !strings.Contains(out, "audit") || !strings.Contains(out, "locked by another process") {
		t.Errorf("second gateway's message does not say the audit file is in use:\n%s", out)
	}
	out = second("same-port", listen)
	if !strings.Contains(out, "listen on "+listen) {
		t.Errorf("second gateway's message does not name the port:\n%s", out)
	}
	if after := readFile(t, first.AuditPath); after != before {
		t.Errorf("the audit file changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	first.stop()
	if out, code := audRunGateway(t, "audit", "verify", first.AuditPath); code != 0 {
		t.Errorf("verify after the refused starts: exit %d\n%s", code, out)
	}
}
