"""`spky mcp doctor`: the terminal sanity check the product page ends with.

Whatever answers at the URL (nothing, a web page, another server), the doctor says what it
found in one line and exits 1; it never ends in a traceback.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from ..engine.versions import LATEST_HANDSHAKE
from ..product import tokens

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
    if not (token.isascii() and token.isprintable()):
        return "The token holds characters no token has (such as …); copy the whole token again."
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
    # A header can only carry visible ASCII; anything else is diagnosed above, and the
    # request goes without it so that the server's own diagnosis still shows.
    sendable = token.isascii() and token.isprintable()
    headers = {**HEADERS, "authorization": f"Bearer {token}"} if token and sendable else HEADERS
    with httpx.Client(headers=headers, timeout=TIMEOUT, transport=transport) as client:
        try:
            status = _check(client, url, say)
        except httpx.HTTPError as exc:
            say(f"✗ {unreachable(url, exc)}")
            status = 1
        except NotMcp as exc:
            say(f"✗ {exc}")
            status = 1
    say("Equivalent request from a terminal (export SP00KY_MCP_TOKEN first):")
    say(curl_command(url))
    return status


TIMEOUT = 15.0


class NotMcp(Exception):
    """What answered is not an MCP server; the message says what came back."""


def unreachable(url: str, exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer within {TIMEOUT:g} seconds ({exc.__class__.__name__})."
    if isinstance(exc, httpx.ConnectError):
        return connect_failure(url, str(exc))
    return (
        f"{url} does not answer as an HTTP server does ({exc.__class__.__name__}); "
        "check the URL and the port."
    )


# What the cause of a failed connection says, and the sentence for it.
CONNECT_CAUSES = (
    (("refused",), "nothing listens there (connection refused). Is the server running?"),
    (
        ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution"),
        "the host name does not resolve (DNS). Check the host in the URL.",
    ),
    (
        ("wrong_version_number", "ssl", "tls"),
        "the TLS handshake failed: the server speaks plain HTTP there? Try http:// instead.",
    ),
    (("unreachable",), "the network cannot reach that address."),
)


def connect_failure(url: str, cause: str) -> str:
    said = cause.lower()
    for words, sentence in CONNECT_CAUSES:
        if any(word in said for word in words):
            return f"Cannot reach {url}: {sentence} ({cause.strip()[:120]})"
    detail = cause.strip()[:120] or "no detail"
    return f"Cannot reach {url}: ConnectError ({detail}). Is the server running?"


def message(reply: httpx.Response, method: str) -> dict[str, Any]:
    """The JSON-RPC message of a reply: a JSON body, or the first `data:` event of an SSE
    stream (Streamable HTTP lets a server answer a POST either way)."""
    kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
    body = reply.content
    if kind == "text/event-stream":
        data = [line[5:].strip() for line in body.splitlines() if line.startswith(b"data:")]
        body = data[0] if data else b""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("result"), dict):
        shown = kind or "no content type"
        raise NotMcp(
            f"The server answered {method} with HTTP {reply.status_code} ({shown}) but no "
            f"MCP result{_its_hint(reply)}; check that the URL is the MCP endpoint (it ends "
            "in /v1/mcp)."
        )
    result: dict[str, Any] = value["result"]
    return result


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
        say(f"✗ The server answered initialize with HTTP {reply.status_code}{_its_hint(reply)}.")
        return 1
    session = {
        "mcp-session-id": reply.headers.get("mcp-session-id", ""),
        "mcp-protocol-version": LATEST_HANDSHAKE,
    }
    say(f"✓ Connected to {url} ({server_name(message(reply, 'initialize'))}).")
    client.post(url, json=rpc("notifications/initialized", None, {}), headers=session)
    listed = message(client.post(url, json=rpc("tools/list", 2, {}), headers=session), "tools/list")
    names = tool_names(listed)
    if not names:
        say("✗ No tools: this token's scopes are too narrow; mint one with mcp:read or mcp:full.")
    else:
        plural = "" if len(names) == 1 else "s"
        say(f"✓ This token sees {len(names)} tool{plural}: {', '.join(names)}")
    client.delete(url, headers=session)
    return 0 if names else 1


def server_name(result: dict[str, Any]) -> str:
    info = result.get("serverInfo")
    name = info.get("name") if isinstance(info, dict) else None
    return name if isinstance(name, str) else "a server that gives no name"


def tool_names(result: dict[str, Any]) -> list[str]:
    listed = result.get("tools")
    tools = listed if isinstance(listed, list) else []
    return [t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _its_hint(reply: httpx.Response) -> str:
    """A short plain-text answer, quoted: a server's own hint (sp00ky-mcp names its endpoint
    on a wrong path)."""
    kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
    text = reply.text.strip() if kind == "text/plain" else ""
    if not text or len(text) > 200 or not text.isprintable():
        return ""
    return f", saying '{text}'"


def pasted(token: str) -> str:
    """A token as pasted, less what often comes with it: spaces and a `Bearer ` prefix."""
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return token
