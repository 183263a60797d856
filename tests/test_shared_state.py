"""Replicas share sessions and quotas on Redis: a session made on one replica is used, changed
and ended through another; one token's rate and calls in flight are counted once for all; a
replica that dies lets go of what it held; and while Redis does not answer, the handshake era
is refused with 503 and the stateless era keeps working, until Redis is back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import orjson
import pytest

from sp00ky_mcp.engine.config import Limits, ServerConfig
from sp00ky_mcp.engine.errors import SharedStateUnavailable
from sp00ky_mcp.engine.events import CUT, END, EVENT, Entry
from sp00ky_mcp.engine.fixtures import conformance_catalogue
from sp00ky_mcp.engine.keys import KeyRing
from sp00ky_mcp.engine.ports import Ports
from sp00ky_mcp.engine.runtime import MAX_RETAINED_STREAMS
from sp00ky_mcp.engine.server import McpServer, anonymous
from sp00ky_mcp.engine.sessions import Session, SessionState
from sp00ky_mcp.product.shared import SharedStateError, connect_shared
from sp00ky_mcp.product.shared import watch as watch_module
from sp00ky_mcp.product.shared.bus import RedisBus
from sp00ky_mcp.product.shared.events import RedisEventLog
from sp00ky_mcp.product.shared.quotas import RedisQuotas
from sp00ky_mcp.product.shared.redis import SharedLink
from sp00ky_mcp.product.shared.sessions import RedisSessions
from sp00ky_mcp.product.store import open_store
from tests.faults_support import settled
from tests.product_support import UNLIMITED, ProductEnv, product_server
from tests.redis_support import OwnRedis
from tests.wire import BOTH, LATEST, initialize_body, token_headers

pytestmark = pytest.mark.anyio

UNAVAILABLE = (
    "The server's shared session state cannot be reached right now, so nothing was done; "
    "retry after the seconds in Retry-After."
)


def a_session(session_id: str, owner: str | None = "tok_a") -> Session:
    return Session(
        id=session_id,
        owner=owner,
        protocol_version=LATEST,
        client_capabilities={"elicitation": {}},
        client_info={"name": "t", "version": "1"},
        last_seen=0.0,
    )


@asynccontextmanager
async def sessions_on(url: str, per_owner: int = 4, total: int = 100) -> AsyncIterator[Any]:
    link = SharedLink(url)
    ended: list[str] = []
    try:
        yield RedisSessions(link, total, per_owner, 3600.0, ended.append), ended, link
    finally:
        await link.close()


# --- sessions ------------------------------------------------------------------------------


async def test_a_session_reads_back_as_it_was_stored_and_changes_are_kept(redis_url: str) -> None:
    async with sessions_on(redis_url) as (sessions, _, _):
        session = a_session("s1")
        await sessions.add(session)
        before = session.mark()
        session.state = SessionState.READY
        session.log_level = "debug"
        session.subscriptions.add("sp00ky://projects/api")
        await sessions.save(session, before)
        found = await sessions.get("s1", 0.0)
    assert found is not None
    assert (found.owner, found.protocol_version, found.client_capabilities) == (
        "tok_a",
        LATEST,
        {"elicitation": {}},
    )
    assert (found.client_info, found.state, found.log_level, found.subscriptions) == (
        {"name": "t", "version": "1"},
        SessionState.READY,
        "debug",
        {"sp00ky://projects/api"},
    )


async def test_changes_made_at_once_through_two_replicas_are_both_kept(redis_url: str) -> None:
    async with sessions_on(redis_url) as (here, _, _), sessions_on(redis_url) as (there, _, _):
        await here.add(a_session("s1"))
        mine, theirs = await here.get("s1", 0.0), await there.get("s1", 0.0)
        assert mine is not None and theirs is not None
        before_mine, before_theirs = mine.mark(), theirs.mark()
        mine.log_level = "debug"
        theirs.subscriptions.add("sp00ky://projects/api")
        await here.save(mine, before_mine)
        await there.save(theirs, before_theirs)
        found = await here.get("s1", 0.0)
    assert found is not None
    assert (found.log_level, found.subscriptions) == ("debug", {"sp00ky://projects/api"})


async def test_a_session_expires_after_its_idle_time_and_each_use_restarts_it(
    redis_url: str,
) -> None:
    async with sessions_on(redis_url) as (sessions, _, link):
        await sessions.add(a_session("s1"))
        await link.client.pexpire(link.key("s", "s1"), 50)
        await sessions.get("s1", 0.0)
        left = await link.client.pttl(link.key("s", "s1"))
    assert 3_590_000 < left <= 3_600_000


async def test_an_ended_session_is_gone_and_saving_it_does_not_bring_it_back(
    redis_url: str,
) -> None:
    async with sessions_on(redis_url) as (sessions, ended, _):
        session = a_session("s1")
        await sessions.add(session)
        assert await sessions.remove("s1") is True
        before = session.mark()
        session.log_level = "debug"
        await sessions.save(session, before)
        found = await sessions.get("s1", 0.0)
        again = await sessions.remove("s1")
    assert (found, again, ended) == (None, False, ["s1"])


async def test_past_a_tokens_cap_its_least_recently_used_session_is_evicted(
    redis_url: str,
) -> None:
    async with sessions_on(redis_url, per_owner=2) as (sessions, ended, _):
        await sessions.add(a_session("old"))
        await sessions.add(a_session("used"))
        await sessions.get("old", 0.0)
        await sessions.add(a_session("new"))
        await sessions.add(a_session("other", owner="tok_b"))
        left = [s for s in ("old", "used", "new", "other") if await sessions.get(s, 0.0)]
    assert ended == ["used"]
    assert left == ["old", "new", "other"]


async def test_past_the_cap_of_all_sessions_the_least_recently_used_is_evicted(
    redis_url: str,
) -> None:
    async with sessions_on(redis_url, total=2) as (sessions, ended, _):
        await sessions.add(a_session("a", owner="tok_a"))
        await sessions.add(a_session("b", owner="tok_b"))
        await sessions.add(a_session("c", owner="tok_c"))
        left = [s for s in ("a", "b", "c") if await sessions.get(s, 0.0)]
    assert (ended, left) == (["a"], ["b", "c"])


async def test_ending_a_tokens_sessions_ends_every_one_of_them(redis_url: str) -> None:
    async with sessions_on(redis_url) as (sessions, ended, _):
        for session_id, owner in (("a1", "tok_a"), ("a2", "tok_a"), ("b1", "tok_b")):
            await sessions.add(a_session(session_id, owner))
        await sessions.remove_owner("tok_a")
        left = [s for s in ("a1", "a2", "b1") if await sessions.get(s, 0.0)]
    assert (sorted(ended), left) == (["a1", "a2"], ["b1"])


async def test_a_sweep_names_the_held_sessions_ended_elsewhere(redis_url: str) -> None:
    async with sessions_on(redis_url) as (here, _, _), sessions_on(redis_url) as (there, _, _):
        await here.add(a_session("kept"))
        await here.add(a_session("ended"))
        await there.remove("ended")
        gone = await here.sweep(0.0, ["kept", "ended"])
    assert gone == ["ended"]


@asynccontextmanager
async def kept_sessions(url: str) -> AsyncIterator[tuple[RedisSessions, RedisBus, SharedLink]]:
    """One replica's sessions with its bus listening, so that it keeps copies in memory."""
    link = SharedLink(url)
    bus = RedisBus(link)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(bus.run)
            with anyio.fail_after(10):
                await bus.listening.wait()
            yield RedisSessions(link, 100, 4, 3600.0, hearing=bus.hearing), bus, link
            tasks.cancel_scope.cancel()
    finally:
        await link.close()


