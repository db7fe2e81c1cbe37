// TypeScript SDK 1.x auth() with an OAuthClientProvider against Harness as
// the authorization server: discovery, dynamic registration (no
// client_uri), authorization code with PKCE, MCP with the token, refresh.
// The authorization URL is printed as {"authorize": URL}; the test drives
// sign-in and consent and writes the code on stdin.
// Usage: node ts-sdk1-oauth.mjs MCP_URL REDIRECT_URL
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { createInterface } from 'node:readline';

const [url, redirect] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const store = {};
const provider = {
  get redirectUrl() { return redirect; },
  get clientMetadata() {
    return { client_name: 'interop-ts-sdk1', redirect_uris: [redirect], token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] };
  },
  clientInformation: () => store.client,
  saveClientInformation: (c) => { store.client = c; },
  tokens: () => store.tokens,
  saveTokens: (t) => { store.tokens = t; },
  redirectToAuthorization: (u) => { console.log(JSON.stringify({ authorize: u.toString() })); },
  saveCodeVerifier: (v) => { store.verifier = v; },
  codeVerifier: () => store.verifier,
};

const out = {};
out.first = await auth(provider, { serverUrl: url });
out.registered = { client_id: store.client?.client_id, has_client_uri: 'client_uri' in (store.client || {}) };
const code = (await lines.next()).value;
out.exchange = await auth(provider, { serverUrl: url, authorizationCode: code });
const first = store.tokens.access_token;

async function use() {
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  const client = new Client({ name: 'interop-ts-sdk1-oauth', version: '1' });
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const r = await client.callTool({ name: 'crm_get_customer', arguments: { id: 'c-9' } });
  await client.close();
  return { protocolVersion: transport.protocolVersion, tools, called: !r.isError };
}
out.mcp = await use();
out.refresh = await auth(provider, { serverUrl: url });
out.refreshed = store.tokens.access_token !== first && !!store.tokens.refresh_token;
out.afterRefresh = await use();
console.log(JSON.stringify({ result: out }));
process.exit(0);
