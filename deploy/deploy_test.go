// Package deploy holds the tests of the deployment files at the root of the
// repository: Dockerfile, docker-compose.yml and the configs in deploy/. They
// keep the compose stack, the gateway config inside it, the Dex config and
// the images in agreement, so that `docker compose up` leads to a working
// stack. The package has no code of its own.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentharness/harness/internal/config"
)

// root is the repository root, seen from this package.
const root = ".."

// clientSecretVar is the environment variable holding the gateway's client
// secret at Dex.
const clientSecretVar = "HARNESS_OIDC_CLIENT_SECRET"

type composeFile struct {
	Name     string             `yaml:"name"`
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       *build            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Expose      []string          `yaml:"expose"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	NetworkMode string `yaml:"network_mode"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type dexConfig struct {
	Issuer string `yaml:"issuer"`
	Web    struct {
		HTTP  string `yaml:"http"`
		HTTPS string `yaml:"https"`
	} `yaml:"web"`
	OAuth2 struct {
		GrantTypes        []string `yaml:"grantTypes"`
		PasswordConnector string   `yaml:"passwordConnector"`
	} `yaml:"oauth2"`
	StaticClients []struct {
		ID           string   `yaml:"id"`
		Secret       string   `yaml:"secret"`
		SecretEnv    string   `yaml:"secretEnv"`
		RedirectURIs []string `yaml:"redirectURIs"`
	} `yaml:"staticClients"`
	EnablePasswordDB bool `yaml:"enablePasswordDB"`
	StaticPasswords  []struct {
		Email  string   `yaml:"email"`
		Hash   string   `yaml:"hash"`
		Groups []string `yaml:"groups"`
	} `yaml:"staticPasswords"`
}

type prometheusConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// readYAML decodes the file at root/rel into v.
func readYAML(t *testing.T, rel string, v any) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return data
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	readYAML(t, "docker-compose.yml", &c)
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	return c
}

// mustService returns the compose service name or fails the test.
func (c composeFile) mustService(t *testing.T, name string) service {
	t.Helper()
	s, ok := c.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q", name)
	}
	return s
}

// portMapping is one "host_ip:host_port:container_port" entry of ports.
type portMapping struct{ hostIP, hostPort, containerPort string }

func parsePorts(t *testing.T, svc string, ports []string) []portMapping {
	t.Helper()
	var out []portMapping
	for _, p := range ports {
		p, _, _ = strings.Cut(p, "/") // 8080/tcp
		parts := strings.Split(p, ":")
		var m portMapping
		switch len(parts) {
		case 1:
			m = portMapping{containerPort: parts[0]}
		case 2:
			m = portMapping{hostPort: parts[0], containerPort: parts[1]}
		case 3:
			m = portMapping{hostIP: parts[0], hostPort: parts[1], containerPort: parts[2]}
		default:
			t.Errorf("docker-compose.yml: services.%s.ports: cannot parse %q", svc, p)
			continue
		}
		out = append(out, m)
	}
	return out
}

// published returns the host port that publishes containerPort of svc.
func published(t *testing.T, svc string, s service, containerPort string) (portMapping, bool) {
	t.Helper()
	for _, m := range parsePorts(t, svc, s.Ports) {
		if m.containerPort == containerPort {
			return m, true
		}
	}
	return portMapping{}, false
}

// mountTarget returns where s mounts the bind source src ("./deploy/x").
func mountTarget(s service, src string) (string, bool) {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && filepath.Clean(parts[0]) == filepath.Clean(src) {
			return parts[1], true
		}
	}
	return "", false
}

// hostPort splits a URL's host and port, defaulting the port by scheme.
func hostPort(t *testing.T, key, raw string) (*url.URL, string, string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("%s: %q is not an absolute URL", key, raw)
	}
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		case "redis", "rediss":
			port = "6379"
		}
	}
	return u, u.Hostname(), port
}

