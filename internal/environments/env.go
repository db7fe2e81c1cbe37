// Package environments serves preview environments: the records CI
// creates through the HTTP API (PUT/GET/DELETE /environments[/{name}]),
// their persistence in the shared store, CI OIDC and admin-role
// authentication, the allow-list of preview URLs, policy bundles, limits,
// TTL expiry, the GitHub webhook that retires a merged pull request's
// previews, and the audit records of every change.
//
// It never imports internal/server: it drives a Host (internal/app adapts
// the server) that opens and retires what the pipeline serves.
package environments

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Env is one preview environment: the stored record, plus its policy
// bundle when it has one (loaded only to open it).
type Env struct {
	Name        string              `json:"name"`
	Branch      string              `json:"branch,omitempty"`
	PullRequest int                 `json:"pull_request,omitempty"`
	Repository  string              `json:"repository,omitempty"`
	Owner       string              `json:"owner,omitempty"`
	Upstreams   map[string]Upstream `json:"upstreams"`
	// CreatedBy is the CI token's actor / user_login, or the admin's
	// email or subject.
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Version changes with every PUT: replicas reopen on a new version.
	Version string `json:"version"`
	// Creator says who may update it: a CI caller's issuer and
	// repository (only that repository's CI, or an admin, may).
	CreatorIssuer     string `json:"creator_issuer,omitempty"`
	CreatorRepository string `json:"creator_repository,omitempty"`
	// HasBundle says a policy bundle is stored with it.
	HasBundle bool `json:"has_bundle,omitempty"`
	// Bundle is the policy bundle (.tar.gz); nil: production's policy.
	// Never in the record itself.
	Bundle []byte `json:"-"`
}

// Upstream is one preview upstream: an HTTP API (BaseURL and OpenAPI) or
// an MCP server (MCP).
type Upstream struct {
	BaseURL string `json:"base_url,omitempty"`
	OpenAPI string `json:"openapi,omitempty"`
	MCP     string `json:"mcp,omitempty"`
}

// Request is the body of PUT /environments/{name}.
type Request struct {
	Branch       string              `json:"branch"`
	PullRequest  int                 `json:"pull_request"`
	Repository   string              `json:"repository"`
	Owner        string              `json:"owner"`
	TTL          string              `json:"ttl"`
	Upstreams    map[string]Upstream `json:"upstreams"`
	PolicyBundle string              `json:"policy_bundle"`
}

// Limits of a request.
const (
	// MaxBody bounds the body of PUT /environments/{name}, bundle included.
	MaxBody = 4 << 20
	// MaxUpstreams bounds the upstreams of one preview.
	MaxUpstreams = 16
	maxField     = 256
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
	upstreamRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
)

// CheckName checks an environment name: 1-40 of a-z 0-9 -, not "default".
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("environment name %q must be 1-40 characters of a-z 0-9 -", truncate(name))
	}
	if name == "default" {
		return errors.New(`environment name "default" is reserved (it is production)`)
	}
	return nil
}

// DecodeRequest reads and checks a PUT body: strict JSON (unknown fields,
// trailing data and duplicate-looking garbage refused), every field
// checked, every URL matched against allowed, the ttl within maxTTL
// (empty: defaultTTL). It returns the request, the decoded bundle (nil
// when none) and the TTL. Errors are safe to show the caller.
func DecodeRequest(body []byte, allowed []Pattern, defaultTTL, maxTTL time.Duration) (*Request, []byte, time.Duration, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, nil, 0, fmt.Errorf("body is not the expected JSON: %s", jsonError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, 0, errors.New("body holds more than one JSON value")
	}
	var errs []error
	for field, v := range map[string]string{"branch": req.Branch, "repository": req.Repository, "owner": req.Owner} {
		if len(v) > maxField || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("%s must be at most %d printable characters", field, maxField))
		}
	}
	if req.PullRequest < 0 {
		errs = append(errs, errors.New("pull_request must not be negative"))
	}
	ttl := defaultTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("ttl %q is not a duration (24h, 90m…)", truncate(req.TTL)))
		case d < time.Second:
			errs = append(errs, fmt.Errorf("ttl %s is shorter than 1s", d))
		case d > maxTTL:
			errs = append(errs, fmt.Errorf("ttl %s is longer than environments.max_ttl (%s)", d, maxTTL))
		default:
			ttl = d
		}
	}
	var notAllowed []error
	switch {
	case len(req.Upstreams) == 0:
		errs = append(errs, errors.New("upstreams: at least one is required"))
	case len(req.Upstreams) > MaxUpstreams:
		errs = append(errs, fmt.Errorf("upstreams: at most %d", MaxUpstreams))
	}
	names := make([]string, 0, len(req.Upstreams))
	for n := range req.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		u := req.Upstreams[n]
		if !upstreamRE.MatchString(n) {
			errs = append(errs, fmt.Errorf("upstreams: name %q must be 1-32 characters of A-Z a-z 0-9 _ -", truncate(n)))
			continue
		}
		var urls map[string]string
		switch {
		case u.MCP != "" && (u.BaseURL != "" || u.OpenAPI != ""):
			errs = append(errs, fmt.Errorf("upstreams.%s: either mcp, or base_url and openapi", n))
			continue
		case u.MCP != "":
			urls = map[string]string{"mcp": u.MCP}
		case u.BaseURL != "" && u.OpenAPI != "":
			urls = map[string]string{"base_url": u.BaseURL, "openapi": u.OpenAPI}
		default:
			errs = append(errs, fmt.Errorf("upstreams.%s: needs base_url and openapi, or mcp", n))
			continue
		}
		for _, k := range []string{"base_url", "openapi", "mcp"} {
			raw, ok := urls[k]
			if !ok {
				continue
			}
			if err := CheckUpstreamURL(raw, allowed); err != nil {
				e := fmt.Errorf("upstreams.%s.%s: %w", n, k, err)
				if errors.Is(err, ErrUpstreamNotAllowed) {
					notAllowed = append(notAllowed, e)
				} else {
					errs = append(errs, e)
				}
			}
		}
	}
	var bundle []byte
	if req.PolicyBundle != "" {
		b, err := base64.StdEncoding.DecodeString(req.PolicyBundle)
		if err != nil {
			errs = append(errs, errors.New("policy_bundle is not standard base64"))
		} else {
			bundle = b
		}
	}
	if len(errs) > 0 {
		return nil, nil, 0, errors.Join(append(errs, notAllowed...)...)
	}
	if len(notAllowed) > 0 {
		return nil, nil, 0, &forbiddenError{errors.Join(notAllowed...)}
	}
	return &req, bundle, ttl, nil
}

// forbiddenError is a request refused because a URL is outside the
// allow-list (403, not 400).
type forbiddenError struct{ err error }

func (f *forbiddenError) Error() string { return f.err.Error() }
func (f *forbiddenError) Unwrap() error { return f.err }

// jsonError describes a decoding error without echoing much of the input.
func jsonError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return truncate(err.Error())
}

// truncate shortens what is echoed from the caller's input.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
