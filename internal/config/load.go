package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentharness/harness/internal/ratelimit"
)

// EnvPrefix prefixes the environment variables that override scalar keys:
// HARNESS_LISTEN, HARNESS_RATELIMIT_REDIS_URL, HARNESS_AUDIT_PATH…
const EnvPrefix = "HARNESS_"

// maxFileSize bounds a configuration file.
const maxFileSize = 1 << 20

// Problem is one thing wrong with a configuration, at a key path such as
// upstreams[0].timeout.
type Problem struct {
	Path string
	Msg  string
}

func (p Problem) Error() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// Problems is every problem found in one configuration.
type Problems []Problem

func (ps Problems) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration problem", len(ps))
	if len(ps) != 1 {
		b.WriteString("s")
	}
	b.WriteString(":")
	for _, p := range ps {
		b.WriteString("\n  - ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Load reads, expands, overrides, defaults and validates the file at path.
// A returned error lists every problem (as Problems where it can).
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(&limitReader{r: f, n: maxFileSize + 1}); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if buf.Len() > maxFileSize {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxFileSize)
	}
	return Parse(buf.Bytes(), os.LookupEnv)
}

// Parse is Load over bytes, with lookup resolving ${VAR} and HARNESS_*
// variables (os.LookupEnv in production).
func Parse(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	cfg := Default()
	var ps Problems
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			return nil, fmt.Errorf("config is not valid YAML: %w", err)
		}
		if len(root.Content) > 0 {
			d := decoder{lookup: lookup}
			d.decode("", root.Content[0], reflect.ValueOf(&cfg).Elem())
			ps = append(ps, d.problems...)
		}
	}
	ps = append(ps, applyEnv(&cfg, lookup)...)
	cfg.fillDerived()
	// Report validation problems too, except at a path that already failed
	// to decode: one problem per key, every key at once.
	failed := map[string]bool{}
	for _, p := range ps {
		path, _, _ := strings.Cut(p.Path, " (from ")
		failed[path] = true
	}
	for _, p := range cfg.Validate() {
		if !failed[p.Path] {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return &cfg, nil
}

type limitReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("config file too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

type decoder struct {
	lookup   func(string) (string, bool)
	problems Problems
}

func (d *decoder) fail(path string, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var durationType = reflect.TypeOf(Duration(0))

func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty key keeps its default
	}
	switch {
	case v.Type() == durationType:
		s, ok := d.scalar(path, n)
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.fail(path, "%q is not a duration (use 10s, 1m, 15m…)", s)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(path, "must be a mapping")
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			kp := join(path, key)
			if seen[key] {
				d.fail(kp, "duplicate key")
				continue
			}
			seen[key] = true
			f, ok := fieldByTag(v, key)
			if !ok {
				d.fail(kp, "unknown key%s", suggest(v.Type(), key))
				continue
			}
			d.decode(kp, val, f)
		}
	case v.Kind() == reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(path, n, p.Elem())
		v.Set(p)
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			d.fail(path, "must be a mapping")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			kp := path + "." + key
			if m.MapIndex(reflect.ValueOf(key)).IsValid() {
				d.fail(kp, "duplicate key")
				continue
			}
			if s, ok := d.scalar(kp, n.Content[i+1]); ok {
				m.SetMapIndex(reflect.ValueOf(key), reflect.ValueOf(s))
			}
		}
		v.Set(m)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", path, i), item, s.Index(i))
		}
		v.Set(s)
	case v.Kind() == reflect.String:
		if s, ok := d.scalar(path, n); ok {
			v.SetString(s)
		}
	case v.Kind() == reflect.Int:
		s, ok := d.scalar(path, n)
		if !ok {
			return
		}
		i, err := strconv.Atoi(s)
		if err != nil {
			d.fail(path, "%q is not a whole number", s)
			return
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Bool:
		s, ok := d.scalar(path, n)
		if !ok {
			return
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.fail(path, "%q is not true or false", s)
			return
		}
		v.SetBool(b)
	default:
		d.fail(path, "unsupported type %s", v.Type())
	}
}

// scalar returns the node's value with ${VAR} references expanded.
func (d *decoder) scalar(path string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, "must be a single value")
		return "", false
	}
	s, err := expand(n.Value, d.lookup)
	if err != nil {
		d.fail(path, "%v", err)
		return "", false
	}
	return s, true
}

