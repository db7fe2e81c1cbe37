package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentharness/harness/internal/app"
	"github.com/agentharness/harness/internal/config"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
)

const envUsage = `Usage: gateway env <command> [flags]

Preview environments: a scoped gateway per branch (docs/previews.md). Every
command speaks the gateway's /environments API with a bearer token: a CI
OIDC token (environments.ci_issuers) or an admin human's token.

Commands:
  create NAME   create or update a preview; prints its MCP URL (first line of stdout)
  list          list the live previews
  retire NAME   retire a preview at once, on every replica

Common flags (each has an environment variable for CI):
  --url GATEWAY       the gateway's public URL (HARNESS_URL)
  --token-file F      file holding the bearer token (HARNESS_TOKEN_FILE)
  --json              print the API's JSON answer instead of text

Exit codes: 0 done; 1 refused by the gateway; 2 usage or transport error.
Run 'gateway env <command> --help' for a command's flags.
`

const (
	envCreateSynopsis = `env create NAME --url GATEWAY --token-file F --upstream NAME=URL[,openapi=URL] ...
       [--branch B] [--pr N] [--repository OWNER/REPO] [--owner LOGIN]
       [--policy-bundle FILE.tar.gz|DIR] [--ttl D] [--json]

PUT /environments/NAME. --upstream is repeatable: crm=URL (its OpenAPI document at
URL/openapi.json, FastAPI's default), crm=URL,openapi=URL, or docs=mcp:URL for an MCP server.
Prints the preview's MCP URL alone on the first line of stdout, details on stderr.`
	envListSynopsis   = "env list --url GATEWAY --token-file F [--json]"
	envRetireSynopsis = `env retire NAME --url GATEWAY --token-file F [--missing-ok] [--json]

DELETE /environments/NAME: the preview's tokens, sessions and grants stop working on every replica.`
)

// Environment variables read when a flag is not given.
const (
	envURLVar       = "HARNESS_URL"
	envTokenFileVar = "HARNESS_TOKEN_FILE"
)

// Limits of what the CLI sends and reads.
const (
	maxBundle       = 8 << 20 // a policy bundle, before base64
	maxEnvAnswer    = 8 << 20
	envClientTimout = time.Minute
)

// envNameRE is the contract's environment name; "default" is reserved.
var envNameRE = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// upstreamNameRE bounds the names given to --upstream.
var upstreamNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// cmdEnv is `gateway env`.
func cmdEnv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, envUsage)
		return errUsage
	}
	switch args[0] {
	case "create":
		return cmdEnvCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return cmdEnvList(ctx, args[1:], stdout, stderr)
	case "retire":
		return cmdEnvRetire(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, envUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "gateway env: unknown subcommand %q\n\n%s", args[0], envUsage)
		return errUsage
	}
}

// envClientFlags are the flags every env subcommand has.
type envClientFlags struct {
	url, tokenFile *string
	json           *bool
}

func addEnvClientFlags(fs *flag.FlagSet) envClientFlags {
	return envClientFlags{
		url:       fs.String("url", "", "the gateway's public URL (default $"+envURLVar+")"),
		tokenFile: fs.String("token-file", "", "file holding the bearer token: a CI OIDC token or an admin's (default $"+envTokenFileVar+")"),
		json:      fs.Bool("json", false, "print the API's JSON answer"),
	}
}

// client resolves the flags (or their environment variables) into a client.
func (f envClientFlags) client() (*envClient, error) {
	base, tokenFile := *f.url, *f.tokenFile
	if base == "" {
		base = os.Getenv(envURLVar)
	}
	if tokenFile == "" {
		tokenFile = os.Getenv(envTokenFileVar)
	}
	if base == "" {
		return nil, fmt.Errorf("--url GATEWAY (or $%s) is required", envURLVar)
	}
	if tokenFile == "" {
		return nil, fmt.Errorf("--token-file F (or $%s) is required", envTokenFileVar)
	}
	return newEnvClient(base, tokenFile)
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (`env create NAME --url …`), returning the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// oneName checks the single NAME argument of create and retire.
func oneName(cmd string, pos []string, stderr io.Writer) (string, error) {
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "gateway env %s: name exactly one environment (got %d arguments)\n", cmd, len(pos))
		return "", errUsage
	}
	if err := checkEnvName(pos[0]); err != nil {
		fmt.Fprintf(stderr, "gateway env %s: %v\n", cmd, err)
		return "", errUsage
	}
	return pos[0], nil
}

