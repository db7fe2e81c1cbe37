// Package e2e holds the integration tests: they build the real gateway
// binary and run it against a real FastAPI process, a real OIDC issuer
// (internal/devissuer, serving discovery and JWKS over HTTP), real Redis,
// real OPA and real MCP clients (mcp-go, both protocol eras).
package e2e