func expand(s string, lookup func(string) (string, bool)) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

func fieldByTag(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if tagName(t.Field(i)) == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// suggest names the known keys of t, so a typo is easy to fix.
func suggest(t reflect.Type, key string) string {
	var known []string
	for i := 0; i < t.NumField(); i++ {
		known = append(known, tagName(t.Field(i)))
	}
	return " (known: " + strings.Join(known, ", ") + ")"
}

// applyEnv applies HARNESS_* overrides to scalar keys outside lists, e.g.
// HARNESS_RATELIMIT_REDIS_URL for ratelimit.redis_url. A list of strings
// takes a comma-separated value.
func applyEnv(cfg *Config, lookup func(string) (string, bool)) Problems {
	d := decoder{lookup: lookup}
	var walk func(path, env string, v reflect.Value)
	walk = func(path, env string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			key := tagName(t.Field(i))
			p, e := join(path, key), env+strings.ToUpper(key)
			f := v.Field(i)
			switch {
			case f.Type() == durationType || f.Kind() == reflect.String || f.Kind() == reflect.Int || f.Kind() == reflect.Bool:
				if s, ok := lookup(e); ok {
					d.decode(p+" (from "+e+")", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}, f)
				}
			case f.Kind() == reflect.Struct:
				walk(p, e+"_", f)
			case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
				if s, ok := lookup(e); ok {
					var items []string
					for _, it := range strings.Split(s, ",") {
						if it = strings.TrimSpace(it); it != "" {
							items = append(items, it)
						}
					}
					f.Set(reflect.ValueOf(items))
				}
			}
		}
	}
	walk("", EnvPrefix, reflect.ValueOf(cfg).Elem())
	return d.problems
}

// fillDerived fills defaults that depend on other keys.
func (c *Config) fillDerived() {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.PublicURL == "" && c.Listen != "" {
		c.PublicURL = "http://" + c.Listen
	}
	for i := range c.Auth.Issuers {
		is := &c.Auth.Issuers[i]
		if len(is.Audiences) == 0 && c.PublicURL != "" {
			is.Audiences = []string{c.PublicURL, c.ResourceURL()}
		}
		if is.RolesClaim == "" {
			is.RolesClaim = "roles"
		}
	}
	for i := range c.Upstreams {
		if c.Upstreams[i].Timeout == 0 {
			c.Upstreams[i].Timeout = Duration(DefaultUpstreamTimeout)
		}
		if c.Upstreams[i].Pin == "" {
			c.Upstreams[i].Pin = "strict"
		}
		if te := &c.Upstreams[i].TokenExchange; te.Enabled() && te.Audience == "" {
			te.Audience = c.Upstreams[i].Name
		}
	}
}

// ResourceURL is the protected resource identifier: public_url + "/mcp".
func (c *Config) ResourceURL() string { return c.PublicURL + "/mcp" }

var upstreamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Validate reports every problem with c (after defaults are filled).
func (c *Config) Validate() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if err := checkURL(c.PublicURL, true); err != nil {
		bad("public_url", "%v", err)
	}
	if len(c.Auth.Issuers) == 0 {
		bad("auth.issuers", "at least one trusted issuer is required (every call must name a human)")
	}
	seenIss := map[string]bool{}
	for i, is := range c.Auth.Issuers {
		p := fmt.Sprintf("auth.issuers[%d]", i)
		if err := checkURL(is.Issuer, false); err != nil {
			bad(p+".issuer", "%v", err)
		} else if err := secureURL(is.Issuer); err != nil {
			bad(p+".issuer", "%v", err)
		}
		if seenIss[is.Issuer] {
			bad(p+".issuer", "%q is listed twice", is.Issuer)
		}
		seenIss[is.Issuer] = true
		for j, a := range is.Audiences {
			if strings.TrimSpace(a) == "" {
				bad(fmt.Sprintf("%s.audiences[%d]", p, j), "must not be empty")
			}
		}
	}
	if c.Policy.Dir != "" {
		if st, err := os.Stat(c.Policy.Dir); err != nil || !st.IsDir() {
			bad("policy.dir", "%q is not a directory", c.Policy.Dir)
		}
	}
	if !strings.HasPrefix(c.Policy.Query, "data.") {
		bad("policy.query", "%q must be a data reference such as data.harness.decision", c.Policy.Query)
	}
	if c.Delegation.MaxTTL <= 0 || c.Delegation.MaxTTL.D() > 24*time.Hour {
		bad("delegation.max_ttl", "must be between 1s and 24h, got %s", c.Delegation.MaxTTL)
	}
	ps = append(ps, c.validateOAuth()...)
	ps = append(ps, c.validateCORS()...)
	ps = append(ps, c.validateApprovals()...)
	if c.RateLimit.RedisURL != "" {
		// The limiter's own parser decides (its errors never echo the URL).
		if err := ratelimit.CheckRedisURL(c.RateLimit.RedisURL); err != nil {
			bad("ratelimit.redis_url", "%v", err)
		}
	}
	if c.RateLimit.Default.Requests <= 0 {
		bad("ratelimit.default.requests", "must be positive")
	}
	if c.RateLimit.Default.Per <= 0 {
		bad("ratelimit.default.per", "must be a positive duration")
	}
	if c.RateLimit.Refusals.Requests <= 0 {
		bad("ratelimit.refusals.requests", "must be positive")
	}
	if c.RateLimit.Refusals.Per <= 0 {
		bad("ratelimit.refusals.per", "must be a positive duration")
	}
	if c.RateLimit.RedisTimeout <= 0 || c.RateLimit.RedisTimeout.D() > 10*time.Second {
		bad("ratelimit.redis_timeout", "must be between 1ms and 10s, got %s", c.RateLimit.RedisTimeout)
	}
	if !slices.Contains([]string{"deny", "allow"}, c.RateLimit.OnError) {
		bad("ratelimit.on_error", "must be deny or allow, got %q", c.RateLimit.OnError)
	}
	seenUp := map[string]bool{}
	for i, u := range c.Upstreams {
		p := fmt.Sprintf("upstreams[%d]", i)
		if !upstreamName.MatchString(u.Name) {
			bad(p+".name", "%q must be 1-32 characters of A-Z a-z 0-9 _ -", u.Name)
		}
		if seenUp[u.Name] {
			bad(p+".name", "%q is used twice", u.Name)
		}
		seenUp[u.Name] = true
		ps = append(ps, validateUpstreamKind(p, u)...)
		if u.Timeout <= 0 {
			bad(p+".timeout", "must be positive")
		}
		ps = append(ps, validateTokenExchange(p+".token_exchange", u.TokenExchange)...)
	}
	for i, det := range c.Redaction.Detectors {
		if !slices.Contains(KnownDetectors, det) {
			bad(fmt.Sprintf("redaction.detectors[%d]", i), "unknown detector %q (known: %s)", det, strings.Join(KnownDetectors, ", "))
		}
	}
	if c.Audit.Path == "" {
		bad("audit.path", "required (a file, or - for stdout): no access goes unrecorded")
	}
	if !slices.Contains([]string{"deny", "allow"}, c.Audit.OnError) {
		bad("audit.on_error", "must be deny or allow, got %q", c.Audit.OnError)
	}
	if !slices.Contains([]string{"batch", "always", "never"}, c.Audit.Fsync) {
		bad("audit.fsync", "must be batch, always or never, got %q", c.Audit.Fsync)
	}
	if c.Audit.MaxSizeMB < 0 {
		bad("audit.max_size_mb", "must not be negative")
	}
	if c.Audit.MaxFiles < 0 {
		bad("audit.max_files", "must not be negative")
	}
	if !slices.Contains([]string{RecordInputRedacted, RecordInputNone, RecordInputFull}, c.Audit.RecordInput) {
		bad("audit.record_input", "must be redacted, none or full, got %q", c.Audit.RecordInput)
	}
	ps = append(ps, c.validateCheckpoint()...)
	if c.Telemetry.OTLPEndpoint != "" {
		if err := checkURL(c.Telemetry.OTLPEndpoint, false); err != nil {
			bad("telemetry.otlp_endpoint", "%v", err)
		}
	}
	ps = append(ps, c.validateServer()...)
	ps = append(ps, c.validateEnvironments()...)
	return ps
}