async def test_a_session_in_use_is_served_from_the_replicas_copy_until_it_is_told_otherwise(
    redis_url: str,
) -> None:
    async with kept_sessions(redis_url) as (sessions, _, link):
        await sessions.add(a_session("s1"))
        await link.client.delete(link.key("s", "s1"))  # behind the replica's back
        served = await sessions.get("s1", 0.0)
        sessions.forget("s1")  # what the bus does when another replica ends it
        after = await sessions.get("s1", 0.0)
    assert served is not None and served.id == "s1"
    assert after is None


async def test_a_copy_is_not_trusted_once_the_bus_no_longer_hears(redis_url: str) -> None:
    async with kept_sessions(redis_url) as (sessions, bus, link):
        await sessions.add(a_session("s1"))
        await link.client.delete(link.key("s", "s1"))
        await link.client.client_kill_filter(_type="pubsub")
        with anyio.fail_after(10):
            await bus.deaf.wait()
        found = await sessions.get("s1", 0.0)
    assert found is None


async def test_the_sessions_used_from_copies_are_renewed_on_redis_and_those_gone_dropped(
    redis_url: str,
) -> None:
    async with kept_sessions(redis_url) as (sessions, _, link):
        await sessions.add(a_session("used"))
        await sessions.add(a_session("gone"))
        await link.client.pexpire(link.key("s", "used"), 50)
        await link.client.delete(link.key("s", "gone"))
        assert await sessions.get("used", 0.0) is not None  # from the copies
        assert await sessions.get("gone", 0.0) is not None
        await sessions.confirm()
        left = await link.client.pttl(link.key("s", "used"))
        gone = await sessions.get("gone", 0.0)
    assert 3_590_000 < left <= 3_600_000
    assert gone is None


async def test_a_read_under_way_when_a_copy_is_dropped_is_not_kept(redis_url: str) -> None:
    async with kept_sessions(redis_url) as (sessions, _, link):
        async with sessions_on(redis_url) as (elsewhere, _, _):
            await elsewhere.add(a_session("s1"))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sessions.get, "s1", 0.0)
            await anyio.lowlevel.checkpoint()  # the read is on its way to Redis
            sessions.forget("s1")  # told of a change meanwhile
        await link.client.delete(link.key("s", "s1"))
        found = await sessions.get("s1", 0.0)
    assert found is None


async def test_a_read_racing_this_replicas_own_removal_is_not_kept(redis_url: str) -> None:
    async with kept_sessions(redis_url) as (sessions, _, _):
        removing = sessions._remove

        async def slow(keys: Any, args: Any) -> Any:  # the removal reaches Redis last
            await anyio.lowlevel.checkpoint()
            await anyio.lowlevel.checkpoint()
            return await removing(keys, args)

        sessions._remove = slow  # type: ignore[assignment]
        await sessions.add(a_session("s1"))
        sessions.forget("s1")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sessions.remove, "s1")
            tasks.start_soon(sessions.get, "s1", 0.0)  # a request sent with the DELETE
        after = await sessions.get("s1", 0.0)
    assert after is None


