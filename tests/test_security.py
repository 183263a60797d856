"""Security properties of the product server over real HTTP, beyond what test_auth covers:

- session fixation: a session id the client chooses is never adopted; the server mints its own;
- replay across tokens: a session answers only the token that opened it, on POST, GET (the
  standalone stream and a resumption), DELETE, cancellation and answers to server requests, and
  a stateless request carrying a session id gets the same 404;
- DNS rebinding: a foreign Host gets 421 and a foreign Origin 403, on POST, GET and DELETE, in
  both eras, with or without a token, and nothing happens;
- secrecy: no token value in any server log line (DEBUG, successful and failing requests, 401,
  429 and an internal error's traceback), in any audit record, or in any file of the data
  directory;
- header injection: whatever a client sends, in headers or in JSON-RPC ids, methods and names,
  every response header field is one the server produces: a fixed value, or a value of a fixed
  form (a minted session id, a length, a Retry-After, a date).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sp00ky_mcp.product import tokens
from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.auth import TokenAuthenticator
from tests.wire import BOTH, ENDPOINT, LATEST, MODERN, Head, Truncated, connect, modern_meta

from .product_support import ProductEnv

pytestmark = pytest.mark.anyio

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")
SESSION_GONE = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {
        "code": -32600,
        "message": "Session not found: it ended or expired; send initialize to start a new "
        "session.",
    },
}
MISDIRECTED = (
    "Misdirected request: the Host header names a host this server does not serve; add it "
    "with --allowed-host.\n"
)
FORBIDDEN = "Forbidden: this Origin is not allowed; add it with --allowed-origin.\n"
CLIENT_LOGGERS = ("httpx", "httpcore")  # the test's own client logs the URLs it requests


def initialize_message(request_id: Any = 0, capabilities: dict[str, Any] | None = None) -> bytes:
    params = {
        "protocolVersion": LATEST,
        "capabilities": capabilities or {},
        "clientInfo": {"name": "security-tests", "version": "1"},
    }
    message = {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}
    return json.dumps(message).encode()


def message(method: str, request_id: Any = 1, **params: Any) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params:
        body["params"] = params
    return json.dumps(body).encode()


def base_headers(token: str | None) -> dict[str, str]:
    headers = {"accept": BOTH, "content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


def session_headers(token: str | None, session_id: str) -> dict[str, str]:
    return {**base_headers(token), "mcp-session-id": session_id, "mcp-protocol-version": LATEST}


def stateless_headers(token: str | None, method: str, name: str | None = None) -> dict[str, str]:
    headers = {**base_headers(token), "mcp-protocol-version": MODERN, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def open_session(
    env: ProductEnv, token: str, capabilities: dict[str, Any] | None = None
) -> str:
    reply = await env.http.post(
        env.server.url, content=initialize_message(0, capabilities), headers=base_headers(token)
    )
    assert reply.status_code == 200, reply.text
    session_id = reply.headers["mcp-session-id"]
    done = await env.http.post(
        env.server.url,
        content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode(),
        headers=session_headers(token, session_id),
    )
    assert done.status_code == 202
    return session_id


async def ping(env: ProductEnv, token: str, session_id: str) -> httpx.Response:
    return await env.http.post(
        env.server.url, content=message("ping", "p"), headers=session_headers(token, session_id)
    )


async def alive(env: ProductEnv, token: str, session_id: str) -> bool:
    reply = await ping(env, token, session_id)
    return reply.status_code == 200 and reply.json() == {"jsonrpc": "2.0", "id": "p", "result": {}}


# --- session fixation ------------------------------------------------------------------------


async def test_initialize_ignores_a_session_id_the_client_chose_and_mints_its_own(
    product: ProductEnv,
) -> None:
    token = await product.token(await product.user())
    chosen = "fixated-by-an-attacker-0123456789"
    headers = {**base_headers(token), "mcp-session-id": chosen, "mcp-protocol-version": LATEST}
    reply = await product.http.post(
        product.server.url, content=initialize_message(), headers=headers
    )
    minted = reply.headers["mcp-session-id"]
    assert reply.status_code == 200
    assert minted != chosen
    assert SESSION_ID.fullmatch(minted)
    assert await alive(product, token, minted)
    for method in ("POST", "GET", "DELETE"):
        request = session_headers(token, chosen)
        body = message("ping") if method == "POST" else None
        if method == "GET":
            request["accept"] = "text/event-stream"
        refused = await product.http.request(
            method, product.server.url, content=body, headers=request
        )
        assert (method, refused.status_code, refused.json()) == (method, 404, SESSION_GONE)


async def test_initialize_with_another_tokens_live_session_id_neither_adopts_nor_ends_it(
    product: ProductEnv,
) -> None:
    """The attacker's half of fixation: presenting the victim's id on initialize gets the
    attacker a fresh session of its own, and the victim's session goes on."""
    victim = await product.token(await product.user("ada@example.com"))
    attacker = await product.token(await product.user("eve@example.com"))
    session_id = await open_session(product, victim)
    headers = {**base_headers(attacker), "mcp-session-id": session_id}
    reply = await product.http.post(
        product.server.url, content=initialize_message(), headers=headers
    )
    assert reply.status_code == 200
    assert reply.headers["mcp-session-id"] not in (session_id, "")
    assert (await ping(product, attacker, session_id)).json() == SESSION_GONE
    assert await alive(product, victim, session_id)