func checkEnvName(name string) error {
	if name == "default" {
		return errors.New(`the name "default" is reserved for production`)
	}
	if !envNameRE.MatchString(name) {
		return fmt.Errorf("environment name %q: use 1 to 40 of a-z, 0-9 and -", name)
	}
	return nil
}

// usageErr prints a usage problem and returns errUsage (exit 2).
func usageErr(stderr io.Writer, cmd string, err error) error {
	fmt.Fprintf(stderr, "gateway env %s: %v\n", cmd, err)
	return errUsage
}

// envRequest is the body of PUT /environments/{name}.
type envRequest struct {
	Branch       string                 `json:"branch,omitempty"`
	PullRequest  int                    `json:"pull_request,omitempty"`
	Repository   string                 `json:"repository,omitempty"`
	Owner        string                 `json:"owner,omitempty"`
	TTL          string                 `json:"ttl,omitempty"`
	Upstreams    map[string]envUpstream `json:"upstreams"`
	PolicyBundle string                 `json:"policy_bundle,omitempty"`
}

// envUpstream is one upstream of a preview: an OpenAPI service or an MCP server.
type envUpstream struct {
	BaseURL string `json:"base_url,omitempty"`
	OpenAPI string `json:"openapi,omitempty"`
	MCP     string `json:"mcp,omitempty"`
}

// envInfo is one environment as the API describes it.
type envInfo struct {
	Name        string `json:"name"`
	MCPURL      string `json:"mcp_url"`
	Resource    string `json:"resource"`
	ExpiresAt   string `json:"expires_at"`
	Branch      string `json:"branch,omitempty"`
	PullRequest int    `json:"pull_request,omitempty"`
	Repository  string `json:"repository,omitempty"`
	Owner       string `json:"owner,omitempty"`
	CreatedBy   string `json:"created_by,omitempty"`
	CreatedAt   string `json:"created_at,omitempty"`
}

// upstreamFlags collects repeated --upstream values.
type upstreamFlags map[string]envUpstream

func (u upstreamFlags) String() string { return "" }

// Set parses NAME=URL[,openapi=URL] or NAME=mcp:URL. Without openapi=, the
// document is URL/openapi.json.
func (u upstreamFlags) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || rest == "" {
		return fmt.Errorf("%q: want NAME=URL[,openapi=URL] or NAME=mcp:URL", v)
	}
	if !upstreamNameRE.MatchString(name) {
		return fmt.Errorf("upstream name %q: use 1 to 64 of A-Z, a-z, 0-9, _ and -", name)
	}
	if _, dup := u[name]; dup {
		return fmt.Errorf("upstream %q given twice", name)
	}
	var up envUpstream
	if mcpURL, isMCP := strings.CutPrefix(rest, "mcp:"); isMCP {
		if err := checkUpstreamURL(name, mcpURL); err != nil {
			return err
		}
		up.MCP = mcpURL
	} else {
		base, openapi, hasSpec := strings.Cut(rest, ",openapi=")
		if err := checkUpstreamURL(name, base); err != nil {
			return err
		}
		up.BaseURL = base
		up.OpenAPI = strings.TrimSuffix(base, "/") + "/openapi.json"
		if hasSpec {
			if err := checkUpstreamURL(name, openapi); err != nil {
				return err
			}
			up.OpenAPI = openapi
		}
	}
	u[name] = up
	return nil
}

func checkUpstreamURL(name, raw string) error {
	p, err := url.Parse(raw)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil {
		return fmt.Errorf("upstream %s: %q is not an absolute http(s) URL without credentials", name, raw)
	}
	return nil
}

func cmdEnvCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("env create", envCreateSynopsis, stderr)
	cf := addEnvClientFlags(fs)
	ups := upstreamFlags{}
	fs.Var(ups, "upstream", "an upstream of the preview: NAME=URL[,openapi=URL] or NAME=mcp:URL (repeatable; at least one)")
	branch := fs.String("branch", "", "the branch the preview deploys")
	pr := fs.Int("pr", 0, "the pull (merge) request number; the webhook retires the preview when it closes")
	repo := fs.String("repository", "", "the repository, OWNER/NAME (must match the CI token's)")
	owner := fs.String("owner", "", "the branch's author (policy input preview.owner)")
	bundlePath := fs.String("policy-bundle", "", "the preview's policy: an OPA bundle (.tar.gz) or a policy directory to bundle (default: production's policy)")
	ttl := fs.String("ttl", "", "how long the preview lives unless retired earlier, e.g. 72h (default: environments.default_ttl)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName("create", pos, stderr)
	if err != nil {
		return err
	}
	if len(ups) == 0 {
		return usageErr(stderr, "create", errors.New("give at least one --upstream NAME=URL"))
	}
	if *pr < 0 {
		return usageErr(stderr, "create", fmt.Errorf("--pr %d: a pull request number is positive", *pr))
	}
	if *ttl != "" {
		if d, err := time.ParseDuration(*ttl); err != nil || d <= 0 {
			return usageErr(stderr, "create", fmt.Errorf("--ttl %q: a positive duration such as 24h", *ttl))
		}
	}
	body := envRequest{Branch: *branch, PullRequest: *pr, Repository: *repo, Owner: *owner, TTL: *ttl, Upstreams: ups}
	if *bundlePath != "" {
		b, err := readBundle(*bundlePath)
		if err != nil {
			return usageErr(stderr, "create", err)
		}
		body.PolicyBundle = base64.StdEncoding.EncodeToString(b)
	}
	c, err := cf.client()
	if err != nil {
		return usageErr(stderr, "create", err)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return usageErr(stderr, "create", err)
	}
	status, answer, err := c.do(ctx, http.MethodPut, "/environments/"+name, raw)
	if err != nil {
		return envFailure(stderr, "create", err)
	}
	if *cf.json {
		return writeJSONAnswer(stdout, answer)
	}
	var info envInfo
	if err := json.Unmarshal(answer, &info); err != nil || info.MCPURL == "" {
		fmt.Fprintf(stderr, "gateway env create: the gateway answered %d without an mcp_url: %s\n", status, firstLine(answer))
		return exitError{code: 2}
	}
	fmt.Fprintln(stdout, info.MCPURL)
	verb := "updated"
	if status == http.StatusCreated {
		verb = "created"
	}
	fmt.Fprintf(stderr, "environment %s %s\n  mcp_url    %s\n  resource   %s\n  expires_at %s\nretire it: gateway env retire %s\n",
		info.Name, verb, info.MCPURL, info.Resource, info.ExpiresAt, info.Name)
	return nil
}

