"""The SQLite backend itself: migrations applied once, in order, and a newer schema refused;
its threads, which keep the event loop free; transactions that are all or nothing whatever
interrupts them; the version that read caches follow."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import cast

import anyio
import pytest

from sp00ky_mcp.cli.commands import main
from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.store import StoreError, StoreUnavailable, open_store
from sp00ky_mcp.product.store.repos.deployments import Deployment
from sp00ky_mcp.product.store.sqlite import DB_NAME, SqliteStore
from sp00ky_mcp.product.store.sqlite_schema import LATEST, MIGRATIONS

pytestmark = pytest.mark.anyio


async def test_a_new_store_applies_every_migration_in_order_and_a_second_open_none(
    tmp_path: Path,
) -> None:
    first = await SqliteStore.open(tmp_path)
    applied = (first.applied_at_open, await first.schema_version())
    await first.close()
    second = await SqliteStore.open(tmp_path)
    again = (second.applied_at_open, await second.schema_version())
    await second.close()
    assert applied == ([version for version, _ in MIGRATIONS], LATEST)
    assert again == ([], LATEST)


def test_the_migrations_are_one_explicit_list_in_increasing_order() -> None:
    versions = [version for version, _ in MIGRATIONS]
    assert versions == sorted(set(versions))
    assert versions[-1] == LATEST


async def test_a_store_written_by_a_newer_version_is_refused_with_one_sentence(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path)
    await store.close()
    with closing(sqlite3.connect(tmp_path / DB_NAME)) as db, db:
        db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (LATEST + 1,))
    with pytest.raises(StoreError) as refused:
        await SqliteStore.open(tmp_path)
    assert str(refused.value) == (
        f"The store at {tmp_path / DB_NAME} has schema version {LATEST + 1}, newer than this "
        f"sp00ky-mcp knows ({LATEST}); upgrade sp00ky-mcp, or pass another --data-dir."
    )


async def test_deployments_made_before_their_record_existed_are_counted_after_the_upgrade(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path)
    accounts = Accounts(store)
    tenant = await accounts.personal_tenant((await accounts.ensure_user("ada@example.com")).id)
    async with store.transaction() as tx:
        await tx.support.add_project("prj_api", tenant, "api", "us-east", 0.0)
        await tx.deployments.add(
            Deployment("dep_1", "prj_api", None, "main", "live", "manual", 5.0, 5.0, None, None)
        )
    await store.close()
    with closing(sqlite3.connect(tmp_path / DB_NAME)) as db, db:  # as the version before left it
        db.execute("DROP TABLE deployments_made")
        db.execute("DELETE FROM schema_migrations WHERE version = 90")
    upgraded = await SqliteStore.open(tmp_path)
    rows = await upgraded.reads.db.all(
        "SELECT deployment_id, tenant_id, created_at FROM deployments_made"
    )
    await upgraded.close()
    assert [(r["deployment_id"], r["tenant_id"], r["created_at"]) for r in rows] == [
        ("dep_1", tenant, 5.0)
    ]


def test_migrate_says_what_it_applied_and_then_that_there_is_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / DB_NAME
    first = main(["mcp", "migrate", "--data-dir", str(tmp_path)])
    applied = capsys.readouterr().out
    second = main(["mcp", "migrate", "--data-dir", str(tmp_path)])
    nothing = capsys.readouterr().out
    steps = ", ".join(str(version) for version, _ in MIGRATIONS)
    assert (first, second) == (0, 0)
    assert applied == f"Migrated {where} to schema version {LATEST} (applied {steps}).\n"
    assert nothing == f"{where} is already at schema version {LATEST}; nothing to do.\n"


async def test_a_block_that_raises_changes_nothing(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    record, _ = await accounts.mint(user, "kept", ("mcp:read",), None)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.accounts.revoke_token(record.id, 1.0)
            raise RuntimeError("the block fails after its write")
    kept = await store.reads.accounts.token(record.id)
    await store.close()
    assert kept is not None and kept.revoked_at is None


async def test_a_transaction_cancelled_half_way_changes_nothing_and_frees_the_writer(
    tmp_path: Path,
) -> None:
    store = await open_store(tmp_path)
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    record, _ = await accounts.mint(user, "kept", ("mcp:read",), None)
    wrote = anyio.Event()

    async def revoke_then_wait() -> None:
        async with store.transaction() as tx:
            await tx.accounts.revoke_token(record.id, 1.0)
            wrote.set()
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(revoke_then_wait)
            await wrote.wait()
            tasks.cancel_scope.cancel()
        kept = await store.reads.accounts.token(record.id)
        await accounts.revoke(user, "kept")
        revoked = await store.reads.accounts.token(record.id)
    await store.close()
    assert kept is not None and kept.revoked_at is None
    assert revoked is not None and revoked.revoked_at is not None


async def test_a_transaction_cancelled_while_it_waits_to_begin_leaves_the_writer_usable(
    tmp_path: Path,
) -> None:
    """A client gone while its write waited on another process's lock: the BEGIN that then
    goes through on the writer's thread is rolled back, not left open under every later
    write."""
    store = cast(SqliteStore, await open_store(tmp_path))
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    entered: list[bool] = []

    async def write() -> None:
        async with store.transaction():
            entered.append(True)

    with closing(sqlite3.connect(store.path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write)
                while not store.writer_busy:
                    await anyio.lowlevel.checkpoint()
                tasks.cancel_scope.cancel()
        holder.execute("ROLLBACK")
    with anyio.fail_after(5):
        record, _ = await accounts.mint(user, "after", ("mcp:read",), None)
        found = await store.reads.accounts.token(record.id)
    await store.close()
    assert entered == []
    assert found is not None


async def test_the_version_changes_with_a_transaction_here_or_in_another_process_only(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path)
    other = await SqliteStore.open(tmp_path)  # as another process would open it
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    await anyio.lowlevel.checkpoint()
    before = await store.version()
    await accounts.touch("tok_none", 1.0)  # bookkeeping: nothing cached reads it
    await accounts.audit([])
    await anyio.lowlevel.checkpoint()
    after_bookkeeping = await store.version()
    await accounts.mint(user, "t", ("mcp:read",), None)
    await anyio.lowlevel.checkpoint()
    after_ours = await store.version()
    await Accounts(other).ensure_user("bob@example.com")
    await anyio.lowlevel.checkpoint()
    after_theirs = await store.version()
    await other.close()
    await store.close()
    assert after_bookkeeping == before
    assert len({before, after_ours, after_theirs}) == 3


async def test_the_version_is_read_again_only_once_anyone_has_committed(tmp_path: Path) -> None:
    """The WAL index's header, mapped, says when nothing was committed: no read, no thread."""
    store = await SqliteStore.open(tmp_path)
    reads: list[int] = []
    read = store._read_version

    async def counted() -> int:
        reads.append(await read())
        return reads[-1]

    store._read_version = counted  # type: ignore[method-assign]
    quiet = []
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
        quiet.append(await store.version())
    with closing(sqlite3.connect(store.path, isolation_level=None)) as other:  # any process
        other.execute("UPDATE store_version SET n = n + 1")
    await anyio.lowlevel.checkpoint()
    changed = await store.version()
    await anyio.lowlevel.checkpoint()
    again = await store.version()
    await store.close()
    assert len(set(quiet)) == 1
    assert changed == again == (quiet[0][0] + 1, quiet[0][1])
    assert reads == [quiet[0][0], quiet[0][0] + 1]


