"""Scope sets x tools: a token sees exactly the tools its scopes grant, and calling any other
tool is an isError result naming the missing scope and the command that mints it.  Driven
through raw HTTP for the whole matrix and the official Python SDK client for a subset."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import MCPError

from sp00ky_mcp.product import scopes

from .product_support import ProductEnv
from .test_catalogue_contract import EXPECTED_SCOPE, TABLE

pytestmark = pytest.mark.anyio
AREAS = sorted({scope.split(":")[0] for scope in TABLE})
EVERY_CONCRETE = [s for s in scopes.CONCRETE if s != scopes.REVEAL]
SCOPE_SETS = (
    [pytest.param((scope,), id=scope) for scope in scopes.CONCRETE]
    + [
        pytest.param(tuple(s.split(",")), id=s)
        for s in (
            "mcp:read",
            "mcp:full",
            "mcp:full,secrets:reveal",
            "projects:read,env:write,billing:read",
        )
    ]
    # Every concrete scope except one area's.
    + [
        pytest.param(
            tuple(s for s in EVERY_CONCRETE if not s.startswith(f"{area}:")), id=f"all-but-{area}"
        )
        for area in AREAS
    ]
)
UNKNOWN_ARGUMENT = {"__not_an_argument__": 1}


def granted(scope_set: tuple[str, ...]) -> set[str]:
    """The tools a token with these scopes may use, from the issue's table."""
    held = scopes.expand(scope_set)
    return {name for name, scope in EXPECTED_SCOPE.items() if scope in held}


async def listed(env: ProductEnv, token: str) -> list[str]:
    names: list[str] = []
    params: dict[str, Any] = {}
    while True:
        payload = (await env.rpc(token, "tools/list", params)).json()
        names += [tool["name"] for tool in payload["result"]["tools"]]
        cursor = payload["result"].get("nextCursor")
        if cursor is None:
            return names
        params = {"cursor": cursor}


def test_mcp_read_expands_to_every_read_scope_and_mcp_full_excludes_secrets_reveal() -> None:
    assert scopes.expand([scopes.MCP_READ]) == {s for s in TABLE if s.endswith(":read")}
    assert scopes.expand([scopes.MCP_FULL]) == set(TABLE)
    assert granted((scopes.MCP_FULL,)) == set(EXPECTED_SCOPE)
    assert granted((scopes.REVEAL,)) == set()


@pytest.mark.parametrize("scope_set", SCOPE_SETS)
async def test_a_token_sees_and_may_call_exactly_the_tools_its_scopes_grant(
    product: ProductEnv, scope_set: tuple[str, ...]
) -> None:
    token = await product.token(await product.user(), ",".join(scope_set))
    allowed = granted(scope_set)
    names = await listed(product, token)
    assert sorted(names) == sorted(allowed)
    assert len(names) == len(set(names))
    for name, scope in EXPECTED_SCOPE.items():
        result = await product.call(token, name, UNKNOWN_ARGUMENT)
        assert result["isError"] is True
        text = result["content"][0]["text"]
        if name in allowed:
            # Past the scope gate: the arguments are what the tool refuses.
            assert text.startswith(f"Invalid arguments for '{name}': "), (name, text)
        else:
            assert text == scopes.missing_scope_message(scope), (name, text)
            assert f"`spky mcp token --scopes {scope}`" in text


async def test_a_missing_scope_message_names_the_scope_and_the_mint_command(
    product: ProductEnv,
) -> None:
    token = await product.token(await product.user(), "billing:read")
    text = await product.error_text(token, "create_team", {"name": "Acme"})
    assert text == (
        "This tool needs the 'tenants:write' scope, which this token lacks. Mint a "
        "token that has it with `spky mcp token --scopes tenants:write` and "
        "reconnect."
    )
    assert await product.count("tenants") == 1  # Ada's personal tenant alone


@pytest.mark.parametrize("scope_set", ["mcp:full,secrets:reveal", "secrets:reveal"])
async def test_an_unknown_tool_name_is_invalid_params_whatever_the_scopes(
    product: ProductEnv, scope_set: str
) -> None:
    token = await product.token(await product.user(), scope_set)
    response = await product.rpc(token, "tools/call", {"name": "drop_database", "arguments": {}})
    error = response.json()["error"]
    assert error["code"] == -32602
    assert error["message"] == (
        "Unknown tool: 'drop_database'. Call tools/list to see the available tools."
    )


SDK_CASES = [
    ("tenants:read", "list_teams", "create_team"),
    ("mcp:read", "get_usage", "change_plan"),
    ("billing:write", "create_billing_portal_session", "list_teams"),
    ("mcp:full", "list_projects", None),
]


@pytest.mark.clients
@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize(("scope_set", "callable_tool", "denied_tool"), SDK_CASES)
async def test_the_sdk_client_sees_and_calls_what_the_scopes_grant(
    product: ProductEnv, mode: str, scope_set: str, callable_tool: str, denied_tool: str | None
) -> None:
    token = await product.token(await product.user(), scope_set)
    async with product.sdk(token, mode=mode) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert sorted(names) == sorted(granted(tuple(scope_set.split(","))))
        allowed = await client.call_tool(callable_tool, {})
        assert allowed.is_error is False
        if denied_tool is not None:
            denied = await client.call_tool(denied_tool, {})
            assert denied.is_error is True
            assert denied.content[0].model_dump()["text"] == scopes.missing_scope_message(
                EXPECTED_SCOPE[denied_tool]
            )
        with pytest.raises(MCPError) as raised:
            await client.call_tool("no_such_tool", {})
        assert raised.value.error.code == -32602
