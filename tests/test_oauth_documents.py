"""Clients described by metadata documents: a stored copy outlives fetches that fail for a
while, one fetch of a document runs at a time, each address has a share of fetches, and host
lookups keep to threads of their own."""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import anyio
import orjson
import pytest

from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.oauth import fetching
from sp00ky_mcp.product.oauth.clients import (
    DOCUMENT_SECONDS,
    FETCH_BURST,
    STALE_SECONDS,
    ClientRefused,
    Clients,
    DocumentUnreachable,
    FetchBusy,
)
from sp00ky_mcp.product.oauth.fetching import Resolver, _to_try
from sp00ky_mcp.product.store import Store
from sp00ky_mcp.product.store.repos.oauth import Grant

pytestmark = pytest.mark.anyio

CLIENT_ID = "https://app.example/client.json"


def document(client_id: str = CLIENT_ID, name: str = "Doc Client") -> bytes:
    return orjson.dumps(
        {"client_id": client_id, "client_name": name, "redirect_uris": ["https://app.example/cb"]}
    )


class Documents:
    """The web as far as these tests need it: a document per URL, or a failure to raise."""

    def __init__(self) -> None:
        self.served: dict[str, bytes | ClientRefused] = {}
        self.asked: list[str] = []
        self.renewals: list[bool] = []
        self.gate: anyio.Event | None = None

    async def fetch(self, url: str, renewing: bool) -> bytes:
        self.asked.append(url)
        self.renewals.append(renewing)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.served[url]
        if isinstance(answer, ClientRefused):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def web() -> Documents:
    return Documents()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clients(store: Store, web: Documents, clock: Clock) -> Clients:
    return Clients(store, web.fetch, clock)


async def test_a_stored_document_serves_for_a_day_while_fetching_it_again_fails(
    clients: Clients, web: Documents, clock: Clock
) -> None:
    web.served[CLIENT_ID] = document()
    await clients.find(CLIENT_ID)
    web.served[CLIENT_ID] = DocumentUnreachable("The document's server is down.")
    clock.now += DOCUMENT_SECONDS + 1
    assert (await clients.find(CLIENT_ID)).name == "Doc Client"
    clock.now += STALE_SECONDS
    with pytest.raises(DocumentUnreachable, match="The document's server is down"):
        await clients.find(CLIENT_ID)


async def test_a_document_its_owner_withdrew_stops_serving_at_the_next_fetch(
    clients: Clients, web: Documents, clock: Clock
) -> None:
    web.served[CLIENT_ID] = document()
    await clients.find(CLIENT_ID)
    web.served[CLIENT_ID] = document(client_id="https://elsewhere.example/c.json")
    clock.now += DOCUMENT_SECONDS + 1
    with pytest.raises(ClientRefused, match="must name its own URL as client_id"):
        await clients.find(CLIENT_ID)


async def test_a_document_fetched_again_after_an_hour_replaces_the_stored_copy(
    clients: Clients, web: Documents, clock: Clock
) -> None:
    web.served[CLIENT_ID] = document()
    await clients.find(CLIENT_ID)
    web.served[CLIENT_ID] = document(name="Renamed Client")
    clock.now += DOCUMENT_SECONDS - 1
    assert (await clients.find(CLIENT_ID)).name == "Doc Client"
    clock.now += 2
    assert (await clients.find(CLIENT_ID)).name == "Renamed Client"
    assert web.asked == [CLIENT_ID, CLIENT_ID]
    assert web.renewals == [False, False]  # no user has allowed it anything


async def test_only_a_client_a_user_allowed_renews_its_document_with_the_kept_lookups(
    clients: Clients, web: Documents, clock: Clock, store: Store
) -> None:
    web.served[CLIENT_ID] = document()
    await clients.find(CLIENT_ID)
    clock.now += DOCUMENT_SECONDS + 1
    await clients.find(CLIENT_ID)
    user = await Accounts(store).ensure_user("ada@example.com")
    grant = Grant("grt_1", CLIENT_ID, "Doc Client", user.id, ("mcp:read",), "r", 0.0, None)
    async with store.transaction() as tx:
        await tx.oauth.add_grant(grant)
    clock.now += DOCUMENT_SECONDS + 1
    await clients.find(CLIENT_ID)
    async with store.transaction() as tx:
        await tx.oauth.revoke_grant(grant.id, clock.now)
    clock.now += DOCUMENT_SECONDS + 1
    await clients.find(CLIENT_ID)
    assert web.renewals == [False, False, True, False]


async def test_a_document_never_stored_is_not_fetched_where_none_is_new(
    clients: Clients, web: Documents
) -> None:
    web.served[CLIENT_ID] = document()
    with pytest.raises(ClientRefused, match="has not signed anyone in here"):
        await clients.find(CLIENT_ID, new=False)
    assert web.asked == []
    await clients.find(CLIENT_ID)
    assert (await clients.find(CLIENT_ID, new=False)).name == "Doc Client"


async def test_many_asking_for_one_document_at_once_cause_one_fetch(
    clients: Clients, web: Documents
) -> None:
    web.served[CLIENT_ID] = document()
    web.gate = anyio.Event()
    found: list[str] = []

    async def find() -> None:
        found.append((await clients.find(CLIENT_ID)).name)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(find)
            await anyio.wait_all_tasks_blocked()
            web.gate.set()
    assert found == ["Doc Client"] * 5
    assert web.asked == [CLIENT_ID]
    assert clients.fetching == {}


