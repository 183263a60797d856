"""No token can stall other clients or hold unbounded memory: a tenant's large secret values
are made ready for masking off the event loop, resource subscriptions, the tool-result cache
and 2025-03-26 batches are bounded per token, and every call of a batch counts against the
token's rate limit."""

from __future__ import annotations

import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from sp00ky_mcp.engine import runtime
from sp00ky_mcp.engine.catalogue import Catalogue, Tool
from sp00ky_mcp.engine.config import Limits, ServerConfig
from sp00ky_mcp.engine.context import InputRequired
from sp00ky_mcp.engine.fixtures import NAME_SCHEMA, elicit_request
from sp00ky_mcp.engine.protocol import (
    MAX_CLIENT_DESCRIPTION_BYTES,
    MAX_INPUT_ROUNDS,
    MAX_SUBSCRIPTIONS,
)
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.engine.service import MAX_STREAMS_PER_TOKEN
from sp00ky_mcp.product.app import build_product
from sp00ky_mcp.product.store import Store
from sp00ky_mcp.product.tools import base

from .product_support import NOW, REDACTED, ProductEnv
from .wire import (
    LATEST,
    Wire,
    bearer_auth,
    connect,
    exchange,
    initialize_body,
    local_sessions,
    modern_headers,
    modern_meta,
    notification,
    open_session,
    parse_event,
    post_headers,
    rpc,
    rpc_error,
    running,
)

pytestmark = pytest.mark.anyio
WAIT = 10.0


# --- masking ----------------------------------------------------------------------------------


async def seed_large_secrets(env: ProductEnv, count: int = 60, size: int = 32 * 1024) -> str:
    """Ada's project 'api' with `count` env values of `size` characters; her token."""
    ada = await env.user()
    project_id = await env.make_project(ada)
    values = [secrets.token_urlsafe(size)[:size] for _ in range(count)]
    async with env.store.transaction() as tx:
        await tx.env.put_many(project_id, [(f"KEY_{i}", v) for i, v in enumerate(values)], NOW)
    return await env.token(ada, "mcp:read")


class HeldBuild:
    """The real mask builder, held in its worker thread until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.build = base._build_masks

    def __call__(self, values: tuple[str, ...]) -> base.Masks:
        self.entered.set()
        self.release.wait(WAIT)
        return self.build(values)


async def test_a_token_with_large_secret_values_does_not_hold_up_other_tokens(
    env: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await seed_large_secrets(env)
    bob = await env.token(await env.user("bob@example.com"))
    held = HeldBuild()
    monkeypatch.setattr(base, "_build_masks", held)
    outcome: dict[str, Any] = {}

    async def list_ada_vars() -> None:
        outcome["ada"] = await env.call(ada, "list_env_vars", {"project": "api", "limit": 5})

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(list_ada_vars)
            await anyio.to_thread.run_sync(held.entered.wait, WAIT)
            # Ada's masks are being built; Bob is answered meanwhile.
            listed = await env.rpc(bob, "tools/list")
            assert "ada" not in outcome
            held.release.set()
    assert listed.status_code == 200
    assert "tools" in listed.json()["result"]
    items = outcome["ada"]["structuredContent"]["items"]
    assert [item["value"] for item in items] == [REDACTED] * 5


# --- resource subscriptions ---------------------------------------------------------------


async def in_session(
    server: McpServer, session_id: str, bodies: list[bytes], token: str | None = None
) -> list[Any]:
    """Each body POSTed in turn on one connection, in the session; the decoded replies."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    replies: list[Any] = []
    async with connect(server) as wire:
        for body in bodies:
            await wire.request(
                "POST", headers={**post_headers(session_id, LATEST), **auth}, body=body
            )
            reply = await wire.final()
            assert reply.status == 200, reply
            replies.append(reply.json())
    return replies