// loadGatewayConfig loads deploy/harness.yaml exactly as `gateway serve`
// does, with the ${VAR}s it needs set and no HARNESS_* override leaking in
// from the environment of the test.
func loadGatewayConfig(t *testing.T) *config.Config {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, config.EnvPrefix) {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	t.Setenv(clientSecretVar, "test-client-secret")
	cfg, err := config.Load(filepath.Join(root, "deploy", "harness.yaml"))
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) && len(ps) > 0 && onlyOAuthUnknown(ps) {
			t.Fatalf("deploy/harness.yaml is rejected only because this build does not know the oauth section yet "+
				"(it lands with the OAuth authorization server work): %v", err)
		}
		t.Fatalf("deploy/harness.yaml does not load: %v", err)
	}
	return cfg
}

func onlyOAuthUnknown(ps config.Problems) bool {
	for _, p := range ps {
		if p.Path != "oauth" && !strings.HasPrefix(p.Path, "oauth.") {
			return false
		}
	}
	return true
}

// TestComposeMatchesGatewayConfig checks that docker-compose.yml, the gateway
// config it mounts (deploy/harness.yaml, loaded with the gateway's own config
// loader), the Dex config and the Prometheus config agree: ports, issuer,
// client, upstream, Redis, traces, metrics and the upstream's view of the
// gateway.
func TestComposeMatchesGatewayConfig(t *testing.T) {
	cfg := loadGatewayConfig(t)
	c := loadCompose(t)
	var dex dexConfig
	readYAML(t, "deploy/dex.yaml", &dex)
	var raw struct {
		OAuth struct {
			LoginIssuer  string `yaml:"login_issuer"`
			ClientID     string `yaml:"client_id"`
			ClientSecret string `yaml:"client_secret"`
		} `yaml:"oauth"`
	}
	readYAML(t, "deploy/harness.yaml", &raw)

	gw := c.mustService(t, "gateway")

	// The gateway runs the mounted config.
	cfgPath, ok := mountTarget(gw, "./deploy/harness.yaml")
	if !ok {
		t.Fatal("the gateway service does not mount ./deploy/harness.yaml")
	}
	cmd := gw.Command
	if len(cmd) == 0 {
		cmd = dockerfileCMD(t)
	}
	if i := slices.Index(cmd, "--config"); i < 0 || i+1 >= len(cmd) || cmd[i+1] != cfgPath {
		t.Errorf("the gateway runs %q but the config is mounted at %s", cmd, cfgPath)
	}

	// listen ↔ the published port ↔ public_url.
	lhost, lport, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		t.Fatalf("listen %q: %v", cfg.Listen, err)
	}
	if ip := net.ParseIP(lhost); lhost == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("listen %q is loopback inside the container: nothing outside it can connect", cfg.Listen)
	}
	gwPort, ok := published(t, "gateway", gw, lport)
	if !ok {
		t.Fatalf("the gateway listens on %s but docker-compose.yml publishes no container port %s (ports: %q)", cfg.Listen, lport, gw.Ports)
	}
	pub, pubHost, pubPort := hostPort(t, "public_url", cfg.PublicURL)
	if pubHost != "localhost" && pubHost != "127.0.0.1" {
		t.Errorf("public_url %q: the compose stack is reached on this machine (localhost)", cfg.PublicURL)
	}
	if pubPort != gwPort.hostPort {
		t.Errorf("public_url %q has port %s, but the gateway is published on host port %q", cfg.PublicURL, pubPort, gwPort.hostPort)
	}
	if pub.Scheme != "http" {
		t.Errorf("public_url %q: the gateway in the stack serves plain http", cfg.PublicURL)
	}

	// The issuer: one, Dex's, reachable at the same URL from the browser and
	// from the gateway.
	if len(cfg.Auth.Issuers) != 1 {
		t.Fatalf("auth.issuers: want exactly Dex, got %d issuers", len(cfg.Auth.Issuers))
	}
	is := cfg.Auth.Issuers[0]
	if is.Issuer != dex.Issuer {
		t.Errorf("auth.issuers[0].issuer %q != Dex's issuer %q (deploy/dex.yaml)", is.Issuer, dex.Issuer)
	}
	_, issHost, issPort := hostPort(t, "dex issuer", dex.Issuer)
	dexSvc := c.mustService(t, "dex")
	if strings.HasPrefix(dex.Issuer, "http://") {
		// Plain http is only accepted on loopback: Dex must share the
		// gateway's network namespace for "localhost" to be Dex there.
		if issHost != "localhost" && issHost != "127.0.0.1" {
			t.Errorf("Dex issuer %q: plain http needs a loopback host", dex.Issuer)
		}
		if dexSvc.NetworkMode != "service:gateway" {
			t.Errorf("Dex issuer %q is loopback, but the dex service has network_mode %q, not service:gateway: the gateway could not reach it", dex.Issuer, dexSvc.NetworkMode)
		}
		if _, webPort, err := net.SplitHostPort(dex.Web.HTTP); err != nil || webPort != issPort {
			t.Errorf("Dex web.http %q does not serve the issuer's port %s", dex.Web.HTTP, issPort)
		}
		if m, ok := published(t, "gateway", gw, issPort); !ok || m.hostPort != issPort {
			t.Errorf("the browser reaches Dex at %s, but the gateway service (whose network Dex shares) publishes %q", dex.Issuer, gw.Ports)
		}
	}
	if dexSvc.Healthcheck == nil || !strings.Contains(strings.Join(dexSvc.Healthcheck.Test, " "), strings.TrimPrefix(dex.Issuer, "http://localhost:"+issPort)+"/.well-known/openid-configuration") {
		t.Errorf("the dex health check does not probe the issuer's discovery document: %v", dexSvc.Healthcheck)
	}
	if m, ok := mountTarget(dexSvc, "./deploy/dex.yaml"); !ok || !slices.Contains(dexSvc.Command, m) {
		t.Errorf("the dex service must mount ./deploy/dex.yaml where its command reads it (command %q)", dexSvc.Command)
	}

	// Groups become roles, and the roles are the policy's.
	if is.RolesClaim != "groups" {
		t.Errorf("auth.issuers[0].roles_claim = %q; Dex puts group membership in \"groups\"", is.RolesClaim)
	}
	// Dex releases the groups claim at sign-in only for the groups scope.
	if !slices.Contains(cfg.OAuth.Scopes, "groups") {
		t.Errorf("oauth.scopes = %v: without \"groups\", humans signing in through a copilot get no roles", cfg.OAuth.Scopes)
	}
	var policyData struct {
		Grants map[string]any `json:"grants"`
	}
	if b, err := os.ReadFile(filepath.Join(root, "policy", "data.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &policyData); err != nil {
		t.Fatalf("policy/data.json: %v", err)
	}
	if !dex.EnablePasswordDB || len(dex.StaticPasswords) == 0 {
		t.Error("deploy/dex.yaml: no static users to sign in with")
	}
	roles := map[string]bool{}
	for _, u := range dex.StaticPasswords {
		if len(u.Groups) == 0 {
			t.Errorf("Dex user %s has no groups: no role, every call denied", u.Email)
		}
		for _, g := range u.Groups {
			if _, ok := policyData.Grants[g]; !ok {
				t.Errorf("Dex user %s is in group %q, which the default policy grants nothing", u.Email, g)
			}
			roles[g] = true
		}
	}
	if len(roles) < 2 {
		t.Errorf("Dex users cover %d roles, want at least two", len(roles))
	}

	// The gateway's client at Dex, for oauth.login_issuer.
	if raw.OAuth.LoginIssuer != dex.Issuer {
		t.Errorf("oauth.login_issuer %q != Dex's issuer %q", raw.OAuth.LoginIssuer, dex.Issuer)
	}
	var client *struct {
		ID           string   `yaml:"id"`
		Secret       string   `yaml:"secret"`
		SecretEnv    string   `yaml:"secretEnv"`
		RedirectURIs []string `yaml:"redirectURIs"`
	}
	for i := range dex.StaticClients {
		if dex.StaticClients[i].ID == raw.OAuth.ClientID {
			client = &dex.StaticClients[i]
		}
	}
	if client == nil {
		t.Fatalf("oauth.client_id %q is not a static client of Dex", raw.OAuth.ClientID)
	}
	if want := cfg.PublicURL + "/oauth/callback"; !slices.Contains(client.RedirectURIs, want) {
		t.Errorf("Dex client %q redirect URIs %q lack the gateway's callback %s", client.ID, client.RedirectURIs, want)
	}
	if raw.OAuth.ClientSecret != "${"+clientSecretVar+"}" {
		t.Errorf("oauth.client_secret = %q, want ${%s} (secrets come from the environment)", raw.OAuth.ClientSecret, clientSecretVar)
	}
	if client.Secret != "" || client.SecretEnv != clientSecretVar {
		t.Errorf("Dex client %q must take its secret from $%s (secretEnv), not from the file", client.ID, clientSecretVar)
	}
	for _, name := range []string{"gateway", "dex"} {
		if _, ok := c.Services[name].Environment[clientSecretVar]; !ok {
			t.Errorf("services.%s.environment lacks %s", name, clientSecretVar)
		}
	}
	if !slices.Contains(is.Audiences, client.ID) {
		t.Errorf("auth.issuers[0].audiences %q: Dex tokens carry the client id %q in aud", is.Audiences, client.ID)
	}
	for _, gt := range []string{"authorization_code", "refresh_token"} {
		if len(dex.OAuth2.GrantTypes) > 0 && !slices.Contains(dex.OAuth2.GrantTypes, gt) {
			t.Errorf("Dex oauth2.grantTypes lacks %s, which the gateway's sign-in needs", gt)
		}
	}

	// The upstream: the FastAPI service, by compose name and port.
	if len(cfg.Upstreams) != 1 {
		t.Fatalf("upstreams: want the example FastAPI service only, got %d", len(cfg.Upstreams))
	}
	up := cfg.Upstreams[0]
	_, upHost, upPort := hostPort(t, "upstreams[0].base_url", up.BaseURL)
	api, ok := c.Services[upHost]
	if !ok {
		t.Fatalf("upstreams[0].base_url %q: no compose service %q", up.BaseURL, upHost)
	}
	if api.Build == nil || filepath.Clean(api.Build.Context) != filepath.Clean("./examples/fastapi") {
		t.Errorf("service %s is not built from examples/fastapi: %+v", upHost, api.Build)
	}
	if !slices.Contains(api.Expose, upPort) {
		if _, ok := published(t, upHost, api, upPort); !ok {
			t.Errorf("upstreams[0].base_url %q: service %s exposes %q, not port %s", up.BaseURL, upHost, api.Expose, upPort)
		}
	}
	if got := fastapiPort(t); got != upPort {
		t.Errorf("examples/fastapi/Dockerfile serves port %s, upstreams[0].base_url %q says %s", got, up.BaseURL, upPort)
	}
	if want := strings.TrimRight(up.BaseURL, "/") + "/openapi.json"; up.OpenAPI != want {
		t.Errorf("upstreams[0].openapi = %q, want %q", up.OpenAPI, want)
	}
	if api.Healthcheck == nil {
		t.Errorf("service %s has no health check; the gateway waits for it", upHost)
	}

	// The upstream verifies the gateway's assertions: JWKS at the gateway's
	// compose name, issuer = public_url, audience = the upstream's name.
	if want := "http://gateway:" + lport + "/.well-known/jwks.json"; api.Environment["HARNESS_JWKS_URL"] != want {
		t.Errorf("services.%s.environment.HARNESS_JWKS_URL = %q, want %q", upHost, api.Environment["HARNESS_JWKS_URL"], want)
	}
	if api.Environment["HARNESS_ISSUER"] != cfg.PublicURL {
		t.Errorf("services.%s.environment.HARNESS_ISSUER = %q, want public_url %q (the iss of every assertion)", upHost, api.Environment["HARNESS_ISSUER"], cfg.PublicURL)
	}
	if aud := api.Environment["HARNESS_AUDIENCE"]; aud != up.Name && !(aud == "" && up.Name == "crm") {
		t.Errorf("services.%s.environment.HARNESS_AUDIENCE = %q, want the upstream's name %q", upHost, aud, up.Name)
	}

	// Redis.
	if cfg.RateLimit.RedisURL == "" {
		t.Fatal("ratelimit.redis_url is empty: the stack runs Redis for shared state")
	}
	_, rHost, rPort := hostPort(t, "ratelimit.redis_url", cfg.RateLimit.RedisURL)
	rs, ok := c.Services[rHost]
	if !ok || !strings.HasPrefix(rs.Image, "redis:") {
		t.Errorf("ratelimit.redis_url %q: no redis service named %q", cfg.RateLimit.RedisURL, rHost)
	}
	if rPort != "6379" {
		t.Errorf("ratelimit.redis_url %q: redis listens on 6379", cfg.RateLimit.RedisURL)
	}

	// Traces to Jaeger over OTLP/HTTP.
	_, oHost, oPort := hostPort(t, "telemetry.otlp_endpoint", cfg.Telemetry.OTLPEndpoint)
	js, ok := c.Services[oHost]
	if !ok || !strings.Contains(js.Image, "jaeger") {
		t.Errorf("telemetry.otlp_endpoint %q: no jaeger service named %q", cfg.Telemetry.OTLPEndpoint, oHost)
	}
	if oPort != "4318" || !slices.Contains(js.Expose, "4318") {
		t.Errorf("telemetry.otlp_endpoint %q: Jaeger takes OTLP/HTTP on 4318 (exposed: %q)", cfg.Telemetry.OTLPEndpoint, js.Expose)
	}

	// Prometheus scrapes the gateway.
	ps := c.mustService(t, "prometheus")
	promPath, ok := mountTarget(ps, "./deploy/prometheus.yml")
	if !ok || !slices.Contains(ps.Command, "--config.file="+promPath) {
		t.Errorf("the prometheus service must mount ./deploy/prometheus.yml where --config.file points (command %q)", ps.Command)
	}
	var prom prometheusConfig
	readYAML(t, "deploy/prometheus.yml", &prom)
	scraped := false
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "gateway:"+lport) && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") && sc.Scheme != "https" {
				scraped = true
			}
		}
	}
	if !scraped {
		t.Errorf("deploy/prometheus.yml does not scrape gateway:%s/metrics", lport)
	}

	// The gateway waits for what it needs, and the audit trail is on a volume.
	for _, dep := range []string{upHost, rHost} {
		if gw.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("the gateway should depend on %s with condition service_healthy, got %q", dep, gw.DependsOn[dep].Condition)
		}
	}
	auditOnVolume := false
	for _, v := range gw.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && !strings.HasPrefix(parts[0], ".") && !strings.HasPrefix(parts[0], "/") &&
			strings.HasPrefix(cfg.Audit.Path, strings.TrimRight(parts[1], "/")+"/") {
			if _, ok := c.Volumes[parts[0]]; ok {
				auditOnVolume = true
			}
		}
	}
	if !auditOnVolume {
		t.Errorf("audit.path %q is not on a named volume of the gateway service (%q): the trail would die with the container", cfg.Audit.Path, gw.Volumes)
	}
	if gw.Healthcheck == nil || !strings.Contains(strings.Join(gw.Healthcheck.Test, " "), ":"+lport+"/readyz") {
		t.Errorf("the gateway's health check should probe /readyz on port %s: %v", lport, gw.Healthcheck)
	}
}