async def test_a_session_handed_to_another_token_is_unknown_to_it(product: ProductEnv) -> None:
    """The victim's half: a session the attacker opened and planted answers only the
    attacker's token, so the victim's requests cannot be steered into it."""
    attacker = await product.token(await product.user("eve@example.com"))
    victim = await product.token(await product.user("ada@example.com"))
    planted = await open_session(product, attacker)
    reply = await product.http.post(
        product.server.url,
        content=message("tools/call", 3, name="list_projects", arguments={}),
        headers=session_headers(victim, planted),
    )
    assert (reply.status_code, reply.json()) == (404, SESSION_GONE)
    assert await product.audit_log() == []


# --- replay across tokens --------------------------------------------------------------------


@pytest.fixture
async def victim_session(product: ProductEnv) -> tuple[str, str, list[str]]:
    """Ada's token and session, and three other tokens: hers of another name, Eve's, and
    Eve's with every scope and secrets:reveal."""
    ada = await product.user("ada@example.com")
    eve = await product.user("eve@example.com")
    token = await product.token(ada, name="one")
    others = [
        await product.token(ada, name="two"),
        await product.token(eve),
        await product.token(eve, "mcp:full,secrets:reveal", name="full"),
    ]
    await product.structured(token, "create_project", {"name": "api"})
    return token, await open_session(product, token), others


def notification(method: str, **params: Any) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        body["params"] = params
    return json.dumps(body).encode()


SSE_ONLY = {"accept": "text/event-stream"}
# What another token tries with the victim's session id: (method, body, header fields).
REPLAYS: dict[str, tuple[str, bytes | None, dict[str, str]]] = {
    "POST tools/call": (
        "POST",
        message(
            "tools/call",
            9,
            name="set_env_var",
            arguments={"project": "api", "key": "K", "value": "v"},
        ),
        {},
    ),
    "POST notifications/cancelled": (
        "POST",
        notification("notifications/cancelled", requestId=1),
        {},
    ),
    "POST a response to a server request": (
        "POST",
        json.dumps({"jsonrpc": "2.0", "id": "s-1", "result": {"action": "accept"}}).encode(),
        {},
    ),
    "POST initialized": ("POST", notification("notifications/initialized"), {}),
    "GET the standalone stream": ("GET", None, SSE_ONLY),
    "GET a resumption": ("GET", None, {**SSE_ONLY, "last-event-id": "0123456789abcdef_1"}),
    "DELETE": ("DELETE", None, {}),
    "POST stateless, with the session id": (
        "POST",
        message("tools/call", 9, name="list_projects", arguments={}, _meta=modern_meta()),
        {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "list_projects"},
    ),
}


@pytest.mark.parametrize("replay", list(REPLAYS))
async def test_a_session_id_replayed_with_any_other_token_is_404_and_changes_nothing(
    product: ProductEnv, victim_session: tuple[str, str, list[str]], replay: str
) -> None:
    token, session_id, others = victim_session
    method, body, fields = REPLAYS[replay]
    for thief in others:
        headers = {**session_headers(thief, session_id), **fields}
        reply = await product.http.request(
            method, product.server.url, content=body, headers=headers
        )
        assert (reply.status_code, reply.json()) == (404, SESSION_GONE), thief
    assert await alive(product, token, session_id)
    assert await product.count("env_vars") == 0