async def test_a_commit_after_the_log_was_checkpointed_and_truncated_is_seen(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path)
    before = await store.version()
    with closing(sqlite3.connect(store.path, isolation_level=None)) as other:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await anyio.lowlevel.checkpoint()
        checkpointed = await store.version()
        other.execute("UPDATE store_version SET n = n + 1")  # the log starts over
    await anyio.lowlevel.checkpoint()
    after = await store.version()
    await store.close()
    assert checkpointed == before
    assert after == (before[0] + 1, before[1])


async def test_a_closed_store_says_so_and_maps_nothing_again(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    await store.version()
    await store.close()
    await anyio.lowlevel.checkpoint()
    with pytest.raises(StoreUnavailable) as closed:
        await store.version()
    assert closed.value.message == "The server's data store is closed, so nothing was changed."
    assert store._watch is None


async def test_a_write_past_the_busy_timeout_fails_with_a_sentence_and_reads_go_on(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path)
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    await store.set_busy_timeout(0.05)
    with closing(sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable) as refused:
            await accounts.mint(user, "late", ("mcp:read",), None)
        read = await accounts.user_by_email("ada@example.com")
        holder.execute("ROLLBACK")
    await store.close()
    assert refused.value.message == (
        "The server's data store is locked by another process, so nothing was changed; "
        "try again shortly."
    )
    assert read == user