// TestComposeFile checks the structure of docker-compose.yml and, when the
// docker compose plugin is installed, validates it with `docker compose
// config`.
func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	for _, want := range []string{"gateway", "redis", "fastapi", "dex", "jaeger", "prometheus"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("docker-compose.yml: no %s service", want)
		}
	}
	for name, s := range c.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("services.%s: neither image nor build", name)
		}
		if s.Build != nil {
			df := s.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(root, s.Build.Context, df)); err != nil {
				t.Errorf("services.%s.build: %v", name, err)
			}
		}
		if s.Image != "" && s.Build == nil && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) {
			t.Errorf("services.%s.image %q: pin a version", name, s.Image)
		}
		for _, m := range parsePorts(t, name, s.Ports) {
			if m.hostIP != "127.0.0.1" {
				t.Errorf("services.%s publishes %s:%s on every interface; the development stack binds 127.0.0.1 only", name, m.hostPort, m.containerPort)
			}
		}
		for _, v := range s.Volumes {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("services.%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("services.%s mounts the volume %q, which volumes: does not declare", name, src)
			}
		}
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			if !ok {
				t.Errorf("services.%s depends on unknown service %q", name, dep)
				continue
			}
			if d.Condition == "service_healthy" && (target.Healthcheck == nil || len(target.Healthcheck.Test) == 0) {
				t.Errorf("services.%s waits for %s to be healthy, which has no health check", name, dep)
			}
		}
		if mode, ok := strings.CutPrefix(s.NetworkMode, "service:"); ok {
			if _, exists := c.Services[mode]; !exists {
				t.Errorf("services.%s shares the network of unknown service %q", name, mode)
			}
			if len(s.Ports) > 0 {
				t.Errorf("services.%s shares another service's network and cannot publish ports itself", name)
			}
		}
	}

	// `docker compose config` resolves and validates the whole file. The
	// docker CLI without the compose plugin cannot: say so, do not fail.
	compose, err := composeCommand()
	if err != nil {
		t.Logf("docker compose: not available (%v); the file was checked structurally only", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(compose[1:], "-f", "docker-compose.yml", "config", "--quiet")
	cmd := exec.CommandContext(ctx, compose[0], args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), clientSecretVar+"=test-client-secret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s config: %v\n%s", strings.Join(compose, " "), err, out)
	} else {
		t.Logf("%s config: the file is valid", strings.Join(compose, " "))
	}
}

