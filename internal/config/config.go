// Package config is the gateway's typed configuration: one YAML schema for the
// whole product, defaults in one place, `${VAR}` expansion for secrets,
// HARNESS_* environment overrides, and validation that reports every problem
// at once with its key path. Unknown keys are always an error.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Config is the whole gateway configuration. The YAML keys are a fixed
// contract (see ARCHITECTURE.md): renaming one breaks users.
type Config struct {
	// Listen is the address the gateway listens on (host:port).
	Listen string `yaml:"listen"`
	// PublicURL is the URL agents reach the gateway at, without a trailing
	// slash. public_url + "/mcp" is the protected resource identifier and the
	// default token audience.
	PublicURL string `yaml:"public_url"`
	// Environment names this deployment (production, staging, preview…); the
	// policy sees it as input.environment.
	Environment string `yaml:"environment"`
	// Auth lists the identity providers whose tokens the gateway trusts.
	Auth Auth `yaml:"auth"`
	// Policy selects the Rego policy that decides every list and call.
	Policy Policy `yaml:"policy"`
	// Delegation bounds the delegation tokens the gateway issues.
	Delegation Delegation `yaml:"delegation"`
	// OAuth makes the gateway the OAuth authorization server copilots
	// connect to; optional (empty login_issuer: off).
	OAuth OAuth `yaml:"oauth"`
	// Approvals tells approvers about calls held for their approval.
	Approvals Approvals `yaml:"approvals"`
	// RateLimit configures the GCRA limiter.
	RateLimit RateLimit `yaml:"ratelimit"`
	// Upstreams are the HTTP APIs served as MCP tools.
	Upstreams []Upstream `yaml:"upstreams"`
	// Redaction configures the detectors applied to every result.
	Redaction Redaction `yaml:"redaction"`
	// Audit configures the hash-chained audit trail.
	Audit Audit `yaml:"audit"`
	// Telemetry configures OpenTelemetry export.
	Telemetry Telemetry `yaml:"telemetry"`
	// Server hardens the HTTP server: client addresses behind proxies,
	// limits on unauthenticated endpoints, and the observability endpoints.
	Server Server `yaml:"server"`
	// CORS lets browser-based MCP clients on other origins call /mcp.
	CORS CORS `yaml:"cors"`
	// Environments lets CI open preview environments at run time (see
	// docs/previews.md); off unless ci_issuers or admin_roles is set.
	Environments Environments `yaml:"environments"`
}

// Environments configures preview environments: who may create and retire
// them, where their upstreams may be, and how long they live.
type Environments struct {
	// CIIssuers are the CI OIDC issuers whose tokens may manage
	// environments, each with the claims a token must carry.
	CIIssuers []CIIssuer `yaml:"ci_issuers"`
	// AdminRoles: a human whose token (from auth.issuers) carries one of
	// these roles may manage every environment.
	AdminRoles []string `yaml:"admin_roles"`
	// AllowedUpstreams are the URL patterns every preview URL (base_url,
	// openapi, mcp) must match: scheme://host[:port][/path], where * stands
	// for part of one host label.
	AllowedUpstreams []string `yaml:"allowed_upstreams"`
	// GitHubWebhookSecret verifies POST /hooks/github (X-Hub-Signature-256);
	// write it as ${VAR}, at least 16 characters. Empty: no webhook (404).
	// Never logged.
	GitHubWebhookSecret string `yaml:"github_webhook_secret"`
	// DefaultTTL is the life of a preview created without a ttl.
	DefaultTTL Duration `yaml:"default_ttl"`
	// MaxTTL is the longest life a preview may ask for.
	MaxTTL Duration `yaml:"max_ttl"`
	// Max is the number of live previews at most.
	Max int `yaml:"max"`
}

// Enabled reports whether anyone may manage preview environments.
func (e Environments) Enabled() bool { return len(e.CIIssuers) > 0 || len(e.AdminRoles) > 0 }

// CIIssuer is one CI OIDC issuer (GitHub Actions, GitLab CI…).
type CIIssuer struct {
	// Issuer is the issuer URL (https unless loopback); discovery and keys
	// are fetched from it.
	Issuer string `yaml:"issuer"`
	// Audiences are the accepted aud values; at least one.
	Audiences []string `yaml:"audiences"`
	// Claims must each match the token's claim of that name: equal, or,
	// for a value ending in *, start with what precedes it.
	Claims map[string]string `yaml:"claims"`
}

