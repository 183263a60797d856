"""The pure-Python ceiling: h11 on an asyncio Protocol, orjson parse, a fixed reply.
`python -m bench.servers.bare_h11 PORT [uvloop]`."""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import h11
import orjson

REPLY = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 2,
        "result": {
            "content": [{"type": "text", "text": "This is a simple text response for testing."}],
            "isError": False,
        },
    }
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(REPLY)).encode())]


class Bare(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conn = h11.Connection(h11.SERVER)
        self.body = bytearray()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                orjson.loads(bytes(self.body))
                self.body.clear()
                self.transport.write(
                    self.conn.send(h11.Response(status_code=200, headers=HEADERS))
                    + self.conn.send(h11.Data(data=REPLY))
                    + self.conn.send(h11.EndOfMessage())
                )
                self.conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Bare, "127.0.0.1", port)
    print(f"listening on http://127.0.0.1:{port}/v1/mcp", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    else:
        asyncio.run(main(int(sys.argv[1])))
