package npmtest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNode22 checks that test-deps installed the pinned Node 22, which the
// conformance suite and the MCP Inspector CLI need.
func TestNode22(t *testing.T) {
	out, err := exec.Command(Node(t), "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	if v := strings.TrimSpace(string(out)); !strings.HasPrefix(v, "v22.") {
		t.Fatalf("pinned node is %s, want v22.x", v)
	}
}

// TestEnvPutsNodeFirst checks that scripts run by the tests resolve `node`
// to the pinned Node 22.
func TestEnvPutsNodeFirst(t *testing.T) {
	cmd := exec.Command("sh", "-c", "node --version")
	cmd.Env = Env(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node via PATH: %v", err)
	}
	if v := strings.TrimSpace(string(out)); !strings.HasPrefix(v, "v22.") {
		t.Fatalf("node on PATH is %s, want v22.x", v)
	}
}