// composeCommand finds `docker compose` (the plugin) or `docker-compose`.
func composeCommand() ([]string, error) {
	var errs []error
	for _, cand := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		path, err := exec.LookPath(cand[0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		out, err := exec.CommandContext(ctx, path, append(cand[1:], "version")...).CombinedOutput()
		cancel()
		if err != nil {
			errs = append(errs, errors.New(strings.Join(cand, " ")+" version: "+firstLine(out, err)))
			continue
		}
		return append([]string{path}, cand[1:]...), nil
	}
	return nil, errors.Join(errs...)
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// dockerInstr is one instruction of a Dockerfile.
type dockerInstr struct {
	op   string // upper case: FROM, RUN, COPY…
	args string
}

// parseDockerfile returns the instructions of the file at root/rel, with
// continuation lines joined and comments dropped, split into stages.
func parseDockerfile(t *testing.T, rel string) [][]dockerInstr {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]dockerInstr
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		op, args, _ := strings.Cut(line, " ")
		in := dockerInstr{op: strings.ToUpper(op), args: strings.TrimSpace(args)}
		if in.op == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.op != "ARG" {
				t.Errorf("%s: %s before the first FROM", rel, in.op)
			}
			return
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	if len(stages) == 0 {
		t.Fatalf("%s: no FROM", rel)
	}
	return stages
}

// execForm decodes an exec-form (JSON array) ENTRYPOINT or CMD.
func execForm(t *testing.T, rel string, in dockerInstr) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Errorf("%s: %s %s is not in exec form (a JSON array): signals would go to a shell", rel, in.op, in.args)
	}
	return v
}

