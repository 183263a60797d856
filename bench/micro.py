"""Hot-path pieces in process: token verification (cache hit and miss), scope filtering,
tools/list bytes, redaction and encoding of a large env list, and JSON-RPC parse → dispatch →
encode."""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import orjson

from sp00ky_mcp import jsonrpc, scopes
from sp00ky_mcp.accounts import Accounts
from sp00ky_mcp.auth import TokenAuthenticator
from sp00ky_mcp.catalogue import Catalogue
from sp00ky_mcp.cloud.base import Cloud
from sp00ky_mcp.context import ANONYMOUS, CallContext
from sp00ky_mcp.fixtures import conformance_catalogue
from sp00ky_mcp.http import HttpRequest
from sp00ky_mcp.protocol import Engine
from sp00ky_mcp.redaction import Secret, encoder_default
from sp00ky_mcp.store import Store
from sp00ky_mcp.tools import product_tools
from sp00ky_mcp.versions import Era


class NoPeer:
    async def notify(self, method: str, params: dict[str, Any]) -> None:
        return None

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        raise RuntimeError("no peer")

    def interrupt(self) -> None:
        return None


def per_op(func: Callable[[], object], number: int = 20000) -> float:
    best = min(timeit.repeat(func, number=number, repeat=5))
    return best / number * 1e6


def drive(coroutine: Any) -> Any:
    """Runs a coroutine that never suspends, as the hot path's tools do."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


def run() -> list[tuple[str, float]]:
    store = Store.in_memory()
    accounts = Accounts(store)
    user = accounts.ensure_user("bench@example.com")
    _, secret = accounts.mint(user, "bench", ("mcp:read",), None)
    authenticate = TokenAuthenticator(accounts, 1e12, 10**12)
    request = HttpRequest("POST", "/v1/mcp", "", {"authorization": f"Bearer {secret}"})
    authenticate(request)

    def verify_miss() -> None:
        authenticate.forget()
        authenticate(request)

    catalogue = Catalogue(product_tools(Cloud(store, accounts)))
    granted = scopes.expand(("mcp:read",))
    env = {
        "items": [
            {
                "key": f"KEY_{i}",
                "value": Secret(f"value-{i}-secret"),
                "updated_at": "2026-11-24T00:00:00Z",
            }
            for i in range(50)
        ],
        "next_cursor": None,
        "truncated": False,
    }
    mask = encoder_default(False)
    engine = Engine(conformance_catalogue())
    raw = jsonrpc.encode_request(2, "tools/call", {"name": "test_simple_text"})

    def dispatch() -> bytes:
        message = jsonrpc.classify(jsonrpc.decode_json(raw))
        assert isinstance(message, jsonrpc.Request)
        ctx = CallContext(Era.HANDSHAKE, "2025-11-25", ANONYMOUS, NoPeer())
        result = drive(engine.call(message.method, message.params, ctx))
        return jsonrpc.encode_result(message.id, result)

    return [
        ("token verify, cache hit", per_op(lambda: authenticate(request))),
        ("token verify, cache miss", per_op(verify_miss, 5000)),
        (
            "scope filter (tools/list for mcp:read)",
            per_op(lambda: catalogue.visible_tools(granted)),
        ),
        (
            "tools/list bytes (pre-encoded listing)",
            per_op(lambda: orjson.dumps({"tools": catalogue.visible_tools_json(granted)})),
        ),
        ("redact + encode 50 env vars", per_op(lambda: orjson.dumps(env, default=mask))),
        ("JSON-RPC parse → dispatch → encode", per_op(dispatch)),
    ]