// Server configures the HTTP server itself.
type Server struct {
	// TrustedProxies are the CIDRs (or single addresses) of the reverse
	// proxies in front of the gateway. Only a peer in this list may name
	// the client in X-Forwarded-For (the rightmost address that is not a
	// trusted proxy is the client). Empty: the peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// UnauthenticatedRate limits, per client address (IPv6 per /64), every
	// endpoint that works without a token: OAuth registration,
	// authorization, sign-in, consent, token, revocation and the metadata
	// documents.
	UnauthenticatedRate Rate `yaml:"unauthenticated_rate"`
	// UnauthenticatedQuota bounds the state anyone can create without
	// signing in: at most this many registered clients waiting for their
	// first sign-in, and as many pending authorizations and sign-ins, each
	// apart from sessions, grants, limits and revocations.
	UnauthenticatedQuota int `yaml:"unauthenticated_quota"`
	// ReadTimeout bounds the time to read a whole request, headers and
	// body (the legacy GET event stream of /mcp has no body and is exempt).
	ReadTimeout Duration `yaml:"read_timeout"`
	// AdminToken, when set (write ${VAR}), is the bearer token that makes
	// /readyz return its details and guards the read-only admin endpoints
	// (/admin/...), compared in constant time; empty turns those off.
	// Never logged.
	AdminToken string `yaml:"admin_token"`
	// MetricsListen, when set (e.g. 127.0.0.1:9090), serves /metrics only
	// on this separate address, not on listen.
	MetricsListen string `yaml:"metrics_listen"`
}

// Auth is the inbound authentication configuration.
type Auth struct {
	// Issuers are the trusted OpenID Connect issuers.
	Issuers []Issuer `yaml:"issuers"`
}

// Issuer is one trusted OpenID Connect issuer.
type Issuer struct {
	// Issuer is the issuer URL; discovery and JWKS are fetched from it.
	Issuer string `yaml:"issuer"`
	// Audiences are the accepted `aud` values. Default: public_url and
	// public_url + "/mcp".
	Audiences []string `yaml:"audiences"`
	// RolesClaim names the claim holding the human's roles (a dotted path
	// such as realm_access.roles is allowed). Default: roles.
	RolesClaim string `yaml:"roles_claim"`
	// AgentClaim names the claim identifying the agent. Default: azp, then
	// client_id.
	AgentClaim string `yaml:"agent_claim"`
}

// Policy selects the policy.
type Policy struct {
	// Dir holds .rego files and data.json/data.yaml, hot reloaded. Empty:
	// the policy embedded in the binary.
	Dir string `yaml:"dir"`
	// Query is the Rego query whose value is the decision.
	Query string `yaml:"query"`
}

// Delegation bounds the delegation tokens issued by token exchange.
type Delegation struct {
	// MaxTTL is the longest life of a delegation token.
	MaxTTL Duration `yaml:"max_ttl"`
}

// Approvals configures how approvers learn of held calls (see
// docs/approvals.md). Optional.
type Approvals struct {
	// WebhookURL receives a JSON POST for each new approval request
	// (Slack-compatible "text" plus structured fields); empty: none.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecret, when set, signs each POST: X-Harness-Signature is
	// "sha256=" + hex HMAC-SHA256 of the body. Never logged.
	WebhookSecret string `yaml:"webhook_secret"`
}

// OAuth configures Harness as the authorization server copilots connect to:
// humans sign in at LoginIssuer and approve each agent on a consent page.
// The section is optional; it is on when LoginIssuer is set.
type OAuth struct {
	// LoginIssuer is the identity provider humans sign in at; one of
	// auth.issuers.
	LoginIssuer string `yaml:"login_issuer"`
	// ClientID is the gateway's client id at LoginIssuer.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the gateway's client secret at LoginIssuer (write it
	// as ${VAR}); empty for a public client. Never logged.
	ClientSecret string `yaml:"client_secret"`
	// AccessTTL is the life of an access token issued to a copilot.
	AccessTTL Duration `yaml:"access_ttl"`
	// RefreshTTL is the life of a grant (the refresh-token family) from
	// the human's approval; past it the human must approve again.
	RefreshTTL Duration `yaml:"refresh_ttl"`
	// Scopes are requested from the login issuer at sign-in. Default:
	// openid, profile, email. Add the scope that releases the roles claim
	// when the IdP needs one (groups at Dex and Okta). offline_access is
	// added when the IdP's discovery lists it.
	Scopes []string `yaml:"scopes"`
	// StateKey encrypts the IdP's refresh tokens kept with each grant
	// (AES-256-GCM): 32 bytes, base64 (write it as ${VAR}). Empty: a key
	// made at start (restarts and other replicas cannot read what it
	// sealed: those grants sign in again at the next recheck). Never logged.
	StateKey string `yaml:"state_key"`
	// Recheck is how old the last check of the human at the IdP may be
	// when a copilot refreshes: older, the gateway refreshes at the IdP
	// first (roles and claims renewed; a disabled user loses the grant).
	// It also caps the life of the access tokens of a grant.
	Recheck Duration `yaml:"recheck"`
}

