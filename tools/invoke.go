package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const (
	// DefaultTimeout is the upstream timeout when Upstream.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxResponseBytes is the response cap when
	// Upstream.MaxResponseBytes is zero.
	DefaultMaxResponseBytes = 10 << 20
)

// Upstream is one HTTP API whose operations become tools.
type Upstream struct {
	// Name prefixes the upstream's tool names and is the audience of the
	// identity assertion sent to it.
	Name string
	// BaseURL is where requests go: scheme, host and an optional base path.
	BaseURL string
	// OpenAPI is the URL (http or https) or file path of the OpenAPI
	// document; empty means BaseURL + "/openapi.json".
	OpenAPI string
	// Timeout bounds each call and each document load; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes caps a response body; zero means
	// DefaultMaxResponseBytes. A larger body is an error, never truncated.
	MaxResponseBytes int64

	// MCP is the URL of an MCP server (streamable HTTP, either protocol
	// era) whose tools, resources and prompts are federated. An upstream
	// has one of OpenAPI (with BaseURL), MCP and Command.
	MCP string
	// Command is the argv of a stdio MCP server the catalogue starts,
	// restarts with backoff when it exits, and stops on Close.
	Command []string
	// Env is added to the environment of Command.
	Env map[string]string
	// Headers are sent on every HTTP request to MCP; never logged.
	Headers map[string]string
	// Prefix goes before the names of an MCP server's tools and prompts.
	Prefix string
}

// Kind is "openapi", "mcp" or "command".
func (u *Upstream) Kind() string {
	switch {
	case u.MCP != "":
		return KindMCP
	case len(u.Command) > 0:
		return "command"
	default:
		return KindOpenAPI
	}
}

// IsMCP reports whether the upstream is an MCP server (mcp or command).
func (u *Upstream) IsMCP() bool { return u.MCP != "" || len(u.Command) > 0 }

// withDefaults returns a copy of u with zero values replaced by defaults.
func (u Upstream) withDefaults() Upstream {
	if u.Timeout <= 0 {
		u.Timeout = DefaultTimeout
	}
	if u.MaxResponseBytes <= 0 {
		u.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if u.OpenAPI == "" && !u.IsMCP() {
		u.OpenAPI = strings.TrimRight(u.BaseURL, "/") + "/openapi.json"
	}
	return u
}

// Response is an upstream's answer to one tool call.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// ContentType is the response's Content-Type header.
	ContentType string
	// Body is the complete response body.
	Body []byte
}

// OK reports whether the status is 2xx.
func (r *Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Invoke calls tool t on upstream up with args. header holds extra headers
// set by the caller (the identity assertion, traceparent); they override
// any header parameter of the same name. The upstream's timeout applies,
// redirects are not followed (a 3xx is returned as is), and a body larger
// than the upstream's cap is an error. A non-2xx status is not an error:
// check Response.OK. Errors name the upstream.
func Invoke(ctx context.Context, client *http.Client, up *Upstream, t *Tool, args map[string]any, header http.Header) (*Response, error) {
	if up == nil || t == nil {
		return nil, errors.New("invoke: no upstream or tool")
	}
	u := up.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	req, err := t.NewRequest(ctx, &u, args)
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := noRedirects(client).Do(req)
	if err != nil {
		// A *url.Error names the full URL, argument values included: keep
		// only its cause, so errors (and the logs they reach) carry the
		// method and the path template, never what the agent sent.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("upstream %q: %s %s: timed out after %s: %w", u.Name, t.Method, t.Path, u.Timeout, err)
		}
		return nil, fmt.Errorf("upstream %q: %s %s: %w", u.Name, t.Method, t.Path, err)
	}
	defer resp.Body.Close()
	body, err := readCappedSized(resp.Body, u.MaxResponseBytes, resp.ContentLength)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %s %s: read response: %w", u.Name, t.Method, t.Path, err)
	}
	return &Response{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: body}, nil
}

// ErrTooLarge is returned when a response or document exceeds its cap.
var ErrTooLarge = errors.New("body too large")

func readCapped(r io.Reader, limit int64) ([]byte, error) {
	return readCappedSized(r, limit, -1)
}

// maxSizeHint bounds the buffer allocated up front from a declared length.
const maxSizeHint = 1 << 20

// readCappedSized is readCapped for a body whose declared length is hint
// (-1 when unknown, as http.Response.ContentLength): a body that declares
// its length is read into one buffer of that size (plus one byte, to see
// EOF) instead of a growing one. The declared length is only a hint: the
// cap applies to what is actually read, and a body longer than declared
// still grows the buffer.
func readCappedSized(r io.Reader, limit, hint int64) ([]byte, error) {
	if hint < 0 || hint > limit || hint > maxSizeHint {
		hint = 511 // io.ReadAll's first buffer, less the byte added below
	}
	b := make([]byte, 0, hint+1)
	lr := io.LimitReader(r, limit+1)
	for {
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow as io.ReadAll does
		}
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// noRedirects returns a copy of client that never follows redirects, so
// that only the upstream's own host is contacted.
func noRedirects(client *http.Client) *http.Client {
	var c http.Client
	if client != nil {
		c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// LoadDocument reads an OpenAPI document from an http(s) URL or a file path
// ("file://" prefix optional), refusing anything over MaxDocumentBytes.
// A URL must answer 200. client may be nil for a default client.
func LoadDocument(ctx context.Context, client *http.Client, location string) ([]byte, error) {
	switch {
	case location == "":
		return nil, errors.New("load openapi document: no location")
	case strings.HasPrefix(location, "http://"), strings.HasPrefix(location, "https://"):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
		if err != nil {
			return nil, fmt.Errorf("load openapi document %s: %w", location, err)
		}
		req.Header.Set("Accept", "application/json, application/yaml;q=0.9, */*;q=0.1")
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("load openapi document: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("load openapi document %s: status %d", location, resp.StatusCode)
		}
		b, err := readCapped(resp.Body, MaxDocumentBytes)
		if err != nil {
			return nil, fmt.Errorf("load openapi document %s: %w", location, err)
		}
		return b, nil
	case strings.Contains(location, "://") && !strings.HasPrefix(location, "file://"):
		return nil, fmt.Errorf("load openapi document %q: only http, https and file locations are supported", location)
	default:
		path := strings.TrimPrefix(location, "file://")
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("load openapi document: %w", err)
		}
		defer f.Close()
		b, err := readCapped(f, MaxDocumentBytes)
		if err != nil {
			return nil, fmt.Errorf("load openapi document %s: %w", path, err)
		}
		return b, nil
	}
}