async def test_the_product_refuses_a_subscription_to_a_resource_it_does_not_serve(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user())
    session_id = await open_session(env.server, token=token)
    uri = "sp00ky://projects/api/" + "x" * 100
    [reply] = await in_session(
        env.server, session_id, [rpc("resources/subscribe", 7, uri=uri)], token
    )
    quoted = f"'{uri[:100]}…'"  # an error quotes at most 100 characters of the client's URI
    assert reply == rpc_error(7, -32002, f"Resource not found: {quoted}.", {"uri": uri})


async def test_a_session_holds_a_bounded_number_of_subscriptions(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    uris = [f"test://template/{i}/data" for i in range(MAX_SUBSCRIPTIONS + 1)]
    bodies = [rpc("resources/subscribe", i, uri=uri) for i, uri in enumerate(uris)]
    again = rpc("resources/subscribe", "again", uri=uris[0])
    unsubscribe = rpc("resources/unsubscribe", "off", uri=uris[0])
    replies = await in_session(
        conformance_server, session_id, [*bodies, again, unsubscribe, bodies[-1]]
    )
    accepted = [{"jsonrpc": "2.0", "id": i, "result": {}} for i in range(MAX_SUBSCRIPTIONS)]
    assert replies[:MAX_SUBSCRIPTIONS] == accepted
    assert replies[MAX_SUBSCRIPTIONS:] == [
        rpc_error(
            MAX_SUBSCRIPTIONS,
            -32602,
            f"This session already holds {MAX_SUBSCRIPTIONS} resource subscriptions; "
            "unsubscribe from one before subscribing to another.",
        ),
        {"jsonrpc": "2.0", "id": "again", "result": {}},
        {"jsonrpc": "2.0", "id": "off", "result": {}},
        {"jsonrpc": "2.0", "id": MAX_SUBSCRIPTIONS, "result": {}},
    ]


async def test_a_resource_uri_longer_than_2048_characters_is_refused(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    uri = "test://template/" + "1" * 2030 + "/data"
    replies = await in_session(
        conformance_server,
        session_id,
        [rpc(method, 1, uri=uri) for method in ("resources/subscribe", "resources/read")],
    )
    refusal = rpc_error(1, -32602, "'uri' may be at most 2048 characters long.")
    assert replies == [refusal, refusal]


# --- the tool-result cache ----------------------------------------------------------------


async def seed_values(env: ProductEnv, email: str, count: int, size: int) -> str:
    """`email`'s project 'api' with `count` env values of `size` characters; a token of
    theirs that may see them."""
    user = await env.user(email)
    project_id = await env.make_project(user)
    async with env.store.transaction() as tx:
        await tx.env.put_many(project_id, [(f"KEY_{i}", "v" * size) for i in range(count)], NOW)
    return await env.token(user, "mcp:read,secrets:reveal")


async def flood(env: ProductEnv, token: str, user_id: str, count: int) -> list[int]:
    """`count` calls with large, distinct results; the bytes the cache holds after each one,
    in all and for this user."""
    cache = base.results_of(env.store)
    held: list[int] = []
    for limit in range(1, count + 1):
        listed = await env.structured(token, "list_env_vars", {"project": "api", "limit": limit})
        assert len(listed["items"]) == limit
        held += [cache.bytes, cache.user_bytes(user_id)]
    return held


async def test_the_results_a_client_leaves_cached_stay_within_the_byte_bounds(
    env: ProductEnv,
) -> None:
    ada_token = await seed_values(env, "ada@example.com", 40, 8 * 1024)
    bob_token = await seed_values(env, "bob@example.com", 40, 8 * 1024)
    cache = base.results_of(env.store)
    # Bounds of a few results each, so that a flood of 40 results overflows them.
    cache.total, cache.share = 400_000, 250_000
    ada, bob = (await env.user("ada@example.com")).id, (await env.user("bob@example.com")).id
    held = await flood(env, ada_token, ada, 40) + await flood(env, bob_token, bob, 40)
    # The two together held more than one share, and never more than the total.
    assert cache.share < max(held[0::2]) <= cache.total
    assert max(held[1::2]) <= cache.share
    assert cache.user_bytes(bob) > 0
    assert cache.bytes == cache.user_bytes(ada) + cache.user_bytes(bob) <= cache.total


# --- 2025-03-26 batches -------------------------------------------------------------------

LEGACY = "2025-03-26"
TOO_MANY = "Too many requests for this token; retry after the number of seconds in Retry-After."


def batch(*messages: bytes) -> bytes:
    return b"[" + b",".join(messages) + b"]"


@asynccontextmanager
async def rate_limited(
    store: Store, tmp_path: Path, burst: int
) -> AsyncIterator[tuple[McpServer, str]]:
    """The product on `store` with a token that may send `burst` requests, refilled at one a
    minute."""
    limits = Limits(rate_per_minute=1, rate_burst=burst)
    parts = build_product(ServerConfig(port=0, data_dir=str(tmp_path), limits=limits), store)
    user = await parts.accounts.ensure_user("ada@example.com")
    _, token = await parts.accounts.mint(user, "test", ("mcp:full",), None)
    async with anyio.create_task_group() as tasks:
        await tasks.start(parts.server.serve)
        try:
            yield parts.server, token
        finally:
            parts.server.shutdown()


async def test_each_request_of_a_batch_counts_against_the_token_rate_limit(
    store: Store, tmp_path: Path
) -> None:
    async with rate_limited(store, tmp_path, burst=6) as (server, token):
        # initialize and notifications/initialized take two of the six.
        session_id = await open_session(server, LEGACY, token=token)
        headers = {**post_headers(session_id, LEGACY), "Authorization": f"Bearer {token}"}
        pings = [rpc("ping", i) for i in range(1, 7)]
        body = batch(notification("notifications/progress"), *pings)
        first = await exchange(server, "POST", headers, body)
        second = await exchange(server, "POST", headers, batch(rpc("ping", 7)))
    assert first.status == 200
    assert first.head.get("retry-after") == "60"
    refused = {"code": -32000, "message": TOO_MANY, "data": {"retryAfter": 60}}
    assert first.json() == [{"jsonrpc": "2.0", "id": i, "result": {}} for i in range(1, 5)] + [
        {"jsonrpc": "2.0", "id": i, "error": refused} for i in (5, 6)
    ]
    assert (second.status, second.head.get("retry-after")) == (429, "60")
    assert second.body.decode() == TOO_MANY + "\n"


async def test_a_batch_of_more_than_100_messages_is_refused(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server, LEGACY)
    body = batch(*(rpc("ping", i) for i in range(101)))
    reply = await exchange(conformance_server, "POST", post_headers(session_id, LEGACY), body)
    assert reply.status == 400
    assert reply.json() == rpc_error(
        None,
        -32600,
        "Invalid Request: a batch may hold at most 100 messages; send the rest in another request.",
    )
    full = await exchange(
        conformance_server,
        "POST",
        post_headers(session_id, LEGACY),
        batch(*(rpc("ping", i) for i in range(100))),
    )
    assert full.json() == [{"jsonrpc": "2.0", "id": i, "result": {}} for i in range(100)]


class Ticks:
    """A tool that never waits: it counts its calls, and lets a waiting task know of the
    first one."""

    def __init__(self) -> None:
        self.count = 0
        self.first = anyio.Event()

    async def handler(self, args: dict[str, Any], ctx: Any) -> str:
        self.count += 1
        self.first.set()
        return "tick"

    def catalogue(self) -> Catalogue:
        schema = {"type": "object", "properties": {}}
        return Catalogue([Tool("tick", "Counts its calls", schema, self.handler)])


async def test_a_long_batch_lets_other_tasks_run_between_its_requests() -> None:
    ticks = Ticks()
    seen: list[int] = []
    call = {"name": "tick", "arguments": {}}
    body = batch(*(rpc("tools/call", i, **call) for i in range(100)))

    async def watch() -> None:
        await ticks.first.wait()
        seen.append(ticks.count)

    async with running(catalogue=ticks.catalogue()) as server:
        session_id = await open_session(server, LEGACY)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                reply = await exchange(server, "POST", post_headers(session_id, LEGACY), body)
    assert len(reply.json()) == 100
    assert ticks.count == 100
    # The watcher ran as soon as the first call was answered, not after the hundredth.
    assert seen == [1]


# --- retained reply streams ---------------------------------------------------------------


async def blob(args: dict[str, Any], ctx: Any) -> str:
    return "x" * int(args["size"])


BLOBS = Catalogue(
    [
        Tool(
            "blob",
            "A text of the size asked for",
            {"type": "object", "properties": {"size": {"type": "integer"}}},
            blob,
        )
    ]
)


async def streamed_call(server: McpServer, session_id: str, request_id: int, size: int) -> str:
    """A tools/call whose reply the client asks for as a stream; the stream's first event id."""
    headers = {**post_headers(session_id, LATEST), "Accept": "text/event-stream, application/json"}
    body = rpc("tools/call", request_id, name="blob", arguments={"size": size})
    reply = await exchange(server, "POST", headers, body)
    assert reply.head.get("content-type") == "text/event-stream"
    first = parse_event(reply.body.split(b"\n\n")[0])
    assert first is not None and first.id is not None
    return first.id


async def test_a_session_keeps_a_bounded_number_of_bytes_for_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "MAX_RETAINED_BYTES", 1_000_000)
    async with running(catalogue=BLOBS) as server:
        session_id = await open_session(server)
        ids = [await streamed_call(server, session_id, i, 200_000) for i in range(20)]
        resume = post_headers(session_id, LATEST)
        oldest = await exchange(server, "GET", {**resume, "Last-Event-ID": ids[0]})
        newest = await exchange(server, "GET", {**resume, "Last-Event-ID": ids[-1]})
        session = local_sessions(server.service).peek(session_id)
        assert session is not None
        kept = session.runtime.streams.values()
        held = sum(len(item.data) for stream in kept for item in stream.items)
    assert 0 < held <= 1_000_000
    assert oldest.status == 404
    assert oldest.json() == rpc_error(
        None, -32600, "Not found: Last-Event-ID names no stream this session can resume."
    )
    assert newest.status == 200
    replayed = parse_event(newest.body.split(b"\n\n")[0])
    assert replayed is not None
    assert replayed.json()["result"]["content"] == [{"type": "text", "text": "x" * 200_000}]


async def test_all_sessions_together_keep_a_bounded_number_of_bytes_for_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "MAX_RETAINED_BYTES_ALL", 1_000_000)
    async with running(catalogue=BLOBS) as server:
        first, second = await open_session(server), await open_session(server)
        early = [await streamed_call(server, first, i, 200_000) for i in range(3)]
        late = [await streamed_call(server, second, i, 200_000) for i in range(3)]
        held = server.service.retained.held
        gone = await exchange(
            server, "GET", {**post_headers(first, LATEST), "Last-Event-ID": early[0]}
        )
        kept = await exchange(
            server, "GET", {**post_headers(second, LATEST), "Last-Event-ID": late[-1]}
        )
        await exchange(server, "DELETE", post_headers(second, LATEST))
        released = server.service.retained.held
    assert 800_000 < held <= 1_000_000
    assert (gone.status, kept.status) == (404, 200)
    replayed = parse_event(kept.body.split(b"\n\n")[0])
    assert replayed is not None
    assert released == held - 3 * len(replayed.data)


