"""The incumbent, in its fastest configuration: the official Python SDK's MCPServer with JSON
replies (or its default SSE replies), uvicorn with httptools and uvloop, access log off."""

from __future__ import annotations

import logging
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer(name="sdk-reference", version="1.0.0")


@server.tool()
def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


def main(port: int, json_response: bool) -> None:
    # The SDK logs every session it opens at INFO; logging is not what is measured.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    app = server.streamable_http_app(streamable_http_path="/v1/mcp", json_response=json_response)
    print(f"listening on http://127.0.0.1:{port}/v1/mcp", flush=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] == "json")
