"""Hot-path pieces in process: token verification (cache hit and miss), scope filtering,
tools/list bytes, redaction and encoding of a large env list, masking of a tenant's large
secret values in tool output, and JSON-RPC parse → dispatch → encode."""

from __future__ import annotations

import asyncio
import secrets
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from sp00ky_mcp.engine import jsonrpc
from sp00ky_mcp.engine.catalogue import Catalogue
from sp00ky_mcp.engine.context import ANONYMOUS, CallContext
from sp00ky_mcp.engine.fixtures import conformance_catalogue
from sp00ky_mcp.engine.http import HttpRequest
from sp00ky_mcp.engine.protocol import Engine
from sp00ky_mcp.engine.redaction import MARKER, Secret, encoder_default
from sp00ky_mcp.engine.versions import Era
from sp00ky_mcp.product import scopes
from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.auth import TokenAuthenticator
from sp00ky_mcp.product.cloud.base import Cloud
from sp00ky_mcp.product.store.sqlite import SqliteStore
from sp00ky_mcp.product.tools import product_tools
from sp00ky_mcp.product.tools.base import _build_masks


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


def masking() -> list[tuple[str, float]]:
    """60 env values of 32 KB: building their masks (once per set of values, off the event
    loop), and masking a 680 KB output that quotes two of them, with the masks built."""
    values = tuple(secrets.token_urlsafe(24576) for _ in range(60))
    line = "log line with nothing " * 50 + values[3][:100] + values[7] + " end\n"
    output = line * 20
    masks = _build_masks(values)
    return [
        ("masks of 60 secrets of 32 KB, built", per_op(lambda: _build_masks(values), 5)),
        (
            "mask 680 KB of output, 60 secrets of 32 KB",
            per_op(lambda: masks.plain.sub(output, MARKER), 20),
        ),
    ]


async def per_op_async(func: Callable[[], Awaitable[object]], number: int = 20000) -> float:
    """Microseconds per awaited call, best of five rounds, on the running event loop."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            await func()
        best = min(best, time.perf_counter() - started)
    return best / number * 1e6


async def verification() -> list[tuple[str, float]]:
    """Token verification on the embedded store in memory: a hit is served from the cache
    without leaving the event loop; a miss reads the store on its thread."""
    store = SqliteStore.in_memory()
    accounts = Accounts(store)
    user = await accounts.ensure_user("bench@example.com")
    _, secret = await accounts.mint(user, "bench", ("mcp:read",), None)
    authenticate = TokenAuthenticator(accounts, 1e12, 10**12)
    request = HttpRequest("POST", "/v1/mcp", "", {"authorization": f"Bearer {secret}"})
    await authenticate(request)

    async def verify_miss() -> None:
        authenticate.forget()
        await authenticate(request)

    try:
        return [
            ("token verify, cache hit", await per_op_async(lambda: authenticate(request))),
            ("token verify, cache miss", await per_op_async(verify_miss, 2000)),
        ]
    finally:
        await store.close()


def run() -> list[tuple[str, float]]:
    store = SqliteStore.in_memory()
    accounts = Accounts(store)

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
        *asyncio.run(verification()),
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
        *masking(),
        *metric_updates(),
    ]


def metric_updates() -> list[tuple[str, float]]:
    """What one tools/call adds to the metrics (a request counted and timed, a tool call
    counted and timed): by hand, as served, and with prometheus-client, the alternative; then
    the same with its access and audit lines as JSON, formatted and written too."""
    from prometheus_client import CollectorRegistry
    from prometheus_client import Counter as PromCounter
    from prometheus_client import Histogram as PromHistogram

    by_hand, with_lines = observed_call(lines=False), observed_call(lines=True)
    registry = CollectorRegistry()
    requests = PromCounter("r", "r", ("method", "era", "status"), registry=registry)
    request_seconds = PromHistogram("rs", "rs", ("method",), registry=registry)
    calls = PromCounter("c", "c", ("tool", "outcome"), registry=registry)
    call_seconds = PromHistogram("cs", "cs", ("tool",), registry=registry)

    def with_client() -> None:
        requests.labels("tools/call", "handshake", "200").inc()
        request_seconds.labels("tools/call").observe(0.0002)
        calls.labels("test_simple_text", "ok").inc()
        call_seconds.labels("test_simple_text").observe(0.0001)

    return [
        ("metrics of one tools/call, by hand (served)", per_op(by_hand)),
        ("metrics of one tools/call, prometheus-client", per_op(with_client)),
        ("metrics and JSON lines of one tools/call (served)", asyncio.run(in_loop(with_lines))),
    ]


async def in_loop(func: Callable[[], object]) -> float:
    """`per_op` on a running event loop: lines wait to be written together, as served."""
    return per_op(func)


def observed_call(lines: bool) -> Callable[[], None]:
    """What the server does to observe one tools/call, from its request's facts to its
    access and audit lines written (when `lines`) to a stream in memory."""
    import io

    from sp00ky_mcp.engine.ops import LineWriter, Operations
    from sp00ky_mcp.engine.protocol import ToolResult
    from sp00ky_mcp.engine.runtime import DetachedPeer

    stream = io.StringIO()
    writer = LineWriter(stream, json=True) if lines else None
    ops = Operations(metrics=True, lines=writer, methods=frozenset({"tools/call"}))
    ctx = CallContext(Era.HANDSHAKE, "2025-06-18", ANONYMOUS, DetachedPeer())
    tool, result = conformance_catalogue().tools["test_simple_text"], ToolResult([])
    arguments = {"name": "value"}

    def observe() -> None:
        facts = ctx.facts = ops.begin(None)
        assert facts is not None
        facts["era"], facts["method"], facts["session"] = "handshake", "tools/call", "0123abcd"
        ops.tool_ran(ctx, tool, arguments, result, 0.0)
        ops.completed("POST", "/v1/mcp", facts, 200)
        if stream.tell() > 1 << 20:
            stream.seek(0)
            stream.truncate()

    return observe