func last(stage []dockerInstr, op string) (dockerInstr, bool) {
	for i := len(stage) - 1; i >= 0; i-- {
		if stage[i].op == op {
			return stage[i], true
		}
	}
	return dockerInstr{}, false
}

func dockerfileCMD(t *testing.T) []string {
	t.Helper()
	stages := parseDockerfile(t, "Dockerfile")
	in, ok := last(stages[len(stages)-1], "CMD")
	if !ok {
		t.Fatal("Dockerfile: no CMD")
	}
	return execForm(t, "Dockerfile", in)
}

func fastapiPort(t *testing.T) string {
	t.Helper()
	stages := parseDockerfile(t, "examples/fastapi/Dockerfile")
	in, ok := last(stages[len(stages)-1], "CMD")
	if !ok {
		t.Fatal("examples/fastapi/Dockerfile: no CMD")
	}
	cmd := execForm(t, "examples/fastapi/Dockerfile", in)
	if i := slices.Index(cmd, "--port"); i >= 0 && i+1 < len(cmd) {
		return cmd[i+1]
	}
	return "8000" // uvicorn's default
}

// nonRoot reports whether a USER value names someone other than root.
func nonRoot(user string) bool {
	u, _, _ := strings.Cut(user, ":")
	return u != "" && u != "root" && u != "0"
}

