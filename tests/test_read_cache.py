"""Reads served from memory: token lookups, tenants, secret values and the results of pure
tools are kept while the store's version stays the same, and never outlive a change, whether
this process made it or another one did.  The audit trail commits its records together."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sp00ky_mcp.engine.config import ServerConfig
from sp00ky_mcp.engine.context import ANONYMOUS, CallContext, Principal
from sp00ky_mcp.engine.protocol import ToolResult
from sp00ky_mcp.engine.versions import Era
from sp00ky_mcp.product import app as product_module
from sp00ky_mcp.product.accounts import AuditEntry
from sp00ky_mcp.product.app import AuditTrail, build_product
from sp00ky_mcp.product.cloud import env as env_rules
from sp00ky_mcp.product.store import ReadCache, Store, inserts

from .product_support import REDACTED, ProductEnv

pytestmark = pytest.mark.anyio


def listing(result: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in result["items"]}


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    original = env_rules.list_variables

    def counted(cloud: Any, project_id: str) -> Any:
        reads.append(project_id)
        return original(cloud, project_id)

    monkeypatch.setattr(env_rules, "list_variables", counted)
    return reads


# --- ReadCache ---------------------------------------------------------------------------------


def test_a_kept_value_is_served_until_this_process_writes(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    cache: ReadCache[str, int] = ReadCache(store, 10)
    _, version = cache.get("k")
    cache.put("k", 1, version)
    assert cache.get("k")[0] == 1
    with store.transaction() as db:
        db.execute("DELETE FROM audit_log")
    assert cache.get("k")[0] is None
    store.close()


def test_a_kept_value_is_dropped_when_another_connection_commits(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    cache: ReadCache[str, int] = ReadCache(store, 10)
    _, version = cache.get("k")
    cache.put("k", 1, version)
    with closing(sqlite3.connect(store.path, isolation_level=None)) as other:
        other.execute("DELETE FROM audit_log")
    assert cache.get("k")[0] is None
    store.close()


async def test_another_connections_commit_is_seen_from_the_next_turn_of_the_loop(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path)
    before = store.version()
    with closing(sqlite3.connect(store.path, isolation_level=None)) as other:
        other.execute("DELETE FROM audit_log")
    assert store.version() == before
    await anyio.lowlevel.checkpoint()
    assert store.version() != before
    store.close()


def test_a_value_read_before_a_change_is_not_kept(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    cache: ReadCache[str, int] = ReadCache(store, 10)
    _, version = cache.get("k")
    with store.transaction() as db:
        db.execute("DELETE FROM audit_log")
    cache.put("k", 1, version)
    assert cache.get("k")[0] is None
    store.close()


def test_a_full_cache_starts_again_empty(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    cache: ReadCache[int, int] = ReadCache(store, 2)
    for key in range(3):
        _, version = cache.get(key)
        cache.put(key, key, version)
    assert [cache.get(key)[0] for key in range(3)] == [None, None, 2]
    store.close()


async def test_bookkeeping_writes_leave_the_version_alone(product: ProductEnv) -> None:
    record, _ = product.accounts.mint(product.user(), "ci", ("mcp:read",), None)
    before = product.store.version()
    product.accounts.touch(record.id, 1.0)
    product.accounts.audit([AuditEntry(1.0, record.id, record.user_id, None, "t", "d", "ok", 1)])
    assert product.store.version() == before


# --- pure tools ---------------------------------------------------------------------------------


async def test_a_listing_is_read_once_while_nothing_changes(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = product.token(product.user())
    product.make_project(product.user())
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    reads = count_reads(monkeypatch)
    for _ in range(3):
        await product.structured(token, "list_env_vars", {"project": "api"})
    assert len(reads) == 1


async def test_a_listing_shows_a_change_made_through_a_tool_at_once(
    product: ProductEnv,
) -> None:
    token = product.token(product.user(), "mcp:full,secrets:reveal")
    product.make_project(product.user())
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    first = await product.structured(token, "list_env_vars", {"project": "api"})
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "2"})
    second = await product.structured(token, "list_env_vars", {"project": "api"})
    assert (listing(first), listing(second)) == ({"A": "1"}, {"A": "2"})


async def test_a_listing_shows_a_change_committed_by_another_process_on_the_next_call(
    product: ProductEnv,
) -> None:
    token = product.token(product.user(), "mcp:full,secrets:reveal")
    product.make_project(product.user())
    await product.structured(token, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    await product.structured(token, "list_env_vars", {"project": "api"})
    other = Store(product.store.path)
    with other.transaction() as db:
        db.execute("UPDATE env_vars SET value = 'changed elsewhere' WHERE key = 'A'")
    other.close()
    after = await product.structured(token, "list_env_vars", {"project": "api"})
    assert listing(after) == {"A": "changed elsewhere"}


async def test_a_revealed_listing_is_never_served_to_a_token_without_secrets_reveal(
    product: ProductEnv,
) -> None:
    ada = product.user()
    revealing = product.token(ada, "mcp:full,secrets:reveal", name="reveal")
    reading = product.token(ada, "mcp:read", name="read")
    product.make_project(ada)
    await product.structured(revealing, "set_env_var", {"project": "api", "key": "A", "value": "1"})
    shown = await product.structured(revealing, "list_env_vars", {"project": "api"})
    hidden = await product.structured(reading, "list_env_vars", {"project": "api"})
    assert (listing(shown), listing(hidden)) == ({"A": "1"}, {"A": REDACTED})


async def test_a_listing_is_never_served_to_another_user(product: ProductEnv) -> None:
    ada, bob = product.user(), product.user("bob@example.com")
    team = product.make_team({ada: "owner"})
    product.make_project(ada, tenant_id=team)
    arguments = {"project": "api", "tenant_id": team}
    listed = await product.call(product.token(ada, name="ada"), "list_env_vars", arguments)
    refused = await product.call(product.token(bob, name="bob"), "list_env_vars", arguments)
    assert listed["isError"] is False
    assert refused["isError"] is True
    assert refused["content"][0]["text"].startswith(f"No tenant '{team}' is reachable")


async def test_a_member_removed_from_a_team_is_refused_on_the_next_call(
    product: ProductEnv,
) -> None:
    ada, bob = product.user(), product.user("bob@example.com")
    team = product.make_team({ada: "owner", bob: "member"})
    product.make_project(ada, tenant_id=team)
    bobs = product.token(bob, name="bob")
    arguments = {"project": "api", "tenant_id": team}
    assert (await product.call(bobs, "list_env_vars", arguments))["isError"] is False
    await product.structured(
        product.token(ada, name="ada"),
        "remove_team_member",
        {"tenant_id": team, "member": "bob@example.com"},
    )
    assert (await product.call(bobs, "list_env_vars", arguments))["isError"] is True


# --- the audit trail ---------------------------------------------------------------------------


def audit_context(product: ProductEnv) -> CallContext:
    record, _ = product.accounts.mint(product.user(), "ci", ("mcp:read",), None)
    principal = Principal(record.id, record.user_id, frozenset({"projects:read"}))
    return CallContext(Era.MODERN, "2026-07-28", principal, None)  # type: ignore[arg-type]


async def test_records_of_calls_answered_within_the_delay_share_one_commit(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(product.accounts, delay=0)
    ctx = audit_context(product)
    commits: list[int] = []
    record = product.store.record

    def counted(statements: Any) -> None:
        batch = list(statements)
        commits.append(len(batch))
        record(batch)

    monkeypatch.setattr(product.store, "record", counted)
    tool = product.server.engine.catalogue.tools["list_projects"]
    for _ in range(3):
        trail(ctx, tool, {}, ToolResult([]), 0.0)
    assert commits == []
    with anyio.fail_after(5):
        while not commits:
            await anyio.lowlevel.checkpoint()
    assert commits == [1]
    assert product.count("audit_log") == 3


async def test_audit_records_the_store_refuses_are_reported_and_the_answer_stands(
    product: ProductEnv, caplog: pytest.LogCaptureFixture
) -> None:
    token = product.token(product.user())
    await product.structured(token, "list_projects", {})
    pages = product.store.one("PRAGMA page_count")[0]
    product.store.one(f"PRAGMA max_page_count = {pages}")
    with caplog.at_level(logging.ERROR, logger="sp00ky_mcp.audit"):
        for _ in range(200):
            assert (await product.call(token, "list_projects", {}))["isError"] is False
        product.audit_log()
    product.store.one("PRAGMA max_page_count = 1073741823")
    assert any("audit records were not written" in r.getMessage() for r in caplog.records)


async def test_the_anonymous_principal_is_never_audited(product: ProductEnv) -> None:
    trail = AuditTrail(product.accounts)
    ctx = CallContext(Era.MODERN, "2026-07-28", ANONYMOUS, None)  # type: ignore[arg-type]
    tool = product.server.engine.catalogue.tools["list_projects"]
    trail(ctx, tool, {}, ToolResult([]), 0.0)
    trail.flush()
    assert product.count("audit_log") == 0


async def test_records_still_pending_are_committed_when_the_server_stops(tmp_path: Path) -> None:
    parts = build_product(ServerConfig(port=0, data_dir=str(tmp_path)))
    user = parts.accounts.ensure_user("ada@example.com")
    _, token = parts.accounts.mint(user, "t", ("mcp:full",), None)
    async with anyio.create_task_group() as tasks, httpx.AsyncClient() as http:
        await tasks.start(parts.server.serve)
        env = ProductEnv(parts.server, parts.store, parts.accounts, parts.cloud, http)
        await env.structured(token, "list_projects", {})
        parts.server.shutdown()
    rows = parts.store.all("SELECT tool, outcome FROM audit_log")
    parts.store.close()
    assert [tuple(row) for row in rows] == [("list_projects", "ok")]


async def test_records_are_committed_at_once_when_too_many_wait(
    product: ProductEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(product_module, "MAX_PENDING_RECORDS", 2)
    trail = AuditTrail(product.accounts, delay=3600)
    ctx = audit_context(product)
    tool = product.server.engine.catalogue.tools["list_projects"]
    for _ in range(2):
        trail(ctx, tool, {}, ToolResult([]), 0.0)
    assert product.count("audit_log") == 2


def test_rows_become_one_insert_per_hundred() -> None:
    rows = [(i, f"t{i}") for i in range(250)]
    statements = list(inserts("audit_log", ("at", "tool"), rows))
    assert [len(params) for _, params in statements] == [200, 200, 100]
    assert statements[2][0] == "INSERT INTO audit_log (at, tool) VALUES " + ", ".join(
        ["(?, ?)"] * 50
    )
    assert statements[2][1][:4] == [200, "t200", 201, "t201"]
