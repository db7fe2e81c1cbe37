package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// recorded is one request the fake API saw.
type recorded struct {
	Method, Path, Auth, ContentType, UserAgent string
	Body                                       map[string]any
}

// envAPI is an httptest stand-in for the gateway's environments API: it
// records every request and answers with the status and body given.
type envAPI struct {
	*httptest.Server
	mu     sync.Mutex
	seen   []recorded
	status int
	answer string
}

func newEnvAPI(t *testing.T, status int, answer string) *envAPI {
	t.Helper()
	a := &envAPI{status: status, answer: answer}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		rec := recorded{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), UserAgent: r.Header.Get("User-Agent")}
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &rec.Body); err != nil {
				t.Errorf("request body is not JSON: %v: %s", err, raw)
			}
		}
		a.mu.Lock()
		a.seen = append(a.seen, rec)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.answer)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *envAPI) requests() []recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]recorded(nil), a.seen...)
}

const testCIToken = "eyJhbGciOiJFUzI1NiJ9.ci-token.sig"

func tokenFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("\n  "+testCIToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runEnv(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = run(context.Background(), append([]string{"env"}, args...), &o, &e)
	return o.String(), e.String(), err
}

func exitCode(err error) int {
	var ee exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

const createdAnswer = `{"name":"pr-42","mcp_url":"https://harness.example.com/env/pr-42/mcp","resource":"https://harness.example.com/env/pr-42/mcp","expires_at":"2026-12-07T16:00:00Z"}`

// TestEnvCreateRequest: create sends exactly the contract's PUT, with the
// trimmed token as bearer, and prints the MCP URL alone on stdout.
func TestEnvCreateRequest(t *testing.T) {
	api := newEnvAPI(t, http.StatusCreated, createdAnswer)
	out, errOut, err := runEnv("create", "pr-42", "--url", api.URL+"/", "--token-file", tokenFile(t),
		"--branch", "feat-x", "--pr", "42", "--repository", "acme/crm", "--owner", "alice", "--ttl", "24h",
		"--upstream", "crm=https://crm.pr-42.preview.acme.internal,openapi=https://crm.pr-42.preview.acme.internal/openapi.json",
		"--upstream", "docs=mcp:https://docs.pr-42.preview.acme.internal/mcp")
	if err != nil {
		t.Fatalf("err = %v\n%s", err, errOut)
	}
	if out != "https://harness.example.com/env/pr-42/mcp\n" {
		t.Errorf("stdout = %q, want the MCP URL alone", out)
	}
	for _, want := range []string{"environment pr-42 created", "expires_at 2026-12-07T16:00:00Z", "gateway env retire pr-42"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(out+errOut, testCIToken) {
		t.Error("the token was printed")
	}
	want := []recorded{{
		Method: "PUT", Path: "/environments/pr-42", Auth: "Bearer " + testCIToken, ContentType: "application/json", UserAgent: "harness-gateway/dev",
		Body: map[string]any{
			"branch": "feat-x", "pull_request": float64(42), "repository": "acme/crm", "owner": "alice", "ttl": "24h",
			"upstreams": map[string]any{
				"crm":  map[string]any{"base_url": "https://crm.pr-42.preview.acme.internal", "openapi": "https://crm.pr-42.preview.acme.internal/openapi.json"},
				"docs": map[string]any{"mcp": "https://docs.pr-42.preview.acme.internal/mcp"},
			},
		},
	}}
	if diff := diffJSON(want, api.requests()); diff != "" {
		t.Errorf("requests (want, got):\n%s", diff)
	}
}

// TestEnvCreateEnvFallbacksAndJSON: HARNESS_URL and HARNESS_TOKEN_FILE stand
// in for the flags; --json prints the answer; a 200 is an update.
func TestEnvCreateEnvFallbacksAndJSON(t *testing.T) {
	api := newEnvAPI(t, http.StatusOK, createdAnswer)
	t.Setenv(envURLVar, api.URL)
	t.Setenv(envTokenFileVar, tokenFile(t))
	out, _, err := runEnv("create", "--upstream", "crm=https://crm.example", "pr-42", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got envInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.MCPURL != "https://harness.example.com/env/pr-42/mcp" {
		t.Errorf("--json output = %q (%v)", out, err)
	}
	reqs := api.requests()
	if len(reqs) != 1 || reqs[0].Auth != "Bearer "+testCIToken {
		t.Fatalf("requests = %+v", reqs)
	}
	// Only what was given is sent; the OpenAPI document defaults to URL/openapi.json.
	wantBody := map[string]any{"upstreams": map[string]any{"crm": map[string]any{"base_url": "https://crm.example", "openapi": "https://crm.example/openapi.json"}}}
	if diff := diffJSON(wantBody, reqs[0].Body); diff != "" {
		t.Errorf("body (want, got):\n%s", diff)
	}

	_, errOut, err := runEnv("create", "pr-42", "--upstream", "crm=https://crm.example")
	if err != nil || !strings.Contains(errOut, "environment pr-42 updated") {
		t.Errorf("200 answer: err = %v, stderr = %q, want \"updated\"", err, errOut)
	}
}

// TestEnvRefusals: the API's error JSON becomes a clear message and exit 1;
// a server failure, a redirect or no server is exit 2.
func TestEnvRefusals(t *testing.T) {
	tok := tokenFile(t)
	for _, tc := range []struct {
		name     string
		status   int
		answer   string
		wantCode int
		want     []string
	}{
		{"wrong repository", 403, `{"error":"forbidden","error_description":"claim repository \"evil/crm\" does not match \"acme/crm\""}`, 1,
			[]string{"refused (403 Forbidden)", `claim repository "evil/crm" does not match`, "ci_issuers"}},
		{"no token", 401, `{"error":"invalid_token","error_description":"token expired"}`, 1, []string{"401", "invalid_token: token expired"}},
		{"broken bundle", 400, `{"error":"invalid_request","error_description":"policy bundle: policy/harness.rego:7: rego_parse_error: unexpected }"}`, 1,
			[]string{"policy/harness.rego:7"}},
		{"limit", 409, `{"error":"conflict","error_description":"environments.max (50) reached"}`, 1, []string{"environments.max (50) reached"}},
		{"too large", 413, `request body too large`, 1, []string{"413", "request body too large", "policy bundle"}},
		{"server failure", 500, `{"error":"server_error","error_description":"store unavailable"}`, 2, []string{"the gateway failed (500", "store unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newEnvAPI(t, tc.status, tc.answer)
			out, errOut, err := runEnv("create", "pr-1", "--url", api.URL, "--token-file", tok, "--upstream", "crm=https://x.example")
			if got := exitCode(err); got != tc.wantCode {
				t.Errorf("exit code = %d, want %d (err %v)", got, tc.wantCode, err)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing on a refusal", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
	t.Run("no server", func(t *testing.T) {
		_, errOut, err := runEnv("list", "--url", "http://127.0.0.1:1", "--token-file", tok)
		if exitCode(err) != 2 || !strings.Contains(errOut, "GET http://127.0.0.1:1/environments") {
			t.Errorf("exit %d, stderr %q", exitCode(err), errOut)
		}
	})
}

// TestEnvTokenGuards: the token goes only to https or loopback, never along
// a redirect, and never from an empty file.
func TestEnvTokenGuards(t *testing.T) {
	tok := tokenFile(t)
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
	}))
	t.Cleanup(elsewhere.Close)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)

	for _, tc := range []struct {
		name, url, tokenFile, want string
		code                       int
	}{
		{"plain http elsewhere", "http://harness.example.com", tok, "only over https", 2},
		{"plain http to a name that looks loopback", "http://127.0.0.1.attacker.example", tok, "only over https", 2},
		{"not http", "ftp://harness.example.com", tok, "not an http(s) URL", 2},
		{"credentials in url", "https://u:hunter2@harness.example.com", tok, "not an http(s) URL", 2},
		{"redirect", redirect.URL, tok, "redirects are not followed", 2},
		{"empty token", redirect.URL, empty, "is empty", 2},
		{"missing token file", redirect.URL, filepath.Join(t.TempDir(), "nope"), "reading the token", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := runEnv("list", "--url", tc.url, "--token-file", tc.tokenFile)
			if exitCode(err) != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d naming %q", exitCode(err), errOut, tc.code, tc.want)
			}
			if strings.Contains(errOut, "hunter2") {
				t.Errorf("stderr %q shows the URL's password", errOut)
			}
		})
	}
	if leaked.Load() {
		t.Error("the token followed a redirect")
	}
}

// TestEnvUsage: bad input is exit 2 with a clear message before anything is sent.
func TestEnvUsage(t *testing.T) {
	api := newEnvAPI(t, 201, createdAnswer)
	tok := tokenFile(t)
	base := []string{"--url", api.URL, "--token-file", tok}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "create NAME"},
		{"unknown subcommand", []string{"destroy"}, `unknown subcommand "destroy"`},
		{"no name", append([]string{"create", "--upstream", "crm=https://x.example"}, base...), "name exactly one environment"},
		{"two names", append([]string{"create", "a", "b", "--upstream", "crm=https://x.example"}, base...), "got 2 arguments"},
		{"bad name", append([]string{"create", "PR_42", "--upstream", "crm=https://x.example"}, base...), "1 to 40 of a-z"},
		{"reserved name", append([]string{"retire", "default"}, base...), "reserved"},
		{"no upstream", append([]string{"create", "pr-1"}, base...), "at least one --upstream"},
		{"upstream without url", append([]string{"create", "pr-1", "--upstream", "crm"}, base...), "want NAME=URL"},
		{"upstream not http", append([]string{"create", "pr-1", "--upstream", "crm=file:///etc/passwd"}, base...), "not an absolute http(s) URL"},
		{"mcp upstream not http", append([]string{"create", "pr-1", "--upstream", "d=mcp:ws://x"}, base...), "not an absolute http(s) URL"},
		{"duplicate upstream", append([]string{"create", "pr-1", "--upstream", "crm=https://a.example", "--upstream", "crm=https://b.example"}, base...), "given twice"},
		{"bad ttl", append([]string{"create", "pr-1", "--upstream", "crm=https://x.example", "--ttl", "1 day"}, base...), "--ttl"},
		{"negative pr", append([]string{"create", "pr-1", "--upstream", "crm=https://x.example", "--pr", "-3"}, base...), "--pr -3"},
		{"missing bundle", append([]string{"create", "pr-1", "--upstream", "crm=https://x.example", "--policy-bundle", "/nonexistent.tar.gz"}, base...), "--policy-bundle"},
		{"no url", []string{"list", "--token-file", tok}, "--url GATEWAY (or $HARNESS_URL)"},
		{"no token file", []string{"list", "--url", api.URL}, "--token-file F (or $HARNESS_TOKEN_FILE)"},
		{"list with argument", append([]string{"list", "x"}, base...), `unexpected argument "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envURLVar, "")
			t.Setenv(envTokenFileVar, "")
			out, errOut, err := runEnv(tc.args...)
			if exitCode(err) != 2 {
				t.Errorf("exit code %d (err %v), want 2", exitCode(err), err)
			}
			if !strings.Contains(out+errOut, tc.want) {
				t.Errorf("output lacks %q:\n%s%s", tc.want, out, errOut)
			}
		})
	}
	if n := len(api.requests()); n != 0 {
		t.Errorf("%d request(s) sent for bad input", n)
	}
	for _, sub := range []string{"create", "list", "retire"} {
		_, errOut, err := runEnv(sub, "--help")
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut, "Usage: gateway env "+sub) || !strings.Contains(errOut, "-token-file") {
			t.Errorf("%s --help: err %v, output %q", sub, err, errOut)
		}
	}
}

// TestEnvListAndRetire: list GETs /environments and prints a table; retire
// DELETEs; a 404 is a refusal unless --missing-ok.
func TestEnvListAndRetire(t *testing.T) {
	tok := tokenFile(t)
	api := newEnvAPI(t, 200, `{"environments":[
		{"name":"pr-7","mcp_url":"https://h.example/env/pr-7/mcp","expires_at":"2026-12-08T00:00:00Z","branch":"fix\tbug","pull_request":7,"repository":"acme/crm","owner":"bob","created_by":"bob","created_at":"2026-12-06T00:00:00Z"},
		{"name":"pr-42","mcp_url":"https://h.example/env/pr-42/mcp","expires_at":"2026-12-07T00:00:00Z","branch":"feat-x","pull_request":42,"repository":"acme/crm","owner":"alice","created_by":"alice","created_at":"2026-12-06T00:00:00Z"}]}`)
	out, _, err := runEnv("list", "--url", api.URL, "--token-file", tok)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "pr-42 ") || !strings.HasPrefix(lines[2], "pr-7 ") {
		t.Fatalf("table:\n%s", out)
	}
	for _, w := range []string{"acme/crm", "42", "feat-x", "alice", "https://h.example/env/pr-42/mcp"} {
		if !strings.Contains(lines[1], w) {
			t.Errorf("row lacks %q: %s", w, lines[1])
		}
	}
	if !strings.Contains(lines[2], "fix bug") {
		t.Errorf("a tab in a cell was not neutralised: %q", lines[2])
	}
	if r := api.requests(); len(r) != 1 || r[0].Method != "GET" || r[0].Path != "/environments" || r[0].Auth != "Bearer "+testCIToken || r[0].Body != nil {
		t.Errorf("requests = %+v", r)
	}

	gone := newEnvAPI(t, 200, `{"name":"pr-42","retired":true}`)
	out, _, err = runEnv("retire", "pr-42", "--url", gone.URL, "--token-file", tok)
	if err != nil || out != "environment pr-42 retired\n" {
		t.Errorf("retire: err %v, stdout %q", err, out)
	}
	if r := gone.requests(); len(r) != 1 || r[0].Method != "DELETE" || r[0].Path != "/environments/pr-42" || r[0].Auth != "Bearer "+testCIToken {
		t.Errorf("requests = %+v", r)
	}

	unknown := newEnvAPI(t, 404, `{"error":"not_found","error_description":"no environment pr-9"}`)
	_, errOut, err := runEnv("retire", "pr-9", "--url", unknown.URL, "--token-file", tok)
	if exitCode(err) != 1 || !strings.Contains(errOut, "no environment pr-9") {
		t.Errorf("404: exit %d, stderr %q", exitCode(err), errOut)
	}
	_, _, err = runEnv("retire", "pr-9", "--missing-ok", "--url", unknown.URL, "--token-file", tok)
	if err != nil {
		t.Errorf("404 with --missing-ok: %v", err)
	}
}

// TestEnvPolicyBundle: a .tar.gz is sent as it is (base64); a directory is
// built into an OPA bundle that OPA's reader loads back, without tests and
// testdata; a file that is not gzip is refused before anything is sent.
func TestEnvPolicyBundle(t *testing.T) {
	tok := tokenFile(t)
	api := newEnvAPI(t, 201, createdAnswer)
	create := func(bundlePath string) (string, error) {
		_, errOut, err := runEnv("create", "pr-1", "--url", api.URL, "--token-file", tok, "--upstream", "crm=https://x.example", "--policy-bundle", bundlePath)
		return errOut, err
	}

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "testdata"), 0o755)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "harness.rego"), []byte("package harness\n\ndecision := {\"allow\": true}\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "harness_test.rego"), []byte("package harness\n\ntest_x if { true }\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"roles":{"admin":["alice"]}}`), 0o600)
	os.WriteFile(filepath.Join(dir, "testdata", "input.json"), []byte(`{"x":1}`), 0o600)
	if errOut, err := create(dir); err != nil {
		t.Fatalf("directory bundle: %v\n%s", err, errOut)
	}
	raw := lastBundle(t, api)
	b, err := bundle.NewReader(bytes.NewReader(raw)).Read()
	if err != nil {
		t.Fatalf("OPA cannot read the built bundle: %v", err)
	}
	var modules []string
	for _, m := range b.Modules {
		modules = append(modules, m.Path)
	}
	if len(modules) != 1 || strings.TrimPrefix(modules[0], "/") != "sub/harness.rego" {
		t.Errorf("modules = %v, want sub/harness.rego only, named relative to the directory", modules)
	}
	if diff := diffJSON(map[string]any{"roles": map[string]any{"admin": []any{"alice"}}}, b.Data); diff != "" {
		t.Errorf("data (want, got):\n%s", diff)
	}

	// A tar.gz goes as it is: its bytes round-trip exactly.
	tgz := filepath.Join(t.TempDir(), "bundle.tar.gz")
	os.WriteFile(tgz, tarGz(t, map[string]string{"policy/harness.rego": "package harness\n"}), 0o600)
	if _, err := create(tgz); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(tgz)
	if !bytes.Equal(lastBundle(t, api), want) {
		t.Error("the .tar.gz was not sent byte for byte")
	}

	n := len(api.requests())
	notGzip := filepath.Join(t.TempDir(), "policy.rego")
	os.WriteFile(notGzip, []byte("package harness\n"), 0o600)
	if errOut, err := create(notGzip); exitCode(err) != 2 || !strings.Contains(errOut, "not a gzip file") {
		t.Errorf("not gzip: exit %d, %q", exitCode(err), errOut)
	}
	broken := t.TempDir()
	os.WriteFile(filepath.Join(broken, "harness.rego"), []byte("package harness\n\nallow if {\n"), 0o600)
	if errOut, err := create(broken); exitCode(err) != 2 || !strings.Contains(errOut, "harness.rego:") {
		t.Errorf("broken policy directory: exit %d, %q (want file:line)", exitCode(err), errOut)
	}
	if len(api.requests()) != n {
		t.Error("a bad bundle was sent")
	}
}

