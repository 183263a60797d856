"""Connection slots are shared fairly: one peer address cannot hold them all, a connection
that never authenticates is cut as soon as a slow header would be, and one token holds a
bounded number of long-lived streams.  Raw sockets, real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from sp00ky_mcp.engine.config import Limits
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.engine.service import MAX_STREAMS_PER_TOKEN
from tests.faults_support import settled
from tests.wire import (
    ENDPOINT,
    LATEST,
    Wire,
    bearer_auth,
    connect,
    exchange,
    modern_headers,
    modern_meta,
    open_session,
    rpc,
    running,
)

pytestmark = pytest.mark.anyio

BUSY = b"The server has too many open connections; retry shortly.\n"
LIST = rpc("tools/list", 1, _meta=modern_meta())


@asynccontextmanager
async def connect_from(server: McpServer, source: str) -> AsyncIterator[Wire]:
    """A connection whose peer address is `source` (any 127.x address is this machine)."""
    assert server.port is not None
    stream = await anyio.connect_tcp("127.0.0.1", server.port, local_host=source)
    wire = Wire(stream, f"127.0.0.1:{server.port}")
    try:
        yield wire
    finally:
        await wire.aclose()


async def listed(wire: Wire, token: str = "ada") -> int:
    headers = {**modern_headers("tools/list"), "Authorization": f"Bearer {token}"}
    await wire.request("POST", ENDPOINT, headers, LIST)
    return (await wire.final()).status


async def test_one_peer_address_holds_at_most_its_share_of_connections() -> None:
    async with running(Limits(max_connections_per_peer=2), authenticate=bearer_auth) as server:
        async with AsyncExitStack() as stack:
            for _ in range(2):
                await stack.enter_async_context(connect_from(server, "127.0.0.1"))
            await settled(lambda: server.http.open_connections, 2)
            async with connect_from(server, "127.0.0.1") as third:
                refused = await third.final()
            async with connect_from(server, "127.0.0.2") as elsewhere:
                other_peer = await listed(elsewhere)
        async with connect_from(server, "127.0.0.1") as again:
            freed = await listed(again)
    assert (refused.status, refused.head.get("retry-after"), refused.body) == (503, "1", BUSY)
    assert (other_peer, freed) == (200, 200)


async def test_a_connection_that_never_authenticates_is_cut_as_soon_as_a_slow_header() -> None:
    limits = Limits(header_timeout=0.2, idle_timeout=600.0)
    async with (
        running(limits, authenticate=bearer_auth) as server,
        connect(server) as known,
        connect(server) as silent,
    ):
        assert await listed(known) == 200
        async with connect(server) as refused:
            headers = modern_headers("tools/list")
            await refused.request("POST", ENDPOINT, headers, LIST)
            unauthorized = (await refused.final()).status
            silent_closed = await silent.closed()
            refused_closed = await refused.closed()
        still_served = await listed(known)
    assert (unauthorized, silent_closed, refused_closed) == (401, True, True)
    assert still_served == 200


async def get_stream(server: McpServer, stack: AsyncExitStack, token: str) -> int:
    session_id = await open_session(server, token=token)
    wire = await stack.enter_async_context(connect(server))
    headers = {
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": LATEST,
        "Authorization": f"Bearer {token}",
    }
    await wire.request("GET", ENDPOINT, headers)
    head = await wire.head()
    return head.status


async def test_a_token_holds_a_bounded_number_of_get_streams_and_others_still_stream() -> None:
    async with running(authenticate=bearer_auth) as server:
        async with AsyncExitStack() as held:
            opened = [await get_stream(server, held, "ada") for _ in range(MAX_STREAMS_PER_TOKEN)]
            session_id = await open_session(server, token="ada")
            headers = {
                "Accept": "text/event-stream",
                "Mcp-Session-Id": session_id,
                "MCP-Protocol-Version": LATEST,
                "Authorization": "Bearer ada",
            }
            refused = await exchange(server, "GET", headers)
            async with AsyncExitStack() as other:
                bob = await get_stream(server, other, "bob")
        await settled(lambda: sum(server.service.streaming.values()), 0)
        async with AsyncExitStack() as later:
            again = await get_stream(server, later, "ada")
    assert opened == [200] * MAX_STREAMS_PER_TOKEN
    assert (refused.status, refused.head.get("retry-after")) == (429, "1")
    assert refused.body.decode() == (
        f"This token already has {MAX_STREAMS_PER_TOKEN} open streams (GET and "
        "subscriptions/listen); close one before opening another.\n"
    )
    assert (bob, again) == (200, 200)