async def test_a_lookup_of_an_unknown_id_does_not_keep_another_read_from_being_kept(
    redis_url: str,
) -> None:
    async with kept_sessions(redis_url) as (sessions, _, link):
        await sessions.add(a_session("s1"))
        sessions.forget("s1")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(sessions.get, "bogus", 0.0)
            tasks.start_soon(sessions.get, "s1", 0.0)
        await link.client.delete(link.key("s", "s1"))
        kept = await sessions.get("s1", 0.0)  # from the copy
    assert kept is not None


async def test_a_change_a_replica_did_not_confirm_is_waited_out_before_its_sender_goes_on(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sp00ky_mcp.product.shared.bus.CONFIRM_SECONDS", 0.05)
    monkeypatch.setattr("sp00ky_mcp.product.shared.sessions.TRUST_SECONDS", 0.2)
    async with (
        kept_sessions(redis_url) as (here, here_bus, _),
        kept_sessions(redis_url) as (there, there_bus, _),
    ):
        here_bus.trusted_for = 0.2
        there_bus.deliver = lambda message: None  # hears, but does not act or confirm
        there_bus._confirm = _silent  # type: ignore[method-assign]
        await here.add(a_session("s1"))
        assert (await there.get("s1", time.monotonic())) is not None  # a copy there
        mine = await here.get("s1", time.monotonic())
        assert mine is not None
        before = mine.mark()
        mine.log_level = "error"
        await here.save(mine, before)
        await here_bus.publish({"t": "changed", "s": "s1"}, confirm=True)
        seen = await there.get("s1", time.monotonic())
    assert seen is not None and seen.log_level == "error"


async def _silent(sender: str, ticket: str) -> None:
    return None


async def test_a_listener_whose_connection_went_silent_subscribes_again(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sp00ky_mcp.product.shared.bus.DEAF_SECONDS", 0.3)
    monkeypatch.setattr("sp00ky_mcp.product.shared.bus.BEAT_SECONDS", 0.1)
    monkeypatch.setattr("sp00ky_mcp.product.shared.bus.RETRY_SECONDS", 0.0)
    async with redis_proxy(redis_url) as (url, faults):
        link = SharedLink(url, pause=0.0)
        bus = RedisBus(link)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(bus.run)
                with anyio.fail_after(10):
                    await bus.listening.wait()
                    faults["generation"] += 1  # the connections open now pass nothing more
                    await bus.deaf.wait()
                    await _listening_again(bus)
                epoch = bus.epoch
                tasks.cancel_scope.cancel()
        finally:
            await link.close()
    assert epoch >= 2


async def _listening_again(bus: RedisBus) -> None:
    while not bus.listening.is_set():
        await bus.listening.wait()


# --- quotas --------------------------------------------------------------------------------


@asynccontextmanager
async def replicas(url: str, count: int) -> AsyncIterator[list[RedisQuotas]]:
    """`count` replicas' quotas, each with its key alive and its bus listening."""
    async with AsyncExitStack() as stack, anyio.create_task_group() as tasks:
        quotas = []
        for _ in range(count):
            link = SharedLink(url)
            stack.push_async_callback(link.close)
            await link.client.set(link.alive_key, b"1")
            bus = RedisBus(link)
            tasks.start_soon(bus.run)
            with anyio.fail_after(10):
                await bus.listening.wait()
            quotas.append(RedisQuotas(link, bus=bus))
        yield quotas
        tasks.cancel_scope.cancel()


async def test_one_tokens_rate_is_counted_once_across_replicas(redis_url: str) -> None:
    async with replicas(redis_url, 2) as (a, b):
        waits = [
            await a.throttle("tok", 100.0, 1.0, 2.0),
            await b.throttle("tok", 100.0, 1.0, 2.0),
            await a.throttle("tok", 100.5, 1.0, 2.0),
            await b.throttle("other", 100.5, 1.0, 2.0),
        ]
    assert waits == [0.0, 0.0, 0.5, 0.0]


async def test_one_tokens_calls_in_flight_are_capped_across_replicas(redis_url: str) -> None:
    async with replicas(redis_url, 2) as (a, b):
        first = await a.claim("tok", 2)
        second = await b.claim("tok", 2)
        refused = await a.claim("tok", 2)
        await b.release("tok")
        after_release = await a.claim("tok", 2)
    assert (first, second, refused, after_release) == (True, True, False, True)


async def test_a_slot_stays_leased_for_the_next_call_and_goes_back_once_idle(
    redis_url: str,
) -> None:
    async with replicas(redis_url, 1) as (quotas,):
        calls = quotas.link.key("calls", "tok")
        await quotas.claim("tok", 4)
        await quotas.release("tok")
        leased = await quotas.link.client.hget(calls, quotas.link.replica)
        again = await quotas.claim("tok", 4)
        await quotas.release("tok")
        await quotas.trim()  # it was needed since the last trim: kept
        kept = await quotas.link.client.hget(calls, quotas.link.replica)
        await quotas.trim()  # idle since: given back
        after = await quotas.link.client.hget(calls, quotas.link.replica)
        held = quotas.held()
    assert (leased, again, kept, after, held) == (b"1", True, b"1", None, {})


@asynccontextmanager
async def redis_proxy(url: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A TCP proxy to the Redis at `url`, with faults to switch on: while `faults["mute"]`,
    requests pass and answers are dropped (Redis acts, its client never hears); once
    `faults["generation"]` moves on, the connections opened before pass nothing either way
    and stay open (as after a lost NAT entry), while new ones work."""
    target = urlsplit(url)
    faults: dict[str, Any] = {"mute": False, "generation": 0}
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def pipe(source: Any, sink: Any, answers: bool, generation: int) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in source:
                dropped = answers and faults["mute"]
                if faults["generation"] == generation and not dropped:
                    await sink.send(chunk)
        await sink.aclose()

    async def serve(client: Any) -> None:
        generation = faults["generation"]
        redis = await anyio.connect_tcp(str(target.hostname), target.port or 6379)
        async with client, redis, anyio.create_task_group() as both:
            both.start_soon(pipe, client, redis, False, generation)
            both.start_soon(pipe, redis, client, True, generation)

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"redis://127.0.0.1:{port}/0", faults
        tasks.cancel_scope.cancel()


async def test_a_slot_leased_whose_answer_was_lost_is_set_right_at_the_next_trim(
    redis_url: str,
) -> None:
    async with redis_proxy(redis_url) as (url, faults):
        link = SharedLink(url, pause=0.0)
        try:
            await link.client.set(link.alive_key, b"1")
            quotas = RedisQuotas(link)
            faults["mute"] = True
            claimed = await quotas.claim("tok", 4)  # Redis leased it; the answer was lost
            faults["mute"] = False
            await quotas.release("tok")
            calls = link.key("calls", "tok")
            left = await link.client.hget(calls, link.replica)
            await quotas.trim()
            after = await link.client.hget(calls, link.replica)
        finally:
            await link.close()
    assert (claimed, left, after) == (True, b"1", None)


async def test_a_trim_never_gives_back_a_slot_a_call_took_while_it_ran(redis_url: str) -> None:
    async with replicas(redis_url, 2) as (a, b):
        assert await a.claim("tok", 2) and await a.claim("tok", 2)
        await a.release("tok")
        await a.trim()  # both were needed since the last trim: kept
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(a.trim)  # one is idle now
            tasks.start_soon(a.claim, "tok", 2)  # and is taken at once
        refused = await b.claim("tok", 2)
    assert (a.held(), refused) == ({"tok": 2}, False)


async def test_a_replica_whose_leases_redis_lost_sets_them_right(own_redis: OwnRedis) -> None:
    async with replicas(own_redis.url, 2) as (a, b):
        a.link.pause = b.link.pause = 0.0  # no pause after the first failure
        await a.link.renew()
        assert await a.claim("tok", 1)
        own_redis.stop()
        own_redis.start()  # empty: a's lease is gone with the rest
        with contextlib.suppress(SharedStateUnavailable):
            await a.link.renew()  # the first use may meet the old connection
        await a.link.renew()
        await a.trim()
        calls = a.link.key("calls", "tok")
        on_redis = await a.link.client.hget(calls, a.link.replica)
        refused = await b.claim("tok", 1)
    assert (on_redis, refused) == (b"1", False)


async def test_a_lease_whose_caller_left_and_whose_answer_was_lost_is_set_right(
    redis_url: str,
) -> None:
    async with redis_proxy(redis_url) as (url, faults):
        link = SharedLink(url, pause=0.0)
        try:
            await link.client.set(link.alive_key, b"1")
            quotas = RedisQuotas(link)
            faults["mute"] = True
            with anyio.move_on_after(0.2):
                await quotas.claim("tok", 1)  # Redis leases it; its caller leaves unanswered
            await quotas.batch.settle()
            faults["mute"] = False
            await quotas.trim()
            left = await link.client.hget(link.key("calls", "tok"), link.replica)
            claimed = await quotas.claim("tok", 1)
        finally:
            await link.close()
    assert (left, claimed) == (None, True)


async def test_the_calls_of_a_replica_that_died_are_let_go(redis_url: str) -> None:
    async with replicas(redis_url, 2) as (a, b):
        assert await a.claim("tok", 1)
        refused = await b.claim("tok", 1)
        await a.link.client.delete(a.link.alive_key)  # its key lapsed: it is gone
        claimed = await b.claim("tok", 1)
    assert (refused, claimed) == (False, True)


async def test_without_redis_each_replica_counts_on_its_own_and_releases_the_same_way(
    own_redis: OwnRedis,
) -> None:
    async with replicas(own_redis.url, 1) as (a,):
        own_redis.stop()
        waits = [await a.throttle("tok", 100.0, 1.0, 1.0), await a.throttle("tok", 100.0, 1.0, 1.0)]
        claims = [await a.claim("tok", 1), await a.claim("tok", 1)]
        await a.release("tok")
        held = a.held()
    assert (waits, claims, held) == ([0.0, 1.0], [True, False], {})


# --- replicas behind a load balancer ---------------------------------------------------------


@asynccontextmanager
async def two_replicas(
    tmp_path: Path, url: str, limits: Limits = UNLIMITED
) -> AsyncIterator[tuple[ProductEnv, ProductEnv]]:
    """Two product servers, each with its own store and link, on one database and one Redis."""
    async with AsyncExitStack() as stack:
        envs = []
        for _ in range(2):
            store = await open_store(tmp_path)
            stack.push_async_callback(store.close)
            shared = await connect_shared(url, limits, pause=0.0)
            stack.push_async_callback(shared.close)
            envs.append(
                await stack.enter_async_context(product_server(store, tmp_path, limits, shared))
            )
        yield envs[0], envs[1]


async def initialize(env: ProductEnv, token: str) -> str:
    reply = await env.http.post(
        env.server.url, content=initialize_body(), headers=token_headers(token)
    )
    assert reply.status_code == 200, reply.text
    return reply.headers["mcp-session-id"]


async def in_session(env: ProductEnv, token: str, session_id: str, method: str) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {}}
    return await env.http.post(env.server.url, json=body, headers=token_headers(token, session_id))


async def test_a_session_made_on_one_replica_is_used_and_ended_through_another(
    tmp_path: Path, redis_url: str
) -> None:
    async with two_replicas(tmp_path, redis_url) as (a, b):
        token = await a.token(await a.user())
        session_id = await initialize(a, token)
        listed = await in_session(b, token, session_id, "tools/list")
        ended = await b.http.delete(b.server.url, headers=token_headers(token, session_id))
        after = await in_session(a, token, session_id, "tools/list")
    assert listed.status_code == 200 and "tools" in listed.json()["result"]
    assert ended.status_code == 200
    assert after.status_code == 404


async def test_a_session_ended_through_one_replica_is_ended_on_one_that_kept_a_copy(
    tmp_path: Path, redis_url: str
) -> None:
    async with two_replicas(tmp_path, redis_url) as (a, b):
        token = await a.token(await a.user())
        session_id = await initialize(a, token)
        used = await in_session(b, token, session_id, "tools/list")  # b keeps a copy
        ended = await a.http.delete(a.server.url, headers=token_headers(token, session_id))
        after = await in_session(b, token, session_id, "tools/list")
    assert (used.status_code, ended.status_code, after.status_code) == (200, 200, 404)


async def test_a_revoked_token_loses_its_sessions_on_every_replica(
    tmp_path: Path, redis_url: str
) -> None:
    async with two_replicas(tmp_path, redis_url) as (a, b):
        user = await a.user()
        token = await a.token(user, name="laptop")
        session_id = await initialize(a, token)
        await a.accounts.revoke(user, "laptop")
        refused = await in_session(b, token, session_id, "tools/list")
        left = await b.server.service.sessions.get(session_id, 0.0)
    assert refused.status_code == 401
    assert left is None


async def test_one_rate_limit_holds_across_replicas(tmp_path: Path, redis_url: str) -> None:
    limits = Limits(rate_per_minute=60, rate_burst=2)
    async with two_replicas(tmp_path, redis_url, limits) as (a, b):
        token = await a.token(await a.user())
        codes = [(await env.rpc(token, "tools/list")).status_code for env in (a, b, a)]
    assert codes == [200, 200, 429]


async def lost_redis(env: ProductEnv) -> None:
    """Once the replica has found Redis gone (its bus no longer hears)."""
    bus = env.server.service.bus
    assert isinstance(bus, RedisBus)
    with anyio.fail_after(10):
        await bus.deaf.wait()


async def test_without_redis_the_handshake_era_is_refused_and_the_stateless_era_serves(
    tmp_path: Path, own_redis: OwnRedis
) -> None:
    async with two_replicas(tmp_path, own_redis.url) as (a, _):
        token = await a.token(await a.user())
        session_id = await initialize(a, token)
        own_redis.stop()
        await lost_redis(a)
        refused = await in_session(a, token, session_id, "tools/list")
        stateless = await a.rpc(token, "tools/list")
        own_redis.start()
        back = await in_session(a, token, session_id, "tools/list")
        anew = await initialize(a, token)
        served = await in_session(a, token, anew, "tools/list")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32603, "message": UNAVAILABLE},
    }
    assert stateless.status_code == 200
    # Redis kept nothing on disk: the session died with it, and the client starts again.
    assert back.status_code == 404
    assert served.status_code == 200


async def test_a_redis_that_does_not_answer_at_start_is_refused_with_a_sentence(
    own_redis: OwnRedis,
) -> None:
    own_redis.stop()
    with pytest.raises(SharedStateError) as refused:
        await connect_shared(own_redis.url, UNLIMITED)
    assert str(refused.value) == (
        f"Redis at {own_redis.url} does not answer; start it, or correct --redis-url."
    )


# --- event streams and the bus ----------------------------------------------------------------


@asynccontextmanager
async def logs_on(url: str, count: int, capacity: int = 8) -> AsyncIterator[list[RedisEventLog]]:
    """`count` replicas' event logs, each with its writer running and its key alive."""
    async with AsyncExitStack() as stack, anyio.create_task_group() as tasks:
        found = []
        for _ in range(count):
            link = SharedLink(url)
            stack.push_async_callback(link.close)
            await link.client.set(link.alive_key, b"1")
            events = RedisEventLog(link, capacity, 3600.0)
            tasks.start_soon(events.run)
            found.append(events)
        yield found
        tasks.cancel_scope.cancel()


async def followed(events: RedisEventLog, stream_id: str, after: int) -> list[Entry | None]:
    with anyio.fail_after(10):
        return [entry async for entry in events.follow("s1", stream_id, after, 0.05)]


async def test_a_stream_kept_by_one_replica_is_replayed_by_another_up_to_its_cut(
    redis_url: str,
) -> None:
    async with logs_on(redis_url, 2) as (here, there):
        for entry in (Entry(EVENT, 1, b"a"), Entry(EVENT, 2, b"b"), Entry(CUT, 2)):
            here.record("s1", "st", entry)
        here.record("s1", "st", Entry(EVENT, 3, b"c", final=True))
        assert await here.settle()
        known = await there.exists("s1", "st"), await there.exists("s1", "other")
        from_start = await followed(there, "st", 0)
        after_cut = await followed(there, "st", 2)
    assert known == (True, False)
    assert from_start == [Entry(EVENT, 1, b"a"), Entry(EVENT, 2, b"b")]
    assert after_cut == [Entry(EVENT, 3, b"c", final=True)]


async def test_a_followed_stream_ends_where_its_writer_ended_it(redis_url: str) -> None:
    async with logs_on(redis_url, 2) as (here, there):
        here.record("s1", "st", Entry(EVENT, 1, b"a"))
        here.record("s1", "st", Entry(END, 1))
        assert await here.settle()
        assert await followed(there, "st", 0) == [Entry(EVENT, 1, b"a")]


async def test_a_stream_whose_writer_died_ends_once_nothing_more_can_come(
    redis_url: str,
) -> None:
    async with logs_on(redis_url, 2) as (here, there):
        here.record("s1", "st", Entry(EVENT, 1, b"a"))
        assert await here.settle()
        await here.link.client.delete(here.link.alive_key)
        assert await followed(there, "st", 0) == [Entry(EVENT, 1, b"a")]


async def test_a_follower_gets_what_another_replica_writes_after_it_began_waiting(
    redis_url: str,
) -> None:
    async with logs_on(redis_url, 2) as (here, there), anyio.create_task_group() as tasks:
        here.record("s1", "st", Entry(EVENT, 1, b"a"))
        assert await here.settle()
        got: list[Entry | None] = []
        waiting = anyio.Event()

        async def follow() -> None:
            async for entry in there.follow("s1", "st", 1, 30.0):
                got.append(entry)
            waiting.set()

        tasks.start_soon(follow)
        await wait_until_watched(there, 1)
        here.record("s1", "st", Entry(EVENT, 2, b"b", final=True))
        with anyio.fail_after(10):
            await waiting.wait()
    assert got == [Entry(EVENT, 2, b"b", final=True)]


async def wait_until_watched(events: RedisEventLog, streams: int) -> None:
    """Until the replica's reader waits on `streams` streams (and its wake stream)."""
    unwatched = await settled(lambda: streams + 1 - len(events.watch.reading or ()), 0)
    assert unwatched == 0


async def test_a_follower_of_a_quiet_stream_waits_longer_than_the_socket_timeout(
    redis_url: str,
) -> None:
    """redis-py's default socket timeout (5 s) must not cut a waiting read short: that read
    would count as Redis failing, and refuse every Redis call of the replica for a moment."""
    async with logs_on(redis_url, 1) as (here,):
        came = await here.watch.wait(here._stream_key("s1", "quiet"), "0-0", 5.5)
        await here.link.ping()
    assert came is False


async def test_a_follower_arriving_as_a_read_sets_out_is_woken_by_the_next_entry(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "BLOCK_SECONDS", 60.0)
    async with logs_on(redis_url, 1) as (here,), anyio.create_task_group() as tasks:
        watch, first, second = here.watch, here._stream_key("s1", "a"), here._stream_key("s1", "b")
        woken: list[bool] = []
        tasks.start_soon(watch.wait, first, "0-0", 60)
        # The second arrives as soon as the reader has set out, before its read reaches Redis.
        with anyio.fail_after(10):
            while watch.reading is None:
                await anyio.lowlevel.checkpoint()

        async def second_follower() -> None:
            woken.append(await watch.wait(second, "0-0", 60))

        tasks.start_soon(second_follower)
        await anyio.lowlevel.checkpoint()
        await here.link.client.xadd(second, {"d": b"x"}, id="1-2")
        with anyio.fail_after(10):  # not at the end of the read's 60 s
            while not woken:
                await anyio.lowlevel.checkpoint()
        tasks.cancel_scope.cancel()
    assert woken == [True]


async def test_any_number_of_followers_wait_without_taking_a_connection_each(
    redis_url: str,
) -> None:
    """Followers of streams nobody writes to, more than the connections a replica keeps for
    waiting many times over, and one more client's follower is served all the same."""
    async with logs_on(redis_url, 2) as (here, there), anyio.create_task_group() as tasks:
        outcomes: list[bool] = []

        async def idle(n: int) -> None:
            outcomes.append(await there.watch.wait(there._stream_key("s1", f"idle{n}"), "0-0", 30))

        for n in range(300):
            tasks.start_soon(idle, n)
        await wait_until_watched(there, 300)
        here.record("s1", "st", Entry(EVENT, 1, b"a", final=True))
        assert await here.settle()
        served = await followed(there, "st", 0)
        tasks.cancel_scope.cancel()
    assert served == [Entry(EVENT, 1, b"a", final=True)]
    assert outcomes == []  # every idle follower was still waiting, none refused


async def test_the_key_beside_a_stream_names_no_stream_and_breaks_nothing(
    redis_url: str,
) -> None:
    """`<stream>:owner` is the key beside a stream: reading it as one would be an error that
    takes Redis for broken, refusing every Redis call of the replica for a moment."""
    async with logs_on(redis_url, 1) as (here,):
        here.record("s1", "st", Entry(EVENT, 1, b"a"))
        assert await here.settle()
        found = await here.exists("s1", "st"), await here.exists("s1", "st:owner")
        await here.link.ping()
    assert found == (True, False)


async def test_a_session_keeps_its_most_recent_streams_only(redis_url: str) -> None:
    async with logs_on(redis_url, 1) as (here,):
        for number in range(MAX_RETAINED_STREAMS + 1):
            here.record("s1", f"st{number}", Entry(EVENT, 1, b"a"))
        assert await here.settle()
        oldest, newest = await here.exists("s1", "st0"), await here.exists("s1", "st32")
    assert (oldest, newest) == (False, True)


class Heard:
    """What one replica's bus delivered."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.got = anyio.Event()

    def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append({k: v for k, v in message.items() if k != "from"})
        self.got.set()


@asynccontextmanager
async def listening_buses(url: str, heard: list[Heard]) -> AsyncIterator[list[RedisBus]]:
    """One replica's bus per `heard`, each delivering to it, all listening."""
    async with AsyncExitStack() as stack, anyio.create_task_group() as tasks:
        buses = []
        for deliver in heard:
            link = SharedLink(url)
            stack.push_async_callback(link.close)
            bus = RedisBus(link)
            bus.deliver = deliver
            tasks.start_soon(bus.run)
            buses.append(bus)
        with anyio.fail_after(10):
            for bus in buses:
                await bus.listening.wait()
        yield buses
        tasks.cancel_scope.cancel()


async def test_the_bus_carries_a_message_to_the_other_replicas_and_not_back(
    redis_url: str,
) -> None:
    heard = [Heard(), Heard()]
    async with listening_buses(redis_url, heard) as buses:
        with anyio.fail_after(10):
            await buses[0].publish({"t": "announce", "method": "m", "params": {}})
            await heard[1].got.wait()
    assert heard[0].messages == []
    assert heard[1].messages == [{"t": "announce", "method": "m", "params": {}}]


async def test_a_confirmed_message_is_acted_on_by_every_replica_before_its_sender_goes_on(
    redis_url: str,
) -> None:
    heard = [Heard(), Heard(), Heard()]
    async with listening_buses(redis_url, heard) as buses:
        with anyio.fail_after(10):
            await buses[0].publish({"t": "ended", "s": "s1"}, confirm=True)
    ended = {"t": "ended", "s": "s1"}
    assert [h.messages for h in heard] == [[], [ended], [ended]]


async def test_a_replica_that_does_not_confirm_holds_its_sender_no_longer_than_the_bound(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sp00ky_mcp.product.shared.bus.CONFIRM_SECONDS", 0.05)
    stuck = anyio.Event()

    async def never_done(message: dict[str, Any]) -> None:
        stuck.set()
        await anyio.sleep_forever()

    async with listening_buses(redis_url, [Heard(), Heard()]) as buses:
        buses[0].trusted_for = 0.1
        buses[1].handlers["spare"] = never_done
        with anyio.fail_after(10):
            await buses[0].publish({"t": "spare", "k": "tok"}, confirm=True)
            await stuck.wait()
    assert stuck.is_set()


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str | None, Any]]:
    """(id, message) of each event of an SSE response; a priming event has no message."""
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:") and line[5:].strip():
            data.append(line[5:].strip())
        elif line == "" and event_id is not None:
            yield event_id, orjson.loads("".join(data)) if data else None
            event_id, data = None, []


async def asked_for_confirmation(
    env: ProductEnv, token: str, session_id: str
) -> tuple[str, dict[str, Any]]:
    """destroy_project called on `env`, its stream read up to the elicitation it asks, then
    the connection dropped: the event id and the request."""
    body = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "destroy_project", "arguments": {"project": "api"}},
    }
    url = env.server.url
    async with env.http.stream(
        "POST", url, json=body, headers=token_headers(token, session_id)
    ) as sent:
        async for event_id, message in sse_events(sent):
            if message is not None and message.get("method") == "elicitation/create":
                assert event_id is not None
                return event_id, message
    raise AssertionError("the call asked nothing")