async def test_a_deleted_session_is_gone_for_its_own_token_too(
    product: ProductEnv, victim_session: tuple[str, str, list[str]]
) -> None:
    token, session_id, _ = victim_session
    gone = await product.http.delete(product.server.url, headers=session_headers(token, session_id))
    assert gone.status_code == 200
    assert (await ping(product, token, session_id)).json() == SESSION_GONE


# --- DNS rebinding ---------------------------------------------------------------------------

FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:80",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "localhost@evil.example",
    "127.0.0.2",
    "0.0.0.0",
    "[::ffff:127.0.0.1]",
    "",
]
FOREIGN_ORIGINS = [
    "http://evil.example",
    "https://evil.example:443",
    "HTTP://EVIL.EXAMPLE",
    "null",
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example",
    "http://127.0.0.1@evil.example",
    "http://localhost:3000@evil.example",
    "http://evil.example#@localhost",
    "file://",
    "chrome-extension://abcdefghijklmnop",
    "javascript:alert(1)",
    "ftp://localhost",
    "http://[::1",
]
LOOPBACK_HOSTS = [
    "127.0.0.1:{port}",
    "localhost:{port}",
    "LOCALHOST:{port}",
    "[::1]:{port}",
    "127.0.0.1",
]
LOOPBACK_ORIGINS = [
    "http://localhost:3000",
    "https://127.0.0.1",
    "http://[::1]:8080",
    "http://LocalHost",
]


def rebinding_request(
    method: str, era: str, token: str | None, session_id: str
) -> tuple[dict[str, str], bytes | None]:
    """A request that would change something if it got through: set an env var, delete the
    session, or open its stream."""
    call = {"name": "set_env_var", "arguments": {"project": "api", "key": "K", "value": "v"}}
    if era == "modern":
        headers = stateless_headers(token, "tools/call", "set_env_var")
        body = message("tools/call", 1, **call, _meta=modern_meta())
    else:
        headers = session_headers(token, session_id)
        body = message("tools/call", 1, **call)
    if method == "GET":
        headers["accept"] = "text/event-stream"
    return headers, body if method == "POST" else None


async def raw_exchange(
    env: ProductEnv, method: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, bytes]:
    async with connect(env.server) as wire:
        await wire.request(method, ENDPOINT, headers, body)
        reply = await wire.final()
    return reply.status, reply.body


@pytest.mark.parametrize("with_token", [True, False], ids=["with token", "without token"])
@pytest.mark.parametrize("era", ["modern", "handshake"])
@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_a_foreign_host_is_misdirected_and_a_foreign_origin_forbidden_before_anything(
    product: ProductEnv,
    victim_session: tuple[str, str, list[str]],
    method: str,
    era: str,
    with_token: bool,
) -> None:
    token, session_id, _ = victim_session
    audited = len(await product.audit_log())
    headers, body = rebinding_request(method, era, token if with_token else None, session_id)
    for host in FOREIGN_HOSTS:
        status, text = await raw_exchange(product, method, {"Host": host, **headers}, body)
        assert (host, status, text.decode()) == (host, 421, MISDIRECTED)
    own = f"127.0.0.1:{product.server.port}"
    for origin in FOREIGN_ORIGINS:
        fields = {"Host": own, "Origin": origin, **headers}
        status, text = await raw_exchange(product, method, fields, body)
        assert (origin, status, text.decode()) == (origin, 403, FORBIDDEN)
    assert await alive(product, token, session_id)
    assert await product.count("env_vars") == 0
    assert len(await product.audit_log()) == audited


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_an_absolute_form_target_is_judged_by_its_own_host_not_the_host_field(
    product: ProductEnv, victim_session: tuple[str, str, list[str]], method: str
) -> None:
    token, session_id, _ = victim_session
    headers, body = rebinding_request(method, "handshake", token, session_id)
    own = f"127.0.0.1:{product.server.port}"
    async with connect(product.server) as wire:
        foreign = f"http://user@evil.example{ENDPOINT}"
        await wire.request(method, foreign, {"Host": own, **headers}, body)
        refused = await wire.final()
    async with connect(product.server) as wire:
        await wire.request("POST", f"http://{own}{ENDPOINT}", {"Host": "evil.example"}, b"{}")
        served = await wire.final()
    assert (refused.status, refused.body.decode()) == (421, MISDIRECTED)
    assert served.status == 401  # past the host check, at the token check
    assert await alive(product, token, session_id)


