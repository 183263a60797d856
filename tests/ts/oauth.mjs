// Signs in with the TypeScript SDK 1.x client's OAuth support (@modelcontextprotocol/sdk,
// pinned in tests/conformance/package.json): discovery from the 401, registration,
// authorization with PKCE (the consent is given by whoever opens the printed URL), the token,
// then an MCP session with it.
//
// usage: node oauth.mjs http://127.0.0.1:PORT/v1/mcp CALLBACK_PORT
//
// Prints {"authorize": URL} when a person must consent, then one JSON object: what the client
// observed.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { UnauthorizedError } = require('@modelcontextprotocol/sdk/client/auth.js');

const [url, port] = process.argv.slice(2);
if (!url || !port) {
  console.error('usage: node oauth.mjs URL CALLBACK_PORT');
  process.exit(2);
}
const redirectUrl = `http://127.0.0.1:${port}/callback`;

// The loopback page the browser lands on: it hands the code to the flow.
let landed;
const codes = new Promise((resolve) => { landed = resolve; });
const callback = createServer((request, response) => {
  const query = new URL(request.url, redirectUrl).searchParams;
  response.end('Signed in; you can close this window.');
  if (query.has('code') || query.has('error')) landed(query);
});
await new Promise((resolve) => callback.listen(Number(port), '127.0.0.1', resolve));

const kept = { client: undefined, tokens: undefined, verifier: undefined };
const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return {
      client_name: 'TypeScript SDK test client',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  clientInformation() { return kept.client; },
  saveClientInformation(info) { kept.client = info; },
  tokens() { return kept.tokens; },
  saveTokens(tokens) { kept.tokens = tokens; },
  redirectToAuthorization(authorizationUrl) {
    console.log(JSON.stringify({ authorize: authorizationUrl.toString() }));
  },
  saveCodeVerifier(verifier) { kept.verifier = verifier; },
  codeVerifier() { return kept.verifier; },
};

const name = { name: 'sp00ky-ts-oauth', version: '0.0.1' };
let transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
let client = new Client(name);
let unauthorized = false;
try {
  await client.connect(transport);
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
  unauthorized = true;
  const query = await codes;
  if (query.has('error')) throw new Error(`authorization refused: ${query.get('error')}`);
  await transport.finishAuth(query.get('code'));
  transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  client = new Client(name);
  await client.connect(transport);
}
const listed = await client.listTools();
await client.close();
callback.close();
console.log(JSON.stringify({
  unauthorizedFirst: unauthorized,
  tools: listed.tools.map((tool) => tool.name).sort(),
  tokenType: kept.tokens?.token_type,
  refreshToken: typeof kept.tokens?.refresh_token === 'string',
  scope: kept.tokens?.scope,
}));
