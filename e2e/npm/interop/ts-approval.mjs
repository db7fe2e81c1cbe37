// TypeScript SDK 1.x against a call that needs approval. With "url" the
// client declares the elicitation.url capability (and so expects -32042
// URLElicitationRequired); with "plain" it declares none (and expects the
// tool error). It calls TOOL with ARGS_JSON, prints one JSON line with the
// answer, waits for a line on stdin (the test approves meanwhile), repeats
// the identical call, and prints a second JSON line. With "url" it first
// waits for notifications/elicitation/complete and reports the ids it got.
// Usage: node ts-approval.mjs MCP_URL TOKEN url|plain TOOL ARGS_JSON
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitationCompleteNotificationSchema, UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';
import { createInterface } from 'node:readline';

const [url, token, mode, tool, argsJSON] = process.argv.slice(2);
const args = JSON.parse(argsJSON);
const text = (r) => (r.content || []).map((c) => c.text || '').join('');
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const capabilities = mode === 'url' ? { elicitation: { url: {} } } : {};
const client = new Client({ name: 'interop-ts-approval', version: '1' }, { capabilities });
// notifications/elicitation/complete arrive on the session's GET stream,
// which the transport opens after initialize.
const completed = [];
let onComplete = () => {};
client.setNotificationHandler(ElicitationCompleteNotificationSchema, (n) => {
  completed.push(n.params.elicitationId);
  onComplete();
});
await client.connect(transport);

async function call() {
  try {
    const r = await client.callTool({ name: tool, arguments: args });
    return { isError: !!r.isError, text: text(r) };
  } catch (e) {
    const out = { thrown: true, code: e.code, text: String(e.message) };
    if (e instanceof UrlElicitationRequiredError) out.elicitations = e.elicitations;
    return out;
  }
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
console.log(JSON.stringify({ protocolVersion: transport.protocolVersion, first: await call() }));
await lines.next();
if (mode === 'url') {
  // The test approved: wait for the notification (the test's own deadline
  // bounds the wait) before repeating the call.
  if (completed.length === 0) await new Promise((resolve) => { onComplete = resolve; });
}
console.log(JSON.stringify({ completed, retry: await call() }));
await client.close();
process.exit(0);