// validateServer checks the server section.
func (c *Config) validateServer() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	sv := c.Server
	for i, p := range sv.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not a CIDR (10.0.0.0/8, fd00::/8) or an IP address", p)
		}
	}
	if sv.UnauthenticatedRate.Requests <= 0 {
		bad("server.unauthenticated_rate.requests", "must be positive")
	}
	if sv.UnauthenticatedRate.Per <= 0 {
		bad("server.unauthenticated_rate.per", "must be a positive duration")
	}
	if sv.UnauthenticatedQuota <= 0 {
		bad("server.unauthenticated_quota", "must be positive")
	}
	if sv.ReadTimeout <= 0 || sv.ReadTimeout.D() > 10*time.Minute {
		bad("server.read_timeout", "must be between 1ms and 10m, got %s", sv.ReadTimeout)
	}
	if sv.AdminToken != "" && len(sv.AdminToken) < 16 {
		bad("server.admin_token", "must be at least 16 characters (a random secret, written as ${VAR})")
	}
	if sv.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(sv.MetricsListen); err != nil {
			bad("server.metrics_listen", "%q is not host:port", sv.MetricsListen)
		} else if sv.MetricsListen == c.Listen {
			bad("server.metrics_listen", "must differ from listen (%s)", c.Listen)
		}
	}
	return ps
}

// ParsePrefix parses a trusted proxy: a CIDR or a single IP address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func checkURL(s string, noPath bool) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a valid URL") // the text may hold a password: not echoed
	}
	shown := u.Redacted() // never echo a password from the config
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", shown)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not carry credentials, a query or a fragment", shown)
	}
	if noPath && u.Path != "" && u.Path != "/" {
		return fmt.Errorf("%q must not have a path", shown)
	}
	return nil
}

// IsLoopbackHost reports whether h (a host name without port) is
// "localhost" or a loopback IP address: the only hosts plain http (tokens,
// keys) and the DNS-rebinding guard treat as this machine. A name that only
// looks like one ("127.0.0.1.example") is not.
func IsLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// secureURL refuses plain http for anything but loopback: tokens and keys
// must not travel in clear text.
func secureURL(s string) error {
	u, _ := url.Parse(s)
	if u.Scheme == "https" {
		return nil
	}
	if IsLoopbackHost(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%q must use https (plain http is accepted only on loopback)", s)
}

// upstreamHeader is a header name an mcp upstream may be sent.
var upstreamHeader = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)

// validateUpstreamKind checks that an upstream has exactly one of openapi,
// mcp and command, and the keys that go with its kind.
func validateUpstreamKind(p string, u Upstream) Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	kinds := 0
	for _, set := range []bool{u.OpenAPI != "", u.MCP != "", len(u.Command) > 0} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds == 0:
		bad(p, "one of openapi (an HTTP API), mcp (an MCP server's URL) or command (a stdio MCP server) is required")
	case kinds > 1:
		bad(p, "only one of openapi, mcp and command may be set")
	}
	if !slices.Contains([]string{"strict", "warn", "off"}, u.Pin) {
		bad(p+".pin", "must be strict, warn or off, got %q", u.Pin)
	}
	if u.Prefix != nil && *u.Prefix != "" && !toolPrefix.MatchString(*u.Prefix) {
		bad(p+".prefix", "%q must be up to 32 characters of A-Z a-z 0-9 _ -", *u.Prefix)
	}
	switch u.Kind() {
	case "openapi":
		if err := checkURL(u.BaseURL, false); err != nil {
			bad(p+".base_url", "%v", err)
		}
		for key, set := range map[string]bool{"env": u.Env != nil, "headers": u.Headers != nil, "prefix": u.Prefix != nil} {
			if set {
				bad(p+"."+key, "applies only to an mcp or command upstream")
			}
		}
	case "mcp":
		if u.BaseURL != "" {
			bad(p+".base_url", "applies only to an openapi upstream (mcp names the server's URL)")
		}
		if err := checkMCPURL(u.MCP); err != nil {
			bad(p+".mcp", "%v", err)
		}
		if u.Env != nil {
			bad(p+".env", "applies only to a command upstream")
		}
		for k := range u.Headers {
			if !upstreamHeader.MatchString(k) {
				bad(p+".headers", "%q is not a valid header name", k)
			}
		}
	case "command":
		if u.BaseURL != "" {
			bad(p+".base_url", "applies only to an openapi upstream")
		}
		if strings.TrimSpace(u.Command[0]) == "" {
			bad(p+".command", "the program (first item) must not be empty")
		}
		if u.Headers != nil {
			bad(p+".headers", "applies only to an mcp upstream (a command upstream speaks stdio)")
		}
		if u.TokenExchange.Enabled() {
			bad(p+".token_exchange", "applies only to openapi and mcp upstreams (a command upstream gets the assertion in _meta)")
		}
		for k := range u.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				bad(p+".env", "%q is not a valid variable name", k)
			}
		}
	}
	return ps
}

var toolPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// checkMCPURL checks an MCP server's URL: absolute http(s), a path
// allowed, no credentials or fragment, https unless loopback.
func checkMCPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a valid URL")
	}
	shown := u.Redacted()
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", shown)
	}
	if u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q must not carry credentials or a fragment (use headers)", shown)
	}
	return secureURL(s)
}

// validateTokenExchange checks an upstream's optional token_exchange: when
// any key is set, token_url (https, or http on loopback) and client_id are
// required.
func validateTokenExchange(p string, te TokenExchange) Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if te == (TokenExchange{}) {
		return nil
	}
	if !te.Enabled() {
		bad(p+".token_url", "required when any token_exchange key is set: the IdP's token endpoint")
	} else if err := checkURL(te.TokenURL, false); err != nil {
		bad(p+".token_url", "%v", err)
	} else if err := secureURL(te.TokenURL); err != nil {
		bad(p+".token_url", "%v", err)
	}
	if te.ClientID == "" {
		bad(p+".client_id", "required: the gateway's client id at the IdP")
	}
	if strings.ContainsAny(te.Audience, " \t\r\n") {
		bad(p+".audience", "must be one audience without spaces")
	}
	return ps
}

// validateOAuth checks the optional oauth section: when any key is set,
// login_issuer must be one of auth.issuers and client_id is required.
func (c *Config) validateOAuth() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	o := c.OAuth
	if o.AccessTTL <= 0 || o.AccessTTL.D() > 24*time.Hour {
		bad("oauth.access_ttl", "must be between 1s and 24h, got %s", o.AccessTTL)
	}
	if o.RefreshTTL <= 0 || o.RefreshTTL.D() > 90*24*time.Hour {
		bad("oauth.refresh_ttl", "must be between 1s and 2160h (90 days), got %s", o.RefreshTTL)
	} else if o.RefreshTTL < o.AccessTTL {
		bad("oauth.refresh_ttl", "must not be shorter than oauth.access_ttl (%s)", o.AccessTTL)
	}
	if o.Recheck < Duration(time.Second) {
		bad("oauth.recheck", "must be at least 1s, got %s", o.Recheck)
	}
	if _, err := o.StateKeyBytes(); err != nil {
		bad("oauth.state_key", "%s", err)
	}
	if !o.Enabled() {
		if o.ClientID != "" || o.ClientSecret != "" {
			bad("oauth.login_issuer", "required when oauth.client_id or oauth.client_secret is set")
		}
		return ps
	}
	found := false
	for _, is := range c.Auth.Issuers {
		if is.Issuer == o.LoginIssuer {
			found = true
		}
	}
	if !found {
		bad("oauth.login_issuer", "%q must be one of auth.issuers", o.LoginIssuer)
	}
	if o.ClientID == "" {
		bad("oauth.client_id", "required: the gateway's client id at the login issuer")
	}
	return ps
}

// validateApprovals checks the optional approvals section.
func (c *Config) validateApprovals() Problems {
	var ps Problems
	a := c.Approvals
	if a.WebhookURL != "" {
		u, err := url.Parse(a.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			ps = append(ps, Problem{Path: "approvals.webhook_url", Msg: "must be an http(s) URL"})
		}
	}
	if a.WebhookSecret != "" && a.WebhookURL == "" {
		ps = append(ps, Problem{Path: "approvals.webhook_secret", Msg: "set without approvals.webhook_url"})
	}
	if a.WebhookSecret != "" && len(a.WebhookSecret) < 16 {
		ps = append(ps, Problem{Path: "approvals.webhook_secret", Msg: "must be at least 16 characters (a random secret, written as ${VAR})"})
	}
	return ps
}