async def test_an_error_quotes_at_most_100_characters_of_a_name_the_client_sent(
    conformance_server: McpServer,
) -> None:
    session_id = await open_session(conformance_server)
    body = rpc("tools/call", 5, name="x" * 1_000_000)
    reply = await exchange(conformance_server, "POST", post_headers(session_id, LATEST), body)
    assert reply.json() == rpc_error(
        5, -32602, f"Unknown tool: '{'x' * 100}…'. Call tools/list to see the available tools."
    )


# --- what a session keeps of its client -----------------------------------------------------


async def test_initialize_with_capabilities_of_more_than_16_kib_opens_no_session(
    conformance_server: McpServer,
) -> None:
    sessions = local_sessions(conformance_server.service)
    before = len(sessions)
    bulky = {"experimental": {"notes": "n" * MAX_CLIENT_DESCRIPTION_BYTES}}
    reply = await exchange(
        conformance_server, "POST", post_headers(), initialize_body(capabilities=bulky)
    )
    assert reply.status == 200
    assert reply.head.get("mcp-session-id") is None
    assert reply.json() == rpc_error(
        0, -32602, "'capabilities' and 'clientInfo' may take at most 16 KiB of JSON together."
    )
    assert len(sessions) == before
    assert await open_session(conformance_server)