async def _share_spent(clients: Clients, web: Documents, asker: str) -> list[str]:
    """Documents one more than an address's share, all but the last fetched for `asker`."""
    ids = [f"https://app.example/c{n}.json" for n in range(int(FETCH_BURST) + 1)]
    for client_id in ids:
        web.served[client_id] = document(client_id)
    for client_id in ids[:-1]:
        await clients.find(client_id, asker)
    return ids


async def test_one_address_has_its_share_of_fetches_and_no_more(
    clients: Clients, web: Documents, clock: Clock
) -> None:
    ids = await _share_spent(clients, web, "203.0.113.7")
    with pytest.raises(FetchBusy, match="Too many client documents were looked up from your"):
        await clients.find(ids[-1], "203.0.113.7")
    assert (await clients.find(ids[-1], "203.0.113.8")).id == ids[-1]


async def test_a_busy_refusal_is_not_remembered_against_the_document(
    clients: Clients, web: Documents, clock: Clock
) -> None:
    ids = await _share_spent(clients, web, "203.0.113.7")
    with pytest.raises(FetchBusy):
        await clients.find(ids[-1], "203.0.113.7")
    clock.now += 30
    assert (await clients.find(ids[-1], "203.0.113.7")).id == ids[-1]


async def test_a_remembered_refusal_raised_many_times_carries_a_short_traceback(
    clients: Clients, web: Documents
) -> None:
    web.served[CLIENT_ID] = ClientRefused("invalid_client", "The document is not JSON.")
    depths = []
    for _ in range(50):
        with pytest.raises(ClientRefused) as raised:
            await clients.find(CLIENT_ID)
        depths.append(len(traceback.extract_tb(raised.value.__traceback__)))
    assert web.asked == [CLIENT_ID]
    assert depths[-1] == depths[1]


# --- host lookups ------------------------------------------------------------------------------


class StuckResolver:
    """A system resolver whose name servers answer only when the test says so."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, host: str, port: int) -> Sequence[Any]:
        if host == "stuck.example":
            self.started.set()
            self.release.wait(30)
        return [(2, 1, 6, "", ("203.0.113.5", port))]


async def test_lookups_past_their_threads_are_refused_at_once_not_queued() -> None:
    stuck = StuckResolver()
    resolver = Resolver(most=1, lookup=stuck)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:  # a caller that gives up, as a
                tg.start_soon(resolver.addresses, "stuck.example", 443)  # fetch's bound does
                await anyio.to_thread.run_sync(stuck.started.wait, 10)
                tg.cancel_scope.cancel()
            with pytest.raises(FetchBusy, match="too many client hosts"):
                await resolver.addresses("app.example", 443)
    finally:
        stuck.release.set()
    # The abandoned lookup lets go of its thread once its resolver answers.
    assert await anyio.to_thread.run_sync(resolver.slots.acquire, True, 10)
    resolver.slots.release()
    assert await resolver.addresses("app.example", 443) == ["203.0.113.5"]


async def test_fetches_past_the_bound_of_the_process_are_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each address has its allowance, but addresses are many: the process bounds them all."""
    monkeypatch.setattr(fetching, "FETCHING", 1)
    stuck = StuckResolver()
    fetch = fetching.document_fetcher(False, Resolver(lookup=stuck))
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    await fetch("https://stuck.example/client.json", False)

                tg.start_soon(first)
                await anyio.to_thread.run_sync(stuck.started.wait, 10)
                with pytest.raises(FetchBusy, match="fetching too many client documents"):
                    await fetch("https://app.example/client.json", False)
                tg.cancel_scope.cancel()
    finally:
        stuck.release.set()


async def test_lookups_for_new_clients_leave_room_for_renewals() -> None:
    stuck = StuckResolver()
    resolver = Resolver(most=2, lookup=stuck, kept=1)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(resolver.addresses, "stuck.example", 443)
                await anyio.to_thread.run_sync(stuck.started.wait, 10)
                with pytest.raises(FetchBusy):
                    await resolver.addresses("new.example", 443)
                assert await resolver.addresses("known.example", 443, True) == ["203.0.113.5"]
                tg.cancel_scope.cancel()
    finally:
        stuck.release.set()


async def test_a_host_that_does_not_resolve_is_unreachable_for_now() -> None:
    def nothing(host: str, port: int) -> Sequence[Any]:
        raise OSError("Name or service not known")

    assert await Resolver(lookup=nothing).addresses("gone.example", 443) == []


async def test_a_resolver_that_fails_in_an_unforeseen_way_answers_does_not_resolve_at_once() -> (
    None
):
    def broken(host: str, port: int) -> Sequence[Any]:
        raise LookupError("a resolver's own bug")

    with anyio.fail_after(2):
        assert await Resolver(lookup=broken).addresses("app.example", 443) == []


def test_a_fetch_tries_two_addresses_of_each_family_in_the_resolvers_order() -> None:
    listed = ["2001:db8::1", "203.0.113.1", "2001:db8::1", "2001:db8::2", "2001:db8::3"]
    listed += ["203.0.113.2", "203.0.113.3"]
    assert _to_try(listed) == ["2001:db8::1", "203.0.113.1", "2001:db8::2", "203.0.113.2"]


NEVER_ANSWERED = """
import threading, anyio
from sp00ky_mcp.product.oauth.fetching import Resolver

async def main():
    resolver = Resolver(lookup=lambda host, port: threading.Event().wait())
    with anyio.move_on_after(0.1):
        await resolver.addresses("stuck.example", 443)
    print("gave up")

anyio.run(main)
"""


async def test_a_lookup_that_never_ends_does_not_keep_the_process_from_exiting() -> None:
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", NEVER_ANSWERED])
    assert done.stdout == b"gave up\n"