async def resumed(env: ProductEnv, token: str, session_id: str, last: str) -> list[Any]:
    """The messages a GET with Last-Event-ID on `env` replays and follows to the stream's end."""
    resume = token_headers(token, session_id) | {
        "last-event-id": last,
        "accept": "text/event-stream",
    }
    with anyio.fail_after(15):
        async with env.http.stream("GET", env.server.url, headers=resume) as stream:
            assert stream.status_code == 200, (await stream.aread()).decode()
            return [message async for _, message in sse_events(stream) if message is not None]


async def elicitation_session(env: ProductEnv) -> tuple[str, str]:
    user = await env.user()
    token = await env.token(user)
    await env.make_project(user)
    body = initialize_body(capabilities={"elicitation": {}})
    reply = await env.http.post(env.server.url, content=body, headers=token_headers(token))
    return token, reply.headers["mcp-session-id"]


async def test_a_prompt_asked_on_one_replica_is_answered_and_its_stream_resumed_on_another(
    tmp_path: Path, redis_url: str
) -> None:
    async with two_replicas(tmp_path, redis_url) as (a, b):
        token, session_id = await elicitation_session(a)
        asked_at, asked = await asked_for_confirmation(a, token, session_id)
        answer = {
            "jsonrpc": "2.0",
            "id": asked["id"],
            "result": {"action": "accept", "content": {"confirm": True}},
        }
        posted = await b.http.post(
            b.server.url, json=answer, headers=token_headers(token, session_id)
        )
        replayed = await resumed(b, token, session_id, asked_at)
        listed = await b.structured(token, "list_projects", {})
    assert posted.status_code == 202
    assert [m.get("id") for m in replayed] == [5]
    assert replayed[0]["result"].get("isError") is not True, replayed
    assert listed["items"] == []