# --- rounds of client input ---------------------------------------------------------------


async def insatiable(args: dict[str, Any], ctx: Any) -> InputRequired:
    """Whatever the answers, asks one more question."""
    asked = len(ctx.input_responses)
    return InputRequired({f"q{asked}": elicit_request(f"Question {asked}?", NAME_SCHEMA)})


class Answers:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.count += 1
        return types.ElicitResult(action="accept", content={"name": "Ada"})


async def test_a_tool_that_keeps_asking_is_ended_after_ten_rounds_of_client_input() -> None:
    schema = {"type": "object", "properties": {}}
    catalogue = Catalogue([Tool("insatiable", "Always asks again", schema, insatiable)])
    answers = Answers()
    async with running(catalogue=catalogue) as server, httpx2.AsyncClient() as http:
        transport = streamable_http_client(server.url, http_client=http)
        client = Client(transport, mode="legacy", cache=None, elicitation_callback=answers)  # type: ignore[arg-type]
        async with client:
            with anyio.fail_after(WAIT):
                result = await client.call_tool("insatiable", {})
    assert answers.count == MAX_INPUT_ROUNDS
    assert result.is_error is True
    assert [c.model_dump()["text"] for c in result.content] == [
        "This request still needed client input after 10 rounds, the most one request may "
        "take; send it again and answer so that it can finish sooner."
    ]


