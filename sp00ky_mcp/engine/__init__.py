"""The generic MCP engine: HTTP/1.1, Streamable HTTP, JSON-RPC, sessions, SSE and the
protocol.  It knows nothing of Sp00ky and never imports the product (a test enforces it)."""