func lastBundle(t *testing.T, api *envAPI) []byte {
	t.Helper()
	r := api.requests()
	s, _ := r[len(r)-1].Body["policy_bundle"].(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		t.Fatalf("policy_bundle is not base64: %v", err)
	}
	return b
}

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// FuzzUpstreamFlag: any --upstream value either parses into exactly one
// upstream with absolute http(s) URLs or is refused; it never panics.
func FuzzUpstreamFlag(f *testing.F) {
	for _, s := range []string{"crm=https://x", "crm=https://x,openapi=https://x/o.json", "d=mcp:https://x/mcp", "=", "crm=", "crm=mcp:", "a=b=c", "crm=https://x,openapi="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		u := upstreamFlags{}
		if err := u.Set(v); err != nil {
			if len(u) != 0 {
				t.Fatalf("refused %q but kept %v", v, u)
			}
			return
		}
		if len(u) != 1 {
			t.Fatalf("%q gave %d upstreams", v, len(u))
		}
		for name, up := range u {
			if !upstreamNameRE.MatchString(name) {
				t.Fatalf("name %q accepted", name)
			}
			if (up.MCP == "") == (up.BaseURL == "") {
				t.Fatalf("%q: want exactly one of base_url and mcp: %+v", v, up)
			}
			for _, s := range []string{up.BaseURL, up.OpenAPI, up.MCP} {
				if s != "" && checkUpstreamURL(name, s) != nil {
					t.Fatalf("%q: URL %q accepted", v, s)
				}
			}
		}
	})
}

// diffJSON is "" when want and got are deeply equal, else both as JSON.
func diffJSON(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	w, _ := json.MarshalIndent(want, "", "  ")
	g, _ := json.MarshalIndent(got, "", "  ")
	return "want " + string(w) + "\ngot  " + string(g)
}
