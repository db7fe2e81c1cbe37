// TypeScript client 2.x (@modelcontextprotocol/client), streamable HTTP
// with a bearer header, in the given version-negotiation mode (auto:
// 2026-07-28 via server/discover; legacy: initialize and a session):
// list, call (allowed, denied), then close. Prints one JSON object.
// Usage: node ts-client2.mjs MCP_URL TOKEN auto|legacy
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, token, mode] = process.argv.slice(2);
const text = (r) => (r.content || []).map((c) => c.text || '').join('');
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: 'interop-ts-client2', version: '1' }, { versionNegotiation: { mode } });
await client.connect(transport);
const out = { mode, protocolVersion: client.getNegotiatedProtocolVersion(), sessionId: transport.sessionId ?? '' };
out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
const allowed = await client.callTool({ name: 'crm_get_customer', arguments: { id: 'c-2' } });
out.allowed = { isError: !!allowed.isError, text: text(allowed) };
const denied = await client.callTool({ name: 'crm_delete_customer', arguments: { id: 'c-2' } });
out.denied = { isError: !!denied.isError, text: text(denied) };
await client.close();
console.log(JSON.stringify(out));