// TestDockerfile checks that the gateway image is a multi-stage build of a
// static binary whose entrypoint is the gateway, run as a non-root user, and
// that the FastAPI image installs its requirements and runs as non-root.
// With a running docker engine it builds the image and inspects it.
func TestDockerfile(t *testing.T) {
	const rel = "Dockerfile"
	stages := parseDockerfile(t, rel)
	if len(stages) < 2 {
		t.Fatalf("%s: %d stage(s); build the binary in one stage and ship it in another", rel, len(stages))
	}
	final := stages[len(stages)-1]

	ep, ok := last(final, "ENTRYPOINT")
	if !ok {
		t.Fatalf("%s: no ENTRYPOINT in the final stage", rel)
	}
	entry := execForm(t, rel, ep)
	if len(entry) != 1 || entry[0] != "/usr/local/bin/gateway" {
		t.Errorf("%s: ENTRYPOINT %q, want [\"/usr/local/bin/gateway\"]", rel, entry)
	}
	cmdIn, ok := last(final, "CMD")
	if !ok {
		t.Fatalf("%s: no CMD in the final stage", rel)
	}
	if got, want := execForm(t, rel, cmdIn), []string{"serve", "--config", "/etc/harness/harness.yaml"}; !slices.Equal(got, want) {
		t.Errorf("%s: CMD %q, want %q", rel, got, want)
	}
	if u, ok := last(final, "USER"); !ok || !nonRoot(u.args) {
		t.Errorf("%s: the final stage must switch to a non-root USER (got %q)", rel, u.args)
	}

	// The binary: built static from ./cmd/gateway and copied to the entrypoint.
	var buildOut, buildStage string
	for _, st := range stages[:len(stages)-1] {
		from := strings.Fields(st[0].args)
		for _, in := range st {
			if in.op != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			if !strings.Contains(in.args, "CGO_ENABLED=0") {
				t.Errorf("%s: go build without CGO_ENABLED=0: the binary would not be static", rel)
			}
			if !strings.Contains(in.args, "./cmd/gateway") {
				t.Errorf("%s: go build does not build ./cmd/gateway", rel)
			}
			if m := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(in.args); m != nil {
				buildOut = m[1]
			}
			if len(from) == 3 && strings.EqualFold(from[1], "AS") {
				buildStage = from[2]
			}
			checkGoVersion(t, rel, from[0])
		}
	}
	if buildOut == "" || buildStage == "" {
		t.Fatalf("%s: no named build stage running go build -o", rel)
	}
	copied := false
	for _, in := range final {
		if in.op == "COPY" && strings.Contains(in.args, "--from="+buildStage) {
			f := strings.Fields(in.args)
			if f[len(f)-2] == buildOut && f[len(f)-1] == entry[0] {
				copied = true
			}
		}
	}
	if !copied {
		t.Errorf("%s: the final stage does not COPY --from=%s %s %s", rel, buildStage, buildOut, "/usr/local/bin/gateway")
	}

	// What the build needs must not be in .dockerignore.
	if ig, err := os.ReadFile(filepath.Join(root, ".dockerignore")); err != nil {
		t.Errorf(".dockerignore: %v (the build context would carry .git and more)", err)
	} else {
		for _, line := range strings.Split(string(ig), "\n") {
			p := strings.TrimRight(strings.TrimSpace(line), "/")
			for _, need := range []string{"go.mod", "go.sum", "cmd", "internal", "policy", "delegation", "tools"} {
				if p == need || p == need+"/*" || p == "*" {
					t.Errorf(".dockerignore excludes %s, which the build needs", need)
				}
			}
		}
	}

	// The example service's image.
	const apiRel = "examples/fastapi/Dockerfile"
	api := parseDockerfile(t, apiRel)
	apiFinal := api[len(api)-1]
	if img := strings.Fields(apiFinal[0].args)[0]; !strings.HasPrefix(img, "python:") || !strings.Contains(img, "slim") {
		t.Errorf("%s: FROM %s, want a python slim image", apiRel, img)
	}
	pip := false
	for _, in := range apiFinal {
		if in.op == "RUN" && regexp.MustCompile(`pip install .*-r requirements\.txt`).MatchString(in.args) {
			pip = true
		}
	}
	if !pip {
		t.Errorf("%s: does not pip install -r requirements.txt", apiRel)
	}
	if u, ok := last(apiFinal, "USER"); !ok || !nonRoot(u.args) {
		t.Errorf("%s: must run as a non-root USER", apiRel)
	}

	dockerBuild(t)
}

