"""`spky mcp doctor`: the terminal sanity check the product page ends with."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import httpx

from . import tokens
from .versions import LATEST_HANDSHAKE

Say = Callable[[str], None]
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def curl_command(url: str) -> str:
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'
        + LATEST_HANDSHAKE
        + '","capabilities":{},"clientInfo":{"name":"curl",'
        '"version":"1"}}}'
    )
    return (
        f"curl -sS -X POST {shlex.quote(url)} "
        "-H 'Content-Type: application/json' "
        "-H 'Accept: application/json, text/event-stream' "
        '-H "Authorization: Bearer $SP00KY_MCP_TOKEN" '
        f"-d {shlex.quote(body)}"
    )


def local_diagnosis(token: str) -> str | None:
    """What can be told without asking the server."""
    if not token:
        return "No token: pass --token or set SP00KY_MCP_TOKEN."
    if token.startswith(tokens.API_KEY_PREFIX):
        return "This is a Sp00ky API key (spk_live_…); MCP needs an mcp_live_ token."
    if not token.startswith(tokens.PREFIX):
        return "The token does not start with mcp_live_; copy it again or mint a new one."
    if not tokens.well_formed(token):
        return "The token is malformed (wrong length or checksum); it was probably cut short."
    return None


def rpc(method: str, request_id: int | None, params: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


def run(url: str, token: str, say: Say, transport: httpx.BaseTransport | None = None) -> int:
    problem = local_diagnosis(token)
    if problem:
        say(f"✗ {problem}")
    headers = {**HEADERS, "authorization": f"Bearer {token}"} if token else HEADERS
    with httpx.Client(headers=headers, timeout=15, transport=transport) as client:
        try:
            status = _check(client, url, say)
        except httpx.HTTPError as exc:
            say(f"✗ Cannot reach {url}: {exc.__class__.__name__}. Is the server running?")
            status = 1
    say("Equivalent request from a terminal (export SP00KY_MCP_TOKEN first):")
    say(curl_command(url))
    return status


def unauthorized(body: str) -> str:
    """The server's one-sentence cause, without saying "401 Unauthorized" twice."""
    body = body.strip()
    return body if body.startswith("401 Unauthorized") else f"401 Unauthorized. {body}".strip()


def _check(client: httpx.Client, url: str, say: Say) -> int:
    params = {
        "protocolVersion": LATEST_HANDSHAKE,
        "capabilities": {},
        "clientInfo": {"name": "spky-mcp-doctor", "version": "1"},
    }
    reply = client.post(url, json=rpc("initialize", 1, params))
    if reply.status_code == 401:
        say(f"✗ {unauthorized(reply.text)}")
        return 1
    if reply.status_code != 200:
        say(f"✗ The server answered initialize with HTTP {reply.status_code}.")
        return 1
    session = {
        "mcp-session-id": reply.headers.get("mcp-session-id", ""),
        "mcp-protocol-version": LATEST_HANDSHAKE,
    }
    say(f"✓ Connected to {url} ({reply.json()['result']['serverInfo']['name']}).")
    client.post(url, json=rpc("notifications/initialized", None, {}), headers=session)
    listed = client.post(url, json=rpc("tools/list", 2, {}), headers=session).json()
    names = [tool["name"] for tool in listed.get("result", {}).get("tools", [])]
    if not names:
        say("✗ No tools: this token's scopes are too narrow; mint one with mcp:read or mcp:full.")
    else:
        plural = "" if len(names) == 1 else "s"
        say(f"✓ This token sees {len(names)} tool{plural}: {', '.join(names)}")
    client.delete(url, headers=session)
    return 0 if names else 1
