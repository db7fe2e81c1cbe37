package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The floor: a minimal MCP→HTTP translator with no security at all (no
// authentication, policy, limits, redaction, audit or telemetry). It answers
// tools/call with one GET to the upstream, the body wrapped as text content,
// over streamable HTTP in both eras (server/discover for the modern one,
// initialize for the legacy one). For the benchmark only: it is what any MCP
// gateway has to do at the least, so Harness is measured against it.

// floorEnv names the upstream URL when the bench binary runs as the floor.
const floorEnv = "HARNESS_BENCH_FLOOR_UPSTREAM"

type floorReq struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		ProtocolVersion string            `json:"protocolVersion"`
		Name            string            `json:"name"`
		Arguments       map[string]string `json:"arguments"`
	} `json:"params"`
}

type floorContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// floorHandler is the translator's /mcp endpoint.
func floorHandler(upstreamURL string, c *http.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var req floorReq
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		if len(req.ID) == 0 { // a notification
			w.WriteHeader(http.StatusAccepted)
			return
		}
		out := map[string]any{"jsonrpc": "2.0", "id": req.ID}
		switch req.Method {
		case "server/discover":
			out["result"] = map[string]any{"supportedVersions": []string{r.Header.Get("Mcp-Protocol-Version")},
				"capabilities": map[string]any{"tools": map[string]any{}}}
		case "initialize":
			out["result"] = map[string]any{"protocolVersion": req.Params.ProtocolVersion,
				"capabilities": map[string]any{"tools": map[string]any{}},
				"serverInfo":   map[string]string{"name": "floor", "version": "1"}}
		case "tools/call":
			text, isErr := floorCall(r, c, upstreamURL, req.Params.Arguments["customer_id"])
			out["result"] = map[string]any{"content": []floorContent{{"text", text}}, "isError": isErr}
		default:
			out["error"] = map[string]any{"code": -32601, "message": "method not found"}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// floorCall makes the one GET; an upstream failure is a tool error.
func floorCall(r *http.Request, c *http.Client, upstreamURL, id string) (string, bool) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, upstreamURL+"/customers/"+url.PathEscape(id), nil)
	if err != nil {
		return err.Error(), true
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err.Error(), true
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error(), true
	}
	return string(b), resp.StatusCode != http.StatusOK
}

// serveFloor runs the floor on a free loopback port and prints its URL as
// the first line of stdout (the bench re-executes itself for this, so that
// the floor's CPU is its own process's).
func serveFloor(upstreamURL string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	mux := http.NewServeMux()
	mux.Handle("/", floorHandler(upstreamURL, &http.Client{Transport: tr}))
	fmt.Printf("http://%s\n", ln.Addr())
	return (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
}

// floorProc is the floor's running process.
type floorProc struct {
	cmd *exec.Cmd
	url string
}

func (f *floorProc) pid() int { return f.cmd.Process.Pid }

func (f *floorProc) stop() {
	_ = f.cmd.Process.Kill()
	_ = f.cmd.Wait()
}

// startFloor re-executes this binary as the floor in front of upstreamURL.
func startFloor(upstreamURL string) (*floorProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), floorEnv+"="+upstreamURL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &floorProc{cmd: cmd}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		f.stop()
		return nil, errors.Join(errors.New("the floor did not start"), err)
	}
	f.url = strings.TrimSpace(line)
	return f, nil
}
