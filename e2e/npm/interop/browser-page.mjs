// A browser-based MCP client: the TypeScript SDK's browser build (bundled
// by the interop test with rolldown), served from an origin other than the
// gateway's. It connects with a bearer token, lists and calls, and writes
// the outcome as JSON into #result. Parameters come in the URL fragment:
// #mcp=<MCP URL>&token=<token>.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const params = new URLSearchParams(location.hash.slice(1));
const out = { origin: location.origin };
const show = () => {
  document.getElementById('result').textContent = JSON.stringify(out);
  const done = document.createElement('p');
  done.id = 'done';
  done.textContent = 'done';
  document.body.append(done);
};
try {
  const transport = new StreamableHTTPClientTransport(new URL(params.get('mcp')), {
    requestInit: { headers: { Authorization: `Bearer ${params.get('token')}` } },
  });
  const client = new Client({ name: 'interop-browser', version: '1' });
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion;
  out.sessionId = transport.sessionId || '';
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const r = await client.callTool({ name: 'crm_get_customer', arguments: { id: 'c-8' } });
  out.called = !r.isError && JSON.stringify(r.content).includes('c-8');
  await transport.terminateSession();
  await client.close();
  // Without a token the 401's WWW-Authenticate must be readable (exposed).
  const resp = await fetch(params.get('mcp'), { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) });
  out.unauthorized = { status: resp.status, wwwAuthenticate: resp.headers.get('WWW-Authenticate') || '' };
} catch (e) {
  out.error = String(e && e.stack || e);
}
show();