@pytest.mark.parametrize("origin", [None, *LOOPBACK_ORIGINS])
@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_every_loopback_host_and_origin_is_served(
    product: ProductEnv, host: str, origin: str | None
) -> None:
    token = await product.token(await product.user())
    headers = {
        "Host": host.format(port=product.server.port),
        **stateless_headers(token, "tools/list"),
    }
    if origin is not None:
        headers["Origin"] = origin
    body = message("tools/list", 1, _meta=modern_meta())
    status, _ = await raw_exchange(product, "POST", headers, body)
    assert status == 200


async def test_a_request_with_two_host_fields_is_refused(product: ProductEnv) -> None:
    """RFC 9112 section 3.2: a request with more than one Host field gets 400, so that no
    part of the server can read one host and another part the other."""
    token = await product.token(await product.user())
    own = f"127.0.0.1:{product.server.port}"
    fields = [
        ("Host", own),
        ("Host", "evil.example"),
        *stateless_headers(token, "tools/list").items(),
    ]
    async with connect(product.server) as wire:
        await wire.request("POST", ENDPOINT, fields, message("tools/list", 1, _meta=modern_meta()))
        reply = await wire.final()
    assert (reply.status, reply.body) == (400, b"The request is not valid HTTP/1.1.\n")


# --- secrets stay out of logs, the audit log and the data directory ---------------------------


def data_directory_bytes(directory: Path) -> bytes:
    """Every file under the data directory, one after the other."""
    return b"".join(path.read_bytes() for path in directory.rglob("*") if path.is_file())