func cmdEnvList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("env list", envListSynopsis, stderr)
	cf := addEnvClientFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr(stderr, "list", fmt.Errorf("unexpected argument %q", pos[0]))
	}
	c, err := cf.client()
	if err != nil {
		return usageErr(stderr, "list", err)
	}
	_, answer, err := c.do(ctx, http.MethodGet, "/environments", nil)
	if err != nil {
		return envFailure(stderr, "list", err)
	}
	if *cf.json {
		return writeJSONAnswer(stdout, answer)
	}
	var list struct {
		Environments []envInfo `json:"environments"`
	}
	if err := json.Unmarshal(answer, &list); err != nil {
		fmt.Fprintf(stderr, "gateway env list: the gateway's answer is not the environments list: %v\n", err)
		return exitError{code: 2}
	}
	sort.Slice(list.Environments, func(i, j int) bool { return list.Environments[i].Name < list.Environments[j].Name })
	if len(list.Environments) == 0 {
		fmt.Fprintln(stderr, "no preview environments")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREPOSITORY\tPR\tBRANCH\tOWNER\tCREATED BY\tEXPIRES\tMCP URL")
	for _, e := range list.Environments {
		pr := "-"
		if e.PullRequest > 0 {
			pr = strconv.Itoa(e.PullRequest)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, dash(e.Repository), pr, dash(e.Branch),
			dash(e.Owner), dash(e.CreatedBy), dash(e.ExpiresAt), e.MCPURL)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	// A cell never breaks the table.
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

func cmdEnvRetire(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("env retire", envRetireSynopsis, stderr)
	cf := addEnvClientFlags(fs)
	missingOK := fs.Bool("missing-ok", false, "exit 0 when the environment is unknown (already retired, e.g. by the webhook)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	name, err := oneName("retire", pos, stderr)
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return usageErr(stderr, "retire", err)
	}
	_, answer, err := c.do(ctx, http.MethodDelete, "/environments/"+name, nil)
	var apiErr *envAPIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound && *missingOK {
		fmt.Fprintf(stderr, "environment %s: not found (%s); nothing to retire\n", name, apiErr.Description)
		return nil
	}
	if err != nil {
		return envFailure(stderr, "retire", err)
	}
	if *cf.json {
		return writeJSONAnswer(stdout, answer)
	}
	fmt.Fprintf(stdout, "environment %s retired\n", name)
	return nil
}

// writeJSONAnswer prints the API's JSON answer, indented.
func writeJSONAnswer(stdout io.Writer, answer []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, answer, "", "  "); err != nil {
		buf.Reset()
		buf.Write(answer)
	}
	buf.WriteByte('\n')
	_, err := stdout.Write(buf.Bytes())
	return err
}

// envFailure reports err and picks the exit code: 1 when the gateway
// refused (an error answer), 2 otherwise.
func envFailure(stderr io.Writer, cmd string, err error) error {
	fmt.Fprintf(stderr, "gateway env %s: %v\n", cmd, err)
	var apiErr *envAPIError
	if errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500 {
		return exitError{code: 1}
	}
	return exitError{code: 2}
}

// envAPIError is an error answer of the environments API.
type envAPIError struct {
	Status      int
	Code        string // the JSON "error"
	Description string // the JSON "error_description", or the body's first line
}

func (e *envAPIError) Error() string {
	msg := fmt.Sprintf("refused (%d %s)", e.Status, http.StatusText(e.Status))
	if e.Status >= 500 {
		msg = fmt.Sprintf("the gateway failed (%d %s)", e.Status, http.StatusText(e.Status))
	}
	switch {
	case e.Code != "" && e.Description != "":
		msg += ": " + e.Code + ": " + e.Description
	case e.Code != "":
		msg += ": " + e.Code
	case e.Description != "":
		msg += ": " + e.Description
	}
	if hint := statusHint(e.Status); hint != "" {
		msg += " (" + hint + ")"
	}
	return msg
}

func statusHint(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "the token is missing, expired, or not from an issuer in environments.ci_issuers"
	case http.StatusForbidden:
		return "the token's claims or an upstream URL are not allowed by environments.ci_issuers / allowed_upstreams"
	case http.StatusNotFound:
		return "no such environment, or the gateway has no environments section"
	case http.StatusConflict:
		return "environments.max previews are live already"
	case http.StatusRequestEntityTooLarge:
		return "the request, most likely the policy bundle, is too large"
	}
	return ""
}

// envClient speaks the environments API of one gateway.
type envClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

// newEnvClient checks base and reads the token file (see bearerTarget).
func newEnvClient(base, tokenFile string) (*envClient, error) {
	u, token, err := bearerTarget(base, tokenFile, "token")
	if err != nil {
		return nil, err
	}
	return &envClient{base: u, token: token, http: noRedirectClient(envClientTimout)}, nil
}