// Enabled reports whether the authorization server is configured.
func (o OAuth) Enabled() bool { return o.LoginIssuer != "" }

// StateKeyBytes decodes StateKey (standard or URL base64, padded or not);
// nil when it is empty.
func (o OAuth) StateKeyBytes() ([]byte, error) {
	if o.StateKey == "" {
		return nil, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(o.StateKey); err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("must decode to 32 bytes, got %d (make one with: openssl rand -base64 32)", len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("is not base64 (make one with: openssl rand -base64 32)")
}

// RateLimit configures rate limiting.
type RateLimit struct {
	// RedisURL selects the shared Redis limiter; empty means in-memory
	// (correct for one replica only).
	RedisURL string `yaml:"redis_url"`
	// Default is the limit applied when the policy decision names none.
	Default Rate `yaml:"default"`
	// OnError says what happens when Redis cannot be reached: deny (the
	// default) or allow.
	OnError string `yaml:"on_error"`
	// RedisTimeout bounds every Redis call (rate limit, session, revocation,
	// key lookups); past it the call counts as Redis being unreachable.
	RedisTimeout Duration `yaml:"redis_timeout"`
	// Refusals is the budget of refused calls (unknown tool, denied, rate
	// limited, invalid arguments) per human that are audited one by one;
	// beyond it refusals are still answered but audited in aggregate, so a
	// spinning agent cannot fill the audit trail.
	Refusals Rate `yaml:"refusals"`
}

// Rate is a number of requests per period.
type Rate struct {
	Requests int      `yaml:"requests"`
	Per      Duration `yaml:"per"`
}

// Upstream is one HTTP API served as MCP tools.
type Upstream struct {
	// Name prefixes the tool names (<name>_<operationId>) and is the
	// audience of the identity assertion the upstream receives.
	Name string `yaml:"name"`
	// BaseURL is the only address the gateway contacts for this upstream.
	BaseURL string `yaml:"base_url"`
	// OpenAPI is the URL or file of the upstream's OpenAPI 3.0/3.1 document.
	// An upstream has exactly one of openapi, mcp and command.
	OpenAPI string `yaml:"openapi"`
	// MCP is the URL of an MCP server over streamable HTTP (either protocol
	// era) whose tools, resources and prompts the gateway federates.
	MCP string `yaml:"mcp"`
	// Command is the argv of a stdio MCP server the gateway starts,
	// restarts with backoff when it exits, and stops on shutdown.
	Command []string `yaml:"command"`
	// Env is added to the environment of a command upstream.
	Env map[string]string `yaml:"env"`
	// Headers are sent on every request to an mcp upstream (write secrets
	// as ${VAR}); never logged.
	Headers map[string]string `yaml:"headers"`
	// Prefix is put before the names of an MCP upstream's tools and
	// prompts; unset means "<name>_", "" keeps the server's names.
	Prefix *string `yaml:"prefix"`
	// Pin says what happens when an MCP upstream changes a tool definition
	// after it was pinned: strict (withheld until approved), warn (served,
	// logged and audited) or off.
	Pin string `yaml:"pin"`
	// Timeout bounds one call to the upstream.
	Timeout Duration `yaml:"timeout"`
	// TokenExchange, when set, sends this upstream a token the company IdP
	// issued for the human by RFC 8693 token exchange, instead of the
	// gateway's assertion: for upstreams that trust only the IdP.
	TokenExchange TokenExchange `yaml:"token_exchange"`
}

// TokenExchange is how the gateway obtains, for one upstream, a token the
// company IdP issues for the human (RFC 8693).
type TokenExchange struct {
	// TokenURL is the IdP's token endpoint (https; http only on loopback).
	// Empty: the upstream gets the gateway's assertion.
	TokenURL string `yaml:"token_url"`
	// ClientID and ClientSecret are the gateway's client at the IdP, sent
	// by HTTP Basic (write the secret as ${VAR}; it is never logged).
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// Audience is what the IdP puts in aud; default the upstream's name.
	Audience string `yaml:"audience"`
	// Scope is asked for, space-separated; optional.
	Scope string `yaml:"scope"`
}

// Kind is the upstream's kind: "openapi", "mcp" or "command".
func (u Upstream) Kind() string {
	switch {
	case u.MCP != "":
		return "mcp"
	case len(u.Command) > 0:
		return "command"
	default:
		return "openapi"
	}
}

// ToolPrefix is the prefix of the upstream's tool and prompt names.
func (u Upstream) ToolPrefix() string {
	if u.Prefix != nil {
		return *u.Prefix
	}
	return u.Name + "_"
}

// Enabled reports whether the upstream gets an IdP-issued token.
func (t TokenExchange) Enabled() bool { return t.TokenURL != "" }

// Redaction configures result redaction.
type Redaction struct {
	// Detectors run over every result unless the decision names its own.
	Detectors []string `yaml:"detectors"`
}

// Audit configures the audit trail.
type Audit struct {
	// Path is the JSON-lines audit file; "-" writes to stdout.
	Path string `yaml:"path"`
	// OnError says what happens when a record cannot be written: deny (the
	// default) refuses the call, allow lets it through.
	OnError string `yaml:"on_error"`
	// Fsync is when records reach the disk: batch (default: within 50 ms
	// or 256 records), always (before the call returns) or never (on close).
	Fsync string `yaml:"fsync"`
	// MaxSizeMB rotates the file when it would grow past this many MiB;
	// 0 never rotates. The chain continues across files.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxFiles is how many rotated files are kept; 0 keeps all.
	MaxFiles int `yaml:"max_files"`
	// RecordInput is what a record keeps of the policy input, for
	// `gateway policy replay`: redacted (default: arguments masked by the
	// configured detectors), none (no input; records cannot be replayed)
	// or full (arguments as the agent sent them).
	RecordInput string `yaml:"record_input"`
	// Checkpoint signs and publishes checkpoints of the trail's Merkle tree.
	Checkpoint Checkpoint `yaml:"checkpoint"`
	// Export ships every record off the box.
	Export AuditExport `yaml:"export"`
}

// AuditExport ships audit records to a collector.
type AuditExport struct {
	// OTLPEndpoint receives every record as an OpenTelemetry log record
	// (OTLP/HTTP); empty: no export.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
}

// Checkpoint configures signed checkpoints of the audit trail (C2SP
// tlog-checkpoint, signed as a note). Empty key: off.
type Checkpoint struct {
	// Key is the note signer key file (`gateway audit keygen NAME` writes
	// NAME.key and NAME.pub).
	Key string `yaml:"key"`
	// Every is how often a checkpoint is signed and published (default 10s,
	// at least 1s); one is also published on shutdown.
	Every Duration `yaml:"every"`
	// Witness lists where checkpoints go: "redis" (ratelimit.redis_url),
	// "file:PATH" (replaced atomically) or an https:// URL (POST).
	Witness []string `yaml:"witness"`
	// Replica names this replica in the checkpoint origin
	// (<public_url host>/audit/<replica>); default: the host name.
	Replica string `yaml:"replica"`
}

// Values of Audit.RecordInput.
const (
	RecordInputRedacted = "redacted"
	RecordInputNone     = "none"
	RecordInputFull     = "full"
)

// Telemetry configures OpenTelemetry.
type Telemetry struct {
	// OTLPEndpoint is the OTLP/HTTP endpoint for traces; empty: no export
	// (the standard OTEL_EXPORTER_OTLP_* variables are honoured too).
	OTLPEndpoint string `yaml:"otlp_endpoint"`
}

// Duration is a time.Duration written as "10s", "15m" in YAML.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Default returns the configuration every loaded file starts from.
func Default() Config {
	return Config{
		Listen:      "127.0.0.1:8080",
		PublicURL:   "", // derived from Listen when empty
		Environment: "production",
		Policy:      Policy{Query: "data.harness.decision"},
		Delegation:  Delegation{MaxTTL: Duration(15 * time.Minute)},
		OAuth:       OAuth{AccessTTL: Duration(time.Hour), RefreshTTL: Duration(24 * time.Hour), Recheck: Duration(15 * time.Minute)},
		RateLimit: RateLimit{
			Default:      Rate{Requests: 60, Per: Duration(time.Minute)},
			OnError:      "deny",
			RedisTimeout: Duration(100 * time.Millisecond),
			Refusals:     Rate{Requests: 30, Per: Duration(time.Minute)},
		},
		Redaction:    Redaction{Detectors: []string{"secret", "credit_card", "ssn"}},
		Audit:        Audit{Path: "./audit.log", OnError: "deny", Fsync: "batch", RecordInput: RecordInputRedacted, Checkpoint: Checkpoint{Every: Duration(10 * time.Second)}},
		Environments: Environments{DefaultTTL: Duration(24 * time.Hour), MaxTTL: Duration(168 * time.Hour), Max: 50},
		Server: Server{
			UnauthenticatedRate:  Rate{Requests: 120, Per: Duration(time.Minute)},
			UnauthenticatedQuota: 10000,
			ReadTimeout:          Duration(20 * time.Second),
		},
	}
}

// DefaultUpstreamTimeout is the timeout of an upstream that names none.
const DefaultUpstreamTimeout = 10 * time.Second

// KnownDetectors are the detector names redaction.detectors accepts.
var KnownDetectors = []string{"secret", "credit_card", "ssn", "email", "phone", "iban"}