async def test_no_token_reaches_a_log_line_an_audit_record_or_a_file_of_the_data_directory(
    product: ProductEnv,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    ada = await product.user()
    good = await product.token(ada, "mcp:full,secrets:reveal", name="good")
    revoked = await product.token(ada, name="revoked")
    await product.accounts.revoke(ada, "revoked")
    long_ago = Accounts(product.store, clock=lambda: 0.0)
    _, expired = await long_ago.mint(ada, "expired", ("mcp:full",), 1)
    unknown = tokens.mint()
    broken = good[:-1] + ("a" if good[-1] != "a" else "b")  # its checksum fails
    throttled = await product.token(ada, name="throttled")
    secrets = [good, revoked, expired, unknown, broken, throttled]
    http, url = product.http, product.server.url

    # Successful work in both eras: a session with a stream and its deletion, stateless calls,
    # and calls that carry a token value as data (as a user pasting it would).
    await product.structured(good, "create_project", {"name": "api"})
    await product.structured(good, "set_env_var", {"project": "api", "key": "T", "value": good})
    await product.structured(good, "deploy", {"project": "api"})
    session_id = await open_session(product, good)
    sse = {**session_headers(good, session_id), "accept": "text/event-stream, application/json"}
    await http.post(
        url,
        content=message("tools/call", 2, name="list_env_vars", arguments={"project": "api"}),
        headers=sse,
    )
    await http.post(
        url,
        content=message(
            "tools/call",
            3,
            name="deploy",
            arguments={"project": "api"},
            _meta={"progressToken": good},
        ),
        headers=session_headers(good, session_id),
    )
    await http.delete(url, headers=session_headers(good, session_id))
    # Failing work: isError results, JSON-RPC errors, and a request that fails inside.
    await product.call(good, "get_project", {"project": good})
    await product.rpc(good, "tools/call", {"name": good, "arguments": {}})
    await http.post(
        url, content=b"{not json " + good.encode(), headers=stateless_headers(good, "tools/list")
    )

    async def explode(*args: object) -> object:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(product.cloud, "project", explode)
    internal = await product.rpc(
        good, "tools/call", {"name": "get_project", "arguments": {"project": "api"}}
    )
    assert internal.json()["error"]["code"] == -32603
    monkeypatch.undo()
    # 401 in both eras and every way a token can be sent wrong.
    for secret in (revoked, expired, unknown, broken):
        await http.post(url, content=initialize_message(), headers=base_headers(secret))
        await product.rpc(secret, "tools/list")
    await http.post(f"{url}?token={good}", content=initialize_message(), headers=base_headers(None))
    await http.post(
        f"{url}?access_token={good}", content=initialize_message(), headers=base_headers(good)
    )
    await http.post(
        url,
        content=initialize_message(),
        headers={**base_headers(None), "authorization": f"Basic {good}"},
    )
    await http.post(
        url, content=initialize_message(), headers={**base_headers(None), "authorization": good}
    )
    await http.get(
        url, headers={"accept": "text/event-stream", "authorization": f"Bearer {unknown}"}
    )
    await http.delete(
        url, headers={"authorization": f"Bearer {revoked}", "mcp-session-id": session_id}
    )
    # 429: this token's bucket holds one request.
    auth = product.server.service.authenticate
    assert isinstance(auth, TokenAuthenticator)
    auth.burst, auth.rate = 1.0, 1e-6
    assert (await product.rpc(throttled, "tools/list")).status_code == 200
    assert (await product.rpc(throttled, "tools/list")).status_code == 429

    server_side = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    # Not vacuous: the internal error was logged with its traceback.
    assert any(r.levelno >= logging.ERROR and r.exc_info for r in server_side)
    logged = "".join(
        r.getMessage() + repr(r.__dict__) + logging.Formatter().format(r) for r in server_side
    )
    records = await product.audit_log()
    audit = repr(records)
    assert len(records) >= 6
    files = data_directory_bytes(tmp_path)
    for secret in secrets:
        random_part = secret[len(tokens.PREFIX) :]
        assert secret not in logged and random_part not in logged
        assert secret not in audit and random_part not in audit
        if secret not in (good, broken):  # the good one was stored on purpose, as a value
            assert random_part.encode() not in files


# --- header injection ------------------------------------------------------------------------

IMF_FIXDATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
REALM = 'Bearer realm="sp00ky-mcp"'
# Every header field the server may send, with the values it may have: fixed ones, or a form
# the server fills in itself.  Nothing a client sends may shape a name or a value.
# The 401 challenge: where sign-in starts, the scopes to ask for, and for a refused token the
# server's own sentence of why (RFC 6750's characters only).
CHALLENGE = re.compile(
    r'Bearer realm="sp00ky-mcp", resource_metadata="http://127\.0\.0\.1:\d+'
    r'/\.well-known/oauth-protected-resource/v1/mcp", scope="[a-z: ]+"'
    r'(, error="invalid_token", error_description="[ !#-\[\]-~]+")?'
)
ALLOWED: dict[str, Callable[[str], bool]] = {
    "content-type": {
        "application/json",
        "text/event-stream",
        "text/plain; charset=utf-8",
    }.__contains__,
    "content-length": str.isdigit,
    "transfer-encoding": {"chunked"}.__contains__,
    "cache-control": {"no-cache"}.__contains__,
    "x-accel-buffering": {"no"}.__contains__,
    "connection": {"close", "keep-alive"}.__contains__,
    "allow": {"GET, POST, DELETE", "POST"}.__contains__,
    "www-authenticate": lambda value: CHALLENGE.fullmatch(value) is not None,
    "retry-after": str.isdigit,
    "mcp-session-id": lambda value: SESSION_ID.fullmatch(value) is not None,
    "date": lambda value: IMF_FIXDATE.fullmatch(value) is not None,
}
MARK = "injected"


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


INJECTIONS = [
    "x\r\nX-Injected: yes",
    "x\nX-Injected: yes",
    "x\rX-Injected: yes",
    "x\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: yes\r\n\r\n",
    "%0d%0aX-Injected:%20yes",
    b64("x\r\nX-Injected: yes"),
    "X-Injected: yes",
    "\xe9\xffX-Injected",
    "x\x00X-Injected",
    "injected" * 1000,
    "injected\t\t",
    "",
]
HEADER_NAMES = [
    "Mcp-Session-Id",
    "Mcp-Method",
    "Mcp-Name",
    "Last-Event-ID",
    "Origin",
    "Host",
    "Accept",
    "Content-Type",
    "MCP-Protocol-Version",
    "Authorization",
    "Mcp-Param-Region",
    "X-Injected-Custom",
]


def raw_request(method: str, fields: list[tuple[str, str]], body: bytes | None) -> bytes:
    """The request exactly as given: field values go out as latin-1 bytes, CR and LF
    included, so that a value can try to end its line."""
    lines = [f"{method} {ENDPOINT} HTTP/1.1", *(f"{name}: {value}" for name, value in fields)]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def head_of(env: ProductEnv, data: bytes) -> Head | None:
    """The response head (the final one), or None when the server closed without one.  A
    head that is not well-formed HTTP/1.1 fails the test (tests.wire.parse_head)."""
    async with connect(env.server) as wire:
        await wire.send(data)
        try:
            head = await wire.head()
            while head.status < 200:
                head = await wire.head()
        except Truncated:
            return None
    return head


def never(value: str) -> bool:
    """A header field nobody listed is allowed with no value."""
    return False


def violations(head: Head, sent: str) -> list[tuple[str, str]]:
    bad = [(name, value) for name, value in head.headers if not ALLOWED.get(name, never)(value)]
    bad += [(n, v) for n, v in head.headers if MARK in n.lower() or MARK in v.lower()]
    bad += [(n, v) for n, v in head.headers if n == "mcp-session-id" and v in sent]
    return bad


async def test_no_client_text_reaches_a_response_header_field(product: ProductEnv) -> None:
    token = await product.token(await product.user())
    await product.structured(token, "create_project", {"name": "api"})
    own = f"127.0.0.1:{product.server.port}"
    call = message("tools/call", 1, name="list_projects", arguments={}, _meta=modern_meta())
    found: list[tuple[str, str, str, list[tuple[str, str]]]] = []
    seen = 0
    for name in HEADER_NAMES:
        for value in INJECTIONS:
            session_id = await open_session(product, token)
            bases: list[tuple[str, str, dict[str, str], bytes | None]] = [
                ("POST", "initialize", {**base_headers(token)}, initialize_message()),
                (
                    "POST",
                    "stateless",
                    stateless_headers(token, "tools/call", "list_projects"),
                    call,
                ),
                ("POST", "session", session_headers(token, session_id), message("tools/list")),
                (
                    "GET",
                    "stream",
                    {**session_headers(token, session_id), "accept": "text/event-stream"},
                    None,
                ),
                ("DELETE", "session", session_headers(token, session_id), None),
            ]
            for method, kind, headers, body in bases:
                fields = {"host": own, **headers}
                fields[name.lower()] = value
                sent = json.dumps(fields)
                head = await head_of(product, raw_request(method, list(fields.items()), body))
                if head is None:
                    continue
                seen += 1
                bad = violations(head, sent)
                if bad:
                    found.append((name, repr(value)[:40], f"{method} {kind}", bad))
    assert found == []
    assert seen > len(HEADER_NAMES) * len(INJECTIONS) * 3


INJECTED_TEXT = [
    "x\r\nX-Injected: yes",
    "tools/list\r\nSet-Cookie: injected=1",
    "\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: yes",
    "injected" * 2000,
]


@pytest.mark.parametrize("text", INJECTED_TEXT, ids=["crlf", "set-cookie", "split", "long"])
async def test_no_json_rpc_id_method_or_name_reaches_a_response_header_field(
    product: ProductEnv, text: str
) -> None:
    token = await product.token(await product.user())
    session_id = await open_session(product, token)
    own = f"127.0.0.1:{product.server.port}"
    cases = [
        (stateless_headers(token, "tools/list"), message("tools/list", text, _meta=modern_meta())),
        (stateless_headers(token, "x"), message(text, 1, _meta=modern_meta())),
        (
            stateless_headers(token, "tools/call", b64(text)),
            message("tools/call", 1, name=text, arguments={}, _meta=modern_meta()),
        ),
        (session_headers(token, session_id), message("tools/list", text)),
        (session_headers(token, session_id), message(text, 1)),
        (session_headers(token, session_id), message("tools/call", text, name=text, arguments={})),
        (
            session_headers(token, session_id),
            message("tools/call", 2, name="get_project", arguments={"project": text}),
        ),
        (base_headers(token), initialize_message(text, {"x": {text: text}})),
    ]
    for headers, body in cases:
        fields = [("Host", own), *headers.items()]
        head = await head_of(product, raw_request("POST", fields, body))
        assert head is not None
        assert violations(head, json.dumps(fields)) == [], body[:80]