async def test_a_call_on_one_replica_is_cancelled_through_another(
    tmp_path: Path, redis_url: str
) -> None:
    async with two_replicas(tmp_path, redis_url) as (a, b):
        token, session_id = await elicitation_session(a)
        asked_at, _ = await asked_for_confirmation(a, token, session_id)
        cancel = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 5, "reason": "changed my mind"},
        }
        posted = await b.http.post(
            b.server.url, json=cancel, headers=token_headers(token, session_id)
        )
        replayed = await resumed(b, token, session_id, asked_at)
        listed = await b.structured(token, "list_projects", {})
    assert posted.status_code == 202
    assert replayed == []
    assert [project["name"] for project in listed["items"]] == ["api"]


# --- decisions batched into one round trip ---------------------------------------------------


async def test_decisions_made_at_once_share_a_round_trip_and_each_gets_its_answer(
    redis_url: str,
) -> None:
    async with replicas(redis_url, 1) as (quotas,):
        answers: list[bool] = []

        async def claim() -> None:
            answers.append(await quotas.claim("tok", 5))

        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(claim)
        held = await quotas.link.client.hget(quotas.link.key("calls", "tok"), quotas.link.replica)
    assert sorted(answers) == [False] * 5 + [True] * 5
    assert held == b"5"


async def test_a_slot_claimed_for_a_caller_that_left_is_given_back(redis_url: str) -> None:
    async with replicas(redis_url, 1) as (quotas,):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await quotas.claim("tok", 1)  # enqueued, then abandoned at once
        await quotas.batch.settle()
        claimed = await quotas.claim("tok", 1)
    assert claimed is True


