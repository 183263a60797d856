"""A connection can ask for fewer tools than its token allows, never more: read-only, chosen
toolsets or named tools, through the URL or headers; an unknown name gets a clear 400, a call
outside the surface a sentence saying why, and the instructions say what the connection has."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.product_support import ProductEnv

pytestmark = pytest.mark.anyio


async def listed(
    env: ProductEnv, token: str, query: str = "", headers: dict[str, str] | None = None
) -> list[str]:
    reply = await env.rpc(token, "tools/list", url=env.server.url + query, extra=headers)
    assert reply.status_code == 200, reply.text
    return sorted(tool["name"] for tool in reply.json()["result"]["tools"])


async def test_read_only_in_the_url_leaves_the_read_tools_only(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    everything = await listed(env, token)
    read_only = await listed(env, token, "?read_only=true")
    scopes = {tool.name: tool.scope for tool in env.server.engine.catalogue.tools.values()}
    assert read_only == sorted(n for n in everything if str(scopes[n]).endswith(":read"))
    assert "set_env_var" in everything and "set_env_var" not in read_only


async def test_toolsets_in_a_header_leave_those_areas_only(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    names = await listed(env, token, headers={"x-mcp-toolsets": "env, logs"})
    scopes = {tool.name: tool.scope for tool in env.server.engine.catalogue.tools.values()}
    assert names and {str(scopes[n]).split(":")[0] for n in names} == {"env", "logs"}


async def test_teams_names_the_tenants_area(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    names = await listed(env, token, "?toolsets=teams&read_only=1")
    assert "list_teams" in names and "create_team" not in names


async def test_named_tools_never_add_what_the_token_lacks(env: ProductEnv) -> None:
    token = await env.token(await env.user(), scopes="mcp:read")
    names = await listed(env, token, headers={"x-mcp-tools": "list_env_vars,set_env_var"})
    assert names == ["list_env_vars"]


async def test_the_url_and_the_headers_both_hold(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    names = await listed(
        env, token, "?tools=list_env_vars,list_projects", {"x-mcp-toolsets": "env"}
    )
    assert names == ["list_env_vars"]


async def test_a_call_outside_the_surface_is_refused_with_a_sentence(env: ProductEnv) -> None:
    user = await env.user()
    token = await env.token(user)
    await env.make_project(user)
    arguments = {"project": "api", "key": "A", "value": "b"}
    params = {"name": "set_env_var", "arguments": arguments}
    reply = await env.rpc(token, "tools/call", params, url=env.server.url + "?read_only=true")
    result = reply.json()["result"]
    assert result["isError"] is True
    assert result["content"] == [
        {
            "type": "text",
            "text": "The tool 'set_env_var' is not on this connection: it asked for fewer "
            "tools (read-only). Connect without that narrowing to use it.",
        }
    ]
    listed_vars = await env.structured(token, "list_env_vars", {"project": "api"})
    assert listed_vars["items"] == []


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    [
        (
            "?toolsets=env,mail",
            {},
            "Bad Request: unknown name in toolsets: mail; the known ones: backups, billing, "
            "deployments, domains, env, links, logs, projects, teams, tenants, vault.",
        ),
        (
            "",
            {"x-mcp-tools": "list_env_vars,nope"},
            "Bad Request: unknown name in X-MCP-Tools: nope; the known ones: see tools/list.",
        ),
        (
            "?read_only=maybe",
            {},
            "Bad Request: read_only must be true or false, not 'maybe'.",
        ),
        (
            "",
            {"x-mcp-readonly": "sure"},
            "Bad Request: X-MCP-Readonly must be true or false, not 'sure'.",
        ),
    ],
)
async def test_an_unknown_name_gets_a_400_saying_what_to_fix(
    env: ProductEnv, query: str, headers: dict[str, str], message: str
) -> None:
    token = await env.token(await env.user())
    reply = await env.rpc(token, "tools/list", url=env.server.url + query, extra=headers)
    assert reply.status_code == 400
    assert reply.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": message},
    }


async def test_the_instructions_say_what_the_connection_has(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    reply = await env.rpc(
        token, "server/discover", url=env.server.url + "?tools=list_env_vars,get_usage"
    )
    text: Any = reply.json()["result"]["instructions"]
    assert text.endswith(
        "This connection asked for fewer tools (tools get_usage, list_env_vars); of those the "
        "token allows, it has only: get_usage, list_env_vars."
    )


async def test_a_handshake_session_keeps_the_narrowing_its_url_asks_for(env: ProductEnv) -> None:
    token = await env.token(await env.user())
    url = env.server.url + "?read_only=true"
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    async with httpx.AsyncClient() as http:
        opened = await http.post(url, json=body, headers=headers)
        session = headers | {"mcp-session-id": opened.headers["mcp-session-id"]}
        tools = await http.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=session
        )
    names = [tool["name"] for tool in tools.json()["result"]["tools"]]
    assert "list_env_vars" in names and "set_env_var" not in names
