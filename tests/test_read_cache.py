"""Reads served from memory: token lookups, tenants, secret values and the results of pure
tools are kept while the store's version stays the same, and never outlive a change, whether
this process made it or another one did.  The audit trail commits its records together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import httpx
import pytest

from sp00ky_mcp.engine.catalogue import Tool
from sp00ky_mcp.engine.config import ServerConfig
from sp00ky_mcp.engine.context import ANONYMOUS, CallContext, Principal
from sp00ky_mcp.engine.protocol import ToolResult
from sp00ky_mcp.engine.versions import Era
from sp00ky_mcp.product import app as product_module
from sp00ky_mcp.product.accounts import Accounts, AuditEntry
from sp00ky_mcp.product.app import AuditTrail, build_product
from sp00ky_mcp.product.cloud import env as env_rules
from sp00ky_mcp.product.store import ReadCache, Store, StoreUnavailable, open_store
from sp00ky_mcp.product.store.port import Row, TurnMemo
from sp00ky_mcp.product.store.repos.accounts import AccountsRepo
from sp00ky_mcp.product.store.sqlite import SqliteStore

from .product_support import NOW, REDACTED, ProductEnv

pytestmark = pytest.mark.anyio


@pytest.fixture
async def elsewhere(
    store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    """A second store on the same database as `store`, as another process opens it."""
    if isinstance(store, SqliteStore):
        other: Store = await SqliteStore.open(Path(store.path).parent)
    else:
        url = request.getfixturevalue("postgres_database_url")
        other = await open_store(tmp_path, url=url)
    yield other
    await other.close()


def listing(result: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in result["items"]}


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    original = env_rules.list_variables

    async def counted(cloud: Any, project_id: str) -> Any:
        reads.append(project_id)
        return await original(cloud, project_id)

    monkeypatch.setattr(env_rules, "list_variables", counted)
    return reads


async def change(store: Store, email: str = "ada@example.com") -> None:
    """A committed write: a new user."""
    await Accounts(store).ensure_user(email)


# --- ReadCache ---------------------------------------------------------------------------------


async def test_a_kept_value_is_served_until_this_process_writes(store: Store) -> None:
    cache: ReadCache[str, int] = ReadCache(store, 10)
    _, version = await cache.get("k")
    await cache.put("k", 1, version)
    kept = (await cache.get("k"))[0]
    await change(store)
    assert (kept, (await cache.get("k"))[0]) == (1, None)


async def test_a_kept_value_is_dropped_when_another_connection_commits(
    store: Store, elsewhere: Store
) -> None:
    cache: ReadCache[str, int] = ReadCache(store, 10)
    _, version = await cache.get("k")
    await cache.put("k", 1, version)
    await change(elsewhere)
    await anyio.lowlevel.checkpoint()
    assert (await cache.get("k"))[0] is None


async def test_versions_asked_for_in_one_turn_of_the_loop_share_one_read() -> None:
    memo = TurnMemo()
    reads: list[int] = []

    async def read() -> int:
        reads.append(len(reads))
        return len(reads)

    together = await asyncio.gather(memo.get(read), memo.get(read), memo.get(read))
    await anyio.lowlevel.checkpoint()
    later = await memo.get(read)
    assert (list(together), later, reads) == ([1, 1, 1], 2, [0, 1])


async def test_a_value_read_before_a_change_is_not_kept(store: Store) -> None:
    cache: ReadCache[str, int] = ReadCache(store, 10)
    _, version = await cache.get("k")
    await change(store)
    await cache.put("k", 1, version)
    assert (await cache.get("k"))[0] is None


async def test_a_full_cache_starts_again_empty() -> None:
    store = SqliteStore.in_memory()
    cache: ReadCache[int, int] = ReadCache(store, 2)
    for key in range(3):
        _, version = await cache.get(key)
        await cache.put(key, key, version)
    kept = [(await cache.get(key))[0] for key in range(3)]
    await store.close()
    assert kept == [None, None, 2]


async def test_bookkeeping_writes_leave_the_version_alone(product: ProductEnv) -> None:
    record, _ = await product.accounts.mint(await product.user(), "ci", ("mcp:read",), None)
    await anyio.lowlevel.checkpoint()
    before = await product.store.version()
    await product.accounts.touch(record.id, 1.0)
    await product.accounts.audit(
        [AuditEntry(1.0, record.id, record.user_id, None, "t", "d", "ok", 1.0)]
    )
    await anyio.lowlevel.checkpoint()
    assert await product.store.version() == before


# --- pure tools ---------------------------------------------------------------------------------


async def test_a_listing_is_read_once_while_nothing_changes(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await product.user()
    token = await product.token(ada)
    await product.make_project(ada)
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    reads = count_reads(monkeypatch)
    for _ in range(3):
        await product.structured(token, "list_env_vars", {"project": "api"})
    assert len(reads) == 1


async def test_a_listing_shows_a_change_made_through_a_tool_at_once(
    product: ProductEnv,
) -> None:
    ada = await product.user()
    token = await product.token(ada, "mcp:full,secrets:reveal")
    await product.make_project(ada)
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    first = await product.structured(token, "list_env_vars", {"project": "api"})
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "2"})
    second = await product.structured(token, "list_env_vars", {"project": "api"})
    assert (listing(first), listing(second)) == ({"A": "1"}, {"A": "2"})


async def test_a_listing_shows_a_change_committed_by_another_process_on_the_next_call(
    product: ProductEnv, elsewhere: Store
) -> None:
    ada = await product.user()
    token = await product.token(ada, "mcp:full,secrets:reveal")
    project_id = await product.make_project(ada)
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    await product.structured(token, "list_env_vars", {"project": "api"})
    async with elsewhere.transaction() as tx:
        await tx.env.put(project_id, "A", "changed elsewhere", NOW)
    await anyio.lowlevel.checkpoint()
    after = await product.structured(token, "list_env_vars", {"project": "api"})
    assert listing(after) == {"A": "changed elsewhere"}


async def test_a_revealed_listing_is_never_served_to_a_token_without_secrets_reveal(
    product: ProductEnv,
) -> None:
    ada = await product.user()
    revealing = await product.token(ada, "mcp:full,secrets:reveal", name="reveal")
    reading = await product.token(ada, "mcp:read", name="read")
    await product.make_project(ada)
    await product.structured(revealing, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    shown = await product.structured(revealing, "list_env_vars", {"project": "api"})
    hidden = await product.structured(reading, "list_env_vars", {"project": "api"})
    assert (listing(shown), listing(hidden)) == ({"A": "1"}, {"A": REDACTED})


async def test_a_listing_is_never_served_to_another_user(product: ProductEnv) -> None:
    ada, bob = await product.user(), await product.user("bob@example.com")
    team = await product.make_team({ada: "owner"})
    await product.make_project(ada, tenant_id=team)
    arguments = {"project": "api", "tenant_id": team}
    listed = await product.call(await product.token(ada, name="ada"), "list_env_vars", arguments)
    refused = await product.call(await product.token(bob, name="bob"), "list_env_vars", arguments)
    assert listed["isError"] is False
    assert refused["isError"] is True
    assert refused["content"][0]["text"].startswith(f"No tenant '{team}' is reachable")


async def test_a_member_removed_from_a_team_is_refused_on_the_next_call(
    product: ProductEnv,
) -> None:
    ada, bob = await product.user(), await product.user("bob@example.com")
    team = await product.make_team({ada: "owner", bob: "member"})
    await product.make_project(ada, tenant_id=team)
    bobs = await product.token(bob, name="bob")
    arguments = {"project": "api", "tenant_id": team}
    assert (await product.call(bobs, "list_env_vars", arguments))["isError"] is False
    await product.structured(
        await product.token(ada, name="ada"),
        "remove_team_member",
        {"tenant_id": team, "member": "bob@example.com"},
    )
    assert (await product.call(bobs, "list_env_vars", arguments))["isError"] is True


# --- the audit trail ---------------------------------------------------------------------------


async def audit_context(product: ProductEnv) -> CallContext:
    record, _ = await product.accounts.mint(await product.user(), "ci", ("mcp:read",), None)
    principal = Principal(record.id, record.user_id, frozenset({"projects:read"}))
    return CallContext(Era.MODERN, "2026-07-28", principal, None)  # type: ignore[arg-type]


async def test_records_of_calls_answered_within_the_delay_share_one_commit(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(product.accounts, delay=0)
    ctx = await audit_context(product)
    commits: list[int] = []
    audit = product.accounts.audit

    async def counted(entries: Sequence[AuditEntry]) -> None:
        commits.append(len(entries))
        await audit(entries)

    monkeypatch.setattr(product.accounts, "audit", counted)
    tool = product.server.engine.catalogue.tools["list_projects"]
    for _ in range(3):
        trail(ctx, tool, {}, ToolResult([]), 0.0)
    assert commits == []
    with anyio.fail_after(5):
        while not commits:
            await anyio.lowlevel.checkpoint()
    await trail.drain()
    assert commits == [3]
    assert await product.count("audit_log") == 3


async def test_audit_records_the_store_refuses_are_kept_and_written_once_it_takes_them(
    sqlite_product: ProductEnv, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(product_module, "AUDIT_RETRY_SECONDS", 0.01)
    store = sqlite_product.store
    assert isinstance(store, SqliteStore)
    token = await sqlite_product.token(await sqlite_product.user())
    await sqlite_product.structured(token, "list_projects", {})
    await store.limit_pages(await store.page_count())
    with caplog.at_level(logging.WARNING, logger="sp00ky_mcp.audit"):
        for _ in range(200):
            assert (await sqlite_product.call(token, "list_projects", {}))["isError"] is False
        await store.limit_pages(None)
        with anyio.fail_after(10):
            while await sqlite_product.count("audit_log") != 201:
                await anyio.lowlevel.checkpoint()
    waiting = (
        "audit records wait for the store: The server's data store is full, so nothing was "
        "changed; try again once its operator has freed disk space."
    )
    said = [r.getMessage() for r in caplog.records]
    # The full store may take a batch now and then (a page freed), and refuse the next.
    assert said[0] == waiting
    assert said[-1] == "audit records are written again"
    assert set(said) == {waiting, "audit records are written again"}


async def test_records_kept_while_the_store_refuses_them_are_bounded(
    product: ProductEnv, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(product_module, "MAX_KEPT_RECORDS", 3)
    trail = AuditTrail(product.accounts, delay=3600)
    ctx = await audit_context(product)
    tool = product.server.engine.catalogue.tools["list_projects"]
    audit = product.accounts.audit

    async def refused(entries: Sequence[AuditEntry]) -> None:
        raise StoreUnavailable("The store is down.")

    with caplog.at_level(logging.WARNING, logger="sp00ky_mcp.audit"):
        monkeypatch.setattr(product.accounts, "audit", refused)
        for _ in range(5):
            trail(ctx, tool, {}, ToolResult([]), 0.0)
        await trail.flush()
        monkeypatch.setattr(product.accounts, "audit", audit)
        await trail.flush()
        await trail.drain()
    assert await product.count("audit_log") == 3
    assert [r.getMessage() for r in caplog.records] == [
        "2 audit records were not written: The store is down.; more wait than are kept",
        "audit records wait for the store: The store is down.",
        "audit records are written again",
    ]


class GatedAudit:
    """The store's side of the audit trail, which takes batches only while `up`, each once
    `gate` is open: so a test decides when a write ends, and how."""

    def __init__(self) -> None:
        self.up = True
        self.gate = anyio.Event()
        self.gate.set()
        self.batches: list[list[str]] = []
        self.tried = 0

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        self.tried += 1
        await self.gate.wait()
        if not self.up:
            raise StoreUnavailable("The store is down.")
        self.batches.append([entry.tool for entry in entries])


def audited(trail: AuditTrail, ctx: CallContext, *names: str) -> None:
    for name in names:
        trail(ctx, cast(Tool, SimpleNamespace(name=name)), {}, ToolResult([]), 0.0)


async def written(store: GatedAudit, count: int) -> None:
    with anyio.fail_after(10):
        while sum(map(len, store.batches)) < count:
            await anyio.lowlevel.checkpoint()


async def test_records_refused_by_two_writes_at_once_are_kept_in_order_and_written_once(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(product_module, "AUDIT_RETRY_SECONDS", 0.01)
    store = GatedAudit()
    trail = AuditTrail(cast(Accounts, store), delay=0)
    ctx = await audit_context(product)
    store.up, store.gate = False, anyio.Event()
    audited(trail, ctx, "r1", "r2")
    first = asyncio.ensure_future(trail.flush())
    await anyio.lowlevel.checkpoint()
    audited(trail, ctx, "r3")  # its own write waits for the first's
    second = asyncio.ensure_future(trail.flush())
    store.gate.set()
    await asyncio.gather(first, second)
    store.up = True
    await written(store, 3)
    await trail.drain()
    assert store.batches == [["r1", "r2", "r3"]]


async def test_records_that_arrive_while_the_store_comes_back_are_written_with_the_rest(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(product_module, "AUDIT_RETRY_SECONDS", 0.01)
    monkeypatch.setattr(product_module, "MAX_PENDING_RECORDS", 2)
    store = GatedAudit()
    trail = AuditTrail(cast(Accounts, store), delay=3600)
    ctx = await audit_context(product)
    store.up = False
    audited(trail, ctx, "r1", "r2", "r3")
    await trail.flush()  # refused: kept, and retried
    store.up, store.gate = True, anyio.Event()
    with anyio.fail_after(10):
        while store.tried < 2:
            await anyio.lowlevel.checkpoint()
    audited(trail, ctx, "r4")  # while the retry's first batch is being written
    store.gate.set()
    await written(store, 4)
    await trail.drain()
    assert store.batches == [["r1", "r2"], ["r3", "r4"]]


async def test_the_anonymous_principal_is_never_audited(product: ProductEnv) -> None:
    trail = AuditTrail(product.accounts)
    ctx = CallContext(Era.MODERN, "2026-07-28", ANONYMOUS, None)  # type: ignore[arg-type]
    tool = product.server.engine.catalogue.tools["list_projects"]
    trail(ctx, tool, {}, ToolResult([]), 0.0)
    await trail.flush()
    assert await product.count("audit_log") == 0


async def test_records_still_pending_are_committed_when_the_server_stops(
    store: Store, tmp_path: Path
) -> None:
    parts = build_product(ServerConfig(port=0, data_dir=str(tmp_path)), store)
    user = await parts.accounts.ensure_user("ada@example.com")
    _, token = await parts.accounts.mint(user, "t", ("mcp:full",), None)
    async with anyio.create_task_group() as tasks, httpx.AsyncClient() as http:
        await tasks.start(parts.server.serve)
        env = ProductEnv(parts.server, parts.store, parts.accounts, parts.cloud, http)
        await env.structured(token, "list_projects", {})
        parts.server.shutdown()
    records = await store.reads.accounts.audit_records()
    assert [(entry.tool, entry.outcome) for _, entry in records] == [("list_projects", "ok")]


async def test_records_are_committed_at_once_when_too_many_wait(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(product_module, "MAX_PENDING_RECORDS", 2)
    trail = AuditTrail(product.accounts, delay=3600)
    ctx = await audit_context(product)
    tool = product.server.engine.catalogue.tools["list_projects"]
    for _ in range(2):
        trail(ctx, tool, {}, ToolResult([]), 0.0)
    # Nothing else writes them within the test: the delay is an hour.
    with anyio.fail_after(5):
        while await product.count("audit_log") != 2:
            await anyio.lowlevel.checkpoint()


class Statements:
    """A `Db` that keeps the statements it is given to run and runs none."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.ran: list[tuple[str, tuple[Any, ...]]] = []
        self.changed = 0

    async def one(self, sql: str, *params: Any) -> Row | None:
        return None

    async def all(self, sql: str, *params: Any) -> list[Row]:
        return []

    async def run(self, sql: str, *params: Any) -> int:
        self.ran.append((sql, params))
        return 1

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise AssertionError("audit records are written as multi-row inserts")


async def test_audit_records_become_one_insert_per_hundred() -> None:
    db = Statements()
    entries = [
        AuditEntry(float(i), f"tok{i}", "usr", None, "t", "d", "ok", 1.0) for i in range(250)
    ]
    await AccountsRepo(db).add_audit(entries)
    fields = len(AuditEntry._fields)
    assert [len(params) for _, params in db.ran] == [100 * fields, 100 * fields, 50 * fields]
    assert [sql.count("(?") for sql, _ in db.ran] == [100, 100, 50]
    assert db.ran[2][1][: fields + 2] == (*entries[200], 201.0, "tok201")