async def test_a_script_redis_forgot_is_loaded_again_and_run(redis_url: str) -> None:
    async with replicas(redis_url, 1) as (quotas,):
        assert await quotas.claim("tok", 2)
        await quotas.link.client.script_flush()
        again = await quotas.claim("tok", 2)
    assert again is True


@asynccontextmanager
async def conformance_replicas(url: str, key: bytes) -> AsyncIterator[list[McpServer]]:
    """Two conformance servers sharing their state on the Redis at `url` and one signing key."""
    async with AsyncExitStack() as stack, anyio.create_task_group() as tasks:
        servers = []
        for _ in range(2):
            shared = await connect_shared(url, UNLIMITED, pause=0.0)
            stack.push_async_callback(shared.close)
            ports = Ports(shared.sessions, shared.events, shared.bus, shared.quotas, KeyRing([key]))
            config = ServerConfig(port=0, profile="conformance")
            server = McpServer(
                config, conformance_catalogue(), authenticate=anonymous(), ports=ports
            )
            await tasks.start(server.serve)
            with anyio.fail_after(10):
                await shared.bus.listening.wait()
            servers.append(server)
        yield servers
        for server in servers:
            server.shutdown()


@pytest.mark.parametrize("accept", [BOTH, "text/event-stream, application/json"])
async def test_the_log_level_set_on_one_replica_holds_for_calls_on_the_other(
    redis_url: str, accept: str
) -> None:
    async with conformance_replicas(redis_url, b"k" * 32) as (a, b), httpx.AsyncClient() as http:
        plain = {"accept": BOTH, "content-type": "application/json"}
        opened = await http.post(a.url, content=initialize_body(), headers=plain)
        session = plain | {
            "mcp-session-id": opened.headers["mcp-session-id"],
            "mcp-protocol-version": LATEST,
        }
        quiet = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "logging/setLevel",
            "params": {"level": "error"},
        }
        # Answered on a stream or as JSON: either way after the change holds everywhere.
        await http.post(b.url, json=quiet, headers=session | {"accept": accept})
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "test_tool_with_logging", "arguments": {}},
        }
        replies = [(await http.post(s.url, json=call, headers=session)).text for s in (a, b)]
    assert [reply.count("notifications/message") for reply in replies] == [0, 0]
    assert all('"id":2' in reply for reply in replies)


async def test_a_get_stream_with_no_event_yet_is_resumed_on_the_other_replica(
    redis_url: str,
) -> None:
    async with conformance_replicas(redis_url, b"k" * 32) as (a, b), httpx.AsyncClient() as http:
        plain = {"accept": BOTH, "content-type": "application/json"}
        opened = await http.post(a.url, content=initialize_body(), headers=plain)
        session = {
            "accept": "text/event-stream",
            "mcp-session-id": opened.headers["mcp-session-id"],
            "mcp-protocol-version": LATEST,
        }
        with anyio.fail_after(10):
            async with http.stream("GET", a.url, headers=session) as stream:
                primed = await anext(sse_events(stream))
            resume = session | {"last-event-id": str(primed[0])}
            async with http.stream("GET", b.url, headers=resume) as resumed:
                status = resumed.status_code
    assert status == 200