# --- subscriptions/listen streams -----------------------------------------------------------


def listen(request_id: int, **notifications: Any) -> bytes:
    return rpc("subscriptions/listen", request_id, notifications=notifications, _meta=modern_meta())


def listen_headers(token: str) -> dict[str, str]:
    return {**modern_headers("subscriptions/listen"), "Authorization": f"Bearer {token}"}


async def open_listen(server: McpServer, stack: AsyncExitStack, token: str, i: int) -> Wire:
    """A listen stream of `token`, acknowledged and held open until `stack` closes."""
    wire = await stack.enter_async_context(connect(server))
    await wire.request("POST", headers=listen_headers(token), body=listen(i, toolsListChanged=True))
    head = await wire.head()
    assert head.status == 200, head
    return wire


async def test_a_token_holds_a_bounded_number_of_listen_streams_and_others_still_listen() -> None:
    async with running(authenticate=bearer_auth) as server, AsyncExitStack() as stack:
        for i in range(MAX_STREAMS_PER_TOKEN):
            await open_listen(server, stack, "ada", i)
        refused = await exchange(
            server, "POST", listen_headers("ada"), listen(99, toolsListChanged=True)
        )
        await open_listen(server, stack, "bob", 0)
    assert (refused.status, refused.head.get("retry-after")) == (429, "1")
    assert refused.body.decode() == (
        f"This token already has {MAX_STREAMS_PER_TOKEN} open streams (GET and "
        "subscriptions/listen); close one before opening another.\n"
    )


async def test_a_listen_stream_names_a_bounded_number_of_resources(
    conformance_server: McpServer,
) -> None:
    too_many = [f"test://template/{i}/data" for i in range(MAX_SUBSCRIPTIONS + 1)]
    too_long = ["test://template/" + "1" * 2040 + "/data"]
    replies = [
        await exchange(
            conformance_server,
            "POST",
            modern_headers("subscriptions/listen"),
            listen(1, resourceSubscriptions=uris),
        )
        for uris in (too_many, too_long)
    ]
    refusal = rpc_error(
        1,
        -32602,
        "'resourceSubscriptions' may name at most 100 URIs of at most 2048 characters each.",
    )
    assert [(r.status, r.json()) for r in replies] == [(200, refusal), (200, refusal)]
