// TypeScript SDK 1.x, StreamableHTTPClientTransport with a bearer header:
// initialize, list, call (allowed, denied, bad argument), ping, DELETE,
// reconnect. Prints one JSON object; exits non-zero on an unexpected error.
// Usage: node ts-sdk1-bearer.mjs MCP_URL TOKEN
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { readFileSync } from 'node:fs';

const [url, token] = process.argv.slice(2);
const sdkVersion = JSON.parse(readFileSync(new URL('../node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url))).version;
const text = (r) => (r.content || []).map((c) => c.text || '').join('');

function open() {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'interop-ts-sdk1', version: '1' });
  return { client, transport };
}

const out = { client: '@modelcontextprotocol/sdk', version: sdkVersion };
const { client, transport } = open();
await client.connect(transport);
out.protocolVersion = transport.protocolVersion;
out.sessionId = transport.sessionId;
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
const allowed = await client.callTool({ name: 'crm_get_customer', arguments: { id: 'c-1' } });
out.allowed = { isError: !!allowed.isError, text: text(allowed) };
const denied = await client.callTool({ name: 'crm_delete_customer', arguments: { id: 'c-1' } });
out.denied = { isError: !!denied.isError, text: text(denied) };
try {
  const bad = await client.callTool({ name: 'crm_get_customer', arguments: { id: 42, nope: true } });
  out.badArgument = { isError: !!bad.isError, text: text(bad) };
} catch (e) {
  out.badArgument = { isError: true, thrown: true, code: e.code, text: String(e.message) };
}
out.ping = JSON.stringify(await client.ping());
await transport.terminateSession();
out.terminated = transport.sessionId === undefined;
await client.close();
const again = open();
await again.client.connect(again.transport);
out.reconnected = { sessionId: again.transport.sessionId, tools: (await again.client.listTools()).tools.length };
await again.client.close();
console.log(JSON.stringify(out));
