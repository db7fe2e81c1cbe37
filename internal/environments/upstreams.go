package environments

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrUpstreamNotAllowed refuses a preview URL that matches no pattern of
// environments.allowed_upstreams.
var ErrUpstreamNotAllowed = errors.New("upstream URL not allowed")

// Pattern is one entry of environments.allowed_upstreams:
// scheme://host[:port][/path]. In the host, * stands for one or more
// characters of a single label (never a dot); the port, when absent, is the
// scheme's default; a path, when present, is a prefix the URL's path must
// equal or continue with "/". A port of * allows any port (for loopback
// tests and demos).
type Pattern struct {
	raw    string
	scheme string
	labels []string // host labels, lower case; may hold *
	port   string
	path   string // "" or "/a/b" (no trailing slash)
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// ParsePattern parses one allowed_upstreams pattern.
func ParsePattern(s string) (Pattern, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return Pattern{}, fmt.Errorf("%q must start with http:// or https://", s)
	}
	hostport, path, _ := strings.Cut(rest, "/")
	if strings.ContainsAny(rest, "?#@\\ \t\r\n%") {
		return Pattern{}, fmt.Errorf("%q must be scheme://host[:port][/path] without credentials, query, fragment, escapes or spaces", s)
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
		if port != "*" && (!allDigits(port) || len(port) > 5) {
			return Pattern{}, fmt.Errorf("%q has a bad port", s)
		}
	}
	if host == "" {
		return Pattern{}, fmt.Errorf("%q has no host", s)
	}
	host = strings.ToLower(host)
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" || strings.Count(l, "*") > 1 || !validLabel(strings.ReplaceAll(l, "*", "a")) {
			return Pattern{}, fmt.Errorf("%q has a bad host label %q", s, l)
		}
	}
	if labels[0] == "*" && len(labels) < 3 {
		return Pattern{}, fmt.Errorf("%q is too broad: a leading * needs at least two fixed labels after it", s)
	}
	if port == "" {
		port = defaultPort(scheme)
	}
	p := Pattern{raw: s, scheme: scheme, labels: labels, port: port}
	if path != "" {
		p.path = "/" + strings.TrimRight(path, "/")
		if p.path == "/" {
			p.path = ""
		}
		for _, seg := range strings.Split(p.path[1:], "/") {
			if seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "*") {
				return Pattern{}, fmt.Errorf("%q has a bad path (no empty, . or .. segments, no *)", s)
			}
		}
	}
	return p, nil
}

// ParsePatterns parses every pattern, joining every error.
func ParsePatterns(ss []string) ([]Pattern, error) {
	var errs []error
	out := make([]Pattern, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// CheckUpstreamURL parses raw strictly (absolute http(s), a host, no
// credentials, no fragment, no escapes in the host, no dot segments in the
// path) and checks that it matches one of patterns. The error never
// repeats a password.
func CheckUpstreamURL(raw string, patterns []Pattern) error {
	u, err := strictURL(raw)
	if err != nil {
		return err
	}
	for _, p := range patterns {
		if p.match(u) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q matches none of environments.allowed_upstreams", ErrUpstreamNotAllowed, u.String())
}

// strictURL parses a preview URL, refusing everything ambiguous.
func strictURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("URL is empty")
	}
	if len(raw) > 2048 {
		return nil, errors.New("URL is longer than 2048 bytes")
	}
	for _, c := range raw {
		if c <= ' ' || c == 0x7f || c == '\\' {
			return nil, errors.New("URL contains spaces, control characters or backslashes")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL scheme %q is not http or https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("URL must be absolute: scheme://host/…")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return nil, errors.New("URL must not carry credentials")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New("URL must not have a fragment")
	}
	host := u.Hostname()
	if strings.ContainsAny(u.Host, "%") || host == "" {
		return nil, errors.New("URL host must not be escaped or empty")
	}
	if port := u.Port(); port != "" && (!allDigits(port) || len(port) > 5) {
		return nil, errors.New("URL port is not a number")
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, errors.New("URL has an empty port")
	}
	if ip := net.ParseIP(host); ip == nil {
		for _, l := range strings.Split(host, ".") {
			if !validLabel(strings.ToLower(l)) {
				return nil, fmt.Errorf("URL host label %q is not a DNS label", l)
			}
		}
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") || strings.EqualFold(seg, ".%2e") || strings.EqualFold(seg, "%2e.") {
			return nil, errors.New("URL path must not have . or .. segments")
		}
	}
	if strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") {
		return nil, errors.New("URL path must not hold an escaped slash")
	}
	return u, nil
}

// match reports whether u (already strict) matches p.
func (p Pattern) match(u *url.URL) bool {
	if u.Scheme != p.scheme {
		return false
	}
	port := u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	if p.port != "*" && port != p.port {
		return false
	}
	labels := strings.Split(strings.ToLower(u.Hostname()), ".")
	if len(labels) != len(p.labels) {
		return false
	}
	for i, l := range labels {
		if !matchLabel(p.labels[i], l) {
			return false
		}
	}
	if p.path == "" {
		return true
	}
	path := u.EscapedPath()
	return path == p.path || strings.HasPrefix(path, p.path+"/")
}

// matchLabel matches one host label against a pattern label in which a *
// stands for one or more characters (never a dot: labels are split).
func matchLabel(pat, l string) bool {
	pre, suf, wild := strings.Cut(pat, "*")
	if !wild {
		return pat == l
	}
	return len(l) > len(pre)+len(suf) && strings.HasPrefix(l, pre) && strings.HasSuffix(l, suf)
}

// validLabel reports whether l is a DNS label (lower case letters, digits,
// hyphens inside; at most 63 characters).
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}
