"""The embedding API fails closed: a program that embeds the server must say how callers
authenticate, and letting everyone in is a named choice that still keeps secret values
masked unless the program asks for them to be revealed."""

from __future__ import annotations

from typing import Any

import pytest

from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.config import ServerConfig
from sp00ky_mcp.engine.redaction import MARKER, Secret
from sp00ky_mcp.engine.server import McpServer, anonymous
from tests.wire import exchange, modern_headers, modern_meta, rpc, running

pytestmark = pytest.mark.anyio


async def secret_tool(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"password": Secret("hunter2")}


def catalogue() -> Catalogue:
    schema = {"type": "object", "properties": {}}
    return Catalogue([Tool("secret", "Returns a secret value", schema, secret_tool)])


def test_a_server_cannot_be_built_without_saying_how_callers_authenticate() -> None:
    with pytest.raises(TypeError, match="authenticate"):
        McpServer(ServerConfig(port=0), catalogue())  # type: ignore[call-arg]


async def called(reveal: bool | None) -> Any:
    authenticate = anonymous() if reveal is None else anonymous(reveal_secrets=reveal)
    async with running(catalogue=catalogue(), authenticate=authenticate) as server:
        body = rpc("tools/call", 1, name="secret", arguments={}, _meta=modern_meta())
        reply = await exchange(server, "POST", modern_headers("tools/call", "secret"), body)
    return reply.json()["result"]["structuredContent"]


@pytest.mark.parametrize(("reveal", "seen"), [(None, MARKER), (False, MARKER), (True, "hunter2")])
async def test_anonymous_callers_see_secret_values_only_where_the_program_asked(
    reveal: bool | None, seen: str
) -> None:
    assert await called(reveal) == {"password": seen}