// bearerTarget checks that base is a gateway URL a bearer token may be sent
// to (http(s), no credentials, query or fragment; plain http only to
// loopback, as the token is a credential) and reads the one token in
// tokenFile; what names the token in errors. The URL is never echoed with
// credentials, nor the token at all.
func bearerTarget(base, tokenFile, what string) (*url.URL, string, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, "", fmt.Errorf("--url %q is not an http(s) URL of a gateway", app.RedactURL(base))
	}
	if u.Scheme == "http" && !config.IsLoopbackHost(u.Hostname()) {
		return nil, "", fmt.Errorf("--url %q: the %s is sent only over https (http only on loopback)", base, what)
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, "", fmt.Errorf("reading the %s: %w", what, err)
	}
	token := strings.TrimSpace(string(tok))
	if token == "" {
		return nil, "", fmt.Errorf("the %s file %s is empty", what, tokenFile)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return nil, "", fmt.Errorf("the %s file %s holds more than one token (whitespace inside)", what, tokenFile)
	}
	return u, token, nil
}

// noRedirectClient never follows a redirect, which would carry the token.
func noRedirectClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// do sends one request and returns the status and body of a 2xx answer; any
// other answer is an *envAPIError.
func (c *envClient) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	// The API audits a change made with this prefix as made by the CLI.
	req.Header.Set("User-Agent", "harness-gateway/"+version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxEnvAnswer+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: reading the answer: %w", method, u.Redacted(), err)
	}
	if len(answer) > maxEnvAnswer {
		return 0, nil, fmt.Errorf("%s %s: the answer is larger than %d MiB", method, u.Redacted(), maxEnvAnswer>>20)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, answer, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return 0, nil, fmt.Errorf("%s %s: the gateway answered %s to %q; redirects are not followed (they would carry the token): give the final URL",
			method, u.Redacted(), resp.Status, resp.Header.Get("Location"))
	}
	e := &envAPIError{Status: resp.StatusCode}
	var j struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(answer, &j) == nil {
		e.Code, e.Description = j.Error, j.Description
	}
	if e.Code == "" && e.Description == "" {
		e.Description = firstLine(answer)
	}
	return 0, nil, e
}

// readBundle returns the policy bundle at path: a .tar.gz file as it is, or
// a directory built into one with OPA's bundle writer (tests and testdata
// left out).
func readBundle(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--policy-bundle: %w", err)
	}
	if !st.IsDir() {
		if st.Size() > maxBundle {
			return nil, fmt.Errorf("--policy-bundle %s: %d bytes, more than %d MiB", path, st.Size(), maxBundle>>20)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--policy-bundle: %w", err)
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			return nil, fmt.Errorf("--policy-bundle %s: not a gzip file (build one with `opa build`, or give the policy directory)", path)
		}
		return b, nil
	}
	b, err := loader.NewFileLoader().WithFilter(func(abspath string, info fs.FileInfo, _ int) bool {
		base := filepath.Base(abspath)
		if info.IsDir() {
			return base == "testdata" || (strings.HasPrefix(base, ".") && base != ".")
		}
		return strings.HasSuffix(base, "_test.rego") || strings.HasPrefix(base, ".")
	}).AsBundle(path)
	if err != nil {
		return nil, fmt.Errorf("--policy-bundle %s: %w", path, err)
	}
	// Modules are named relative to the directory, as `opa build` names
	// them: the runner's paths stay out of the bundle and its errors.
	root, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("--policy-bundle: %w", err)
	}
	for i := range b.Modules {
		m := &b.Modules[i]
		abs, err := filepath.Abs(m.Path)
		if err != nil {
			return nil, fmt.Errorf("--policy-bundle: %w", err)
		}
		rel, err := filepath.Rel(root, abs)
		if err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("--policy-bundle %s: module %s lies outside the directory", path, m.Path)
		}
		m.Path, m.URL = filepath.ToSlash(rel), filepath.ToSlash(rel)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).UseModulePath(false).Write(*b); err != nil {
		return nil, fmt.Errorf("--policy-bundle %s: writing the bundle: %w", path, err)
	}
	if buf.Len() > maxBundle {
		return nil, fmt.Errorf("--policy-bundle %s: the bundle is %d bytes, more than %d MiB", path, buf.Len(), maxBundle>>20)
	}
	return buf.Bytes(), nil
}
