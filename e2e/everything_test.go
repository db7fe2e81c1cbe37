package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/npmtest"
)

// everythingPolicy allows every federated call but the server's
// environment dump, which stays invisible and refused.
const everythingPolicy = `package harness

decision := {"allow": false, "reason": "environment dumps are not for agents"} if {
	input.tool.operation == "get-env"
} else := {"allow": true, "reason": "allowed"}
`

// TestFederationServerEverything fronts a real third-party MCP server from
// npm, @modelcontextprotocol/server-everything, twice: over streamable
// HTTP (an `mcp` upstream) and as a stdio process the gateway supervises
// (a `command` upstream), both under the pinned Node 22. An agent in
// either era lists and calls both; a denied tool is invisible and refused.
func TestFederationServerEverything(t *testing.T) {
	node := npmtest.Node(t)
	index := filepath.Join(npmtest.Modules(t), "@modelcontextprotocol", "server-everything", "dist", "index.js")
	if _, err := os.Stat(index); err != nil {
		t.Fatalf("server-everything is not installed: %v", err)
	}
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(node, index, "streamableHttp")
	cmd.Env = append(npmtest.Env(t), "PORT="+port)
	proc := startProcess(t, "server-everything", cmd)
	waitListening(t, addr, 30*time.Second, proc.logs.String)

	iss := startIssuer(t)
	polDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(polDir, "policy.rego"), []byte(everythingPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	// The same server twice would serve the same resource URIs, which is
	// a startup error by contract; so one gateway per kind.
	for _, kind := range []struct{ name, upstream string }{
		{"mcp", fmt.Sprintf("mcp: \"http://%s/mcp\"", addr)},
		{"command", fmt.Sprintf("command: [%q, %q, stdio]", node, index)},
	} {
		t.Run(kind.name, func(t *testing.T) {
			gw := startGateway(t, fmt.Sprintf(`listen: "{{LISTEN}}"
public_url: "http://{{LISTEN}}"
auth:
  issuers:
    - issuer: %q
policy:
  dir: %q
upstreams:
  - name: ev
    %s
    timeout: 20s
audit:
  path: "{{DIR}}/audit.log"
`, iss.URL(), polDir, kind.upstream))
			tok := mint(t, iss, gw.URL, map[string]any{"sub": "alice", "roles": []string{"support"}})
			for _, e := range eras {
				c := connect(t, gw.URL, tok, e)
				names := listNames(t, c)
				for _, want := range []string{"ev_echo", "ev_get-sum", "ev_get-tiny-image"} {
					if !slices.Contains(names, want) {
						t.Errorf("%s: tools/list lacks %s: %v", e.name, want, names)
					}
				}
				if slices.Contains(names, "ev_get-env") {
					t.Errorf("%s: the denied tool is listed", e.name)
				}
				if got := resultText(callTool(t, c, "ev_echo", map[string]any{"message": "hi from " + e.name})); got != "Echo: hi from "+e.name {
					t.Errorf("%s: ev_echo = %q", e.name, got)
				}
				if got := resultText(callTool(t, c, "ev_get-sum", map[string]any{"a": 2, "b": 3})); !strings.Contains(got, "is 5") {
					t.Errorf("%s: ev_get-sum = %q", e.name, got)
				}
				if res := callTool(t, c, "ev_get-env", nil); !res.IsError || !strings.HasPrefix(resultText(res), "denied:") {
					t.Errorf("%s: ev_get-env was not refused: %q", e.name, resultText(res))
				}
				img := callTool(t, c, "ev_get-tiny-image", nil)
				hasImage := false
				for _, ct := range img.Content {
					if ic, ok := ct.(mcp.ImageContent); ok && ic.MIMEType == "image/png" && ic.Data != "" {
						hasImage = true
					}
				}
				if img.IsError || !hasImage {
					t.Errorf("%s: get-tiny-image lost its image content: %+v", e.name, img.Content)
				}
			}
			// Every call is in the trail with its decision: per era echo,
			// get-sum and the image allowed, get-env denied.
			counts := map[string]int{}
			for _, l := range audCalls(audWaitCalls(t, gw.AuditPath, 8)) {
				counts[l.str("upstream")+" "+l.str("decision")]++
			}
			if counts["ev allow"] != 6 || counts["ev deny"] != 2 {
				t.Errorf("audit records by upstream and decision: %v, want 6 allowed and 2 denied", counts)
			}
		})
	}
}

// waitListening waits until something accepts TCP connections on addr.
func waitListening(t testing.TB, addr string, d time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen within %s: %v\n%s", addr, d, err, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