// checkGoVersion compares the builder image's Go with go.mod's go directive.
func checkGoVersion(t *testing.T, rel, image string) {
	t.Helper()
	tag, ok := strings.CutPrefix(image, "golang:")
	if !ok {
		t.Errorf("%s: go build runs in %s, not a golang image", rel, image)
		return
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	want := m[1] + "." + m[2]
	if tag != want && !strings.HasPrefix(tag, want+".") && !strings.HasPrefix(tag, want+"-") {
		t.Errorf("%s: builder %s, but go.mod needs go %s", rel, image, want)
	}
}

// dockerBuild builds the gateway image and inspects its entrypoint and user
// when a docker engine is running; otherwise it says why it did not.
func dockerBuild(t *testing.T) {
	t.Helper()
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Logf("docker: not installed; the image was not built (Dockerfile checked as text)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	out, err := exec.CommandContext(ctx, docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	cancel()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Logf("docker: no running engine (%s); the image was not built (Dockerfile checked as text)", firstLine(out, errOr(err)))
		return
	}
	tag := "harness-gateway:deploy-test-" + strconv.Itoa(os.Getpid())
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, docker, "build", "-q", "-t", tag, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(docker, "image", "rm", "-f", tag).Run() })
	out, err = exec.CommandContext(ctx, docker, "image", "inspect", "--format", "{{json .Config.Entrypoint}} {{.Config.User}}", tag).CombinedOutput()
	if err != nil {
		t.Fatalf("docker image inspect: %v\n%s", err, out)
	}
	entry, user, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if entry != `["/usr/local/bin/gateway"]` {
		t.Errorf("image entrypoint %s, want [\"/usr/local/bin/gateway\"]", entry)
	}
	if !nonRoot(user) {
		t.Errorf("image user %q: must not be root", user)
	}
	run := exec.CommandContext(ctx, docker, "run", "--rm", "--network", "none", tag, "version")
	if out, err := run.CombinedOutput(); err != nil {
		t.Errorf("docker run %s version: %v\n%s", tag, err, out)
	}
}

func errOr(err error) error {
	if err == nil {
		return errors.New("empty answer")
	}
	return err
}
