"""The PostgreSQL backend itself, against a real server: migrations once, a newer schema
refused; two processes' stores on one database, each seeing the other's writes at the next
turn; writes that clash; and a database that goes away while serving and comes back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anyio
import asyncpg
import orjson
import pytest

from sp00ky_mcp.cli.commands import main
from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.store import (
    Clash,
    Store,
    StoreError,
    StoreInDoubt,
    StoreUnavailable,
    open_store,
    postgres,
)
from sp00ky_mcp.product.store.postgres import (
    IN_DOUBT,
    STALLED,
    UNREACHABLE,
    UNREADABLE,
    PostgresStore,
    public_url,
)
from sp00ky_mcp.product.store.postgres_schema import LATEST, MIGRATIONS
from sp00ky_mcp.product.store.repos.deployments import DeploymentsRepo
from sp00ky_mcp.product.tools.base import CHANGED_UNRECORDED
from tests.pg_support import OwnPostgres, psql, with_database
from tests.product_support import product_server, results_not_kept

pytestmark = pytest.mark.anyio


async def test_a_new_database_is_migrated_once(tmp_path: Path, postgres_database_url: str) -> None:
    psql(postgres_database_url, "DROP TABLE IF EXISTS schema_migrations CASCADE")
    psql(postgres_database_url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    first = await open_store(tmp_path, url=postgres_database_url)
    applied = (first.applied_at_open, await first.schema_version())
    second = await open_store(tmp_path, url=postgres_database_url)
    again = second.applied_at_open
    await first.close()
    await second.close()
    assert applied == ([version for version, _ in MIGRATIONS], LATEST)
    assert again == []


async def test_a_database_migrated_by_a_newer_version_is_refused(
    tmp_path: Path, postgres_database_url: str
) -> None:
    store = await open_store(tmp_path, url=postgres_database_url)
    await store.close()
    psql(postgres_database_url, f"INSERT INTO schema_migrations VALUES ({LATEST + 1}, 0)")
    try:
        with pytest.raises(StoreError) as refused:
            await open_store(tmp_path, url=postgres_database_url)
    finally:
        psql(postgres_database_url, f"DELETE FROM schema_migrations WHERE version = {LATEST + 1}")
    assert str(refused.value) == (
        f"The database at {public_url(postgres_database_url)} has schema version {LATEST + 1}, "
        f"newer than this sp00ky-mcp knows ({LATEST}); upgrade sp00ky-mcp, or use another "
        "database."
    )


def test_the_password_of_a_database_url_is_never_shown() -> None:
    shown = public_url("postgresql://sp00ky:s3cret@db.internal:5433/sp00ky?sslmode=require")
    assert shown == "postgresql://sp00ky@db.internal:5433/sp00ky?sslmode=require"


async def test_a_write_through_one_store_is_seen_through_another_at_the_next_turn(
    tmp_path: Path, postgres_database_url: str
) -> None:
    here = await open_store(tmp_path, url=postgres_database_url)
    there = await open_store(tmp_path, url=postgres_database_url)
    await Accounts(there).ensure_user("ada@example.com")
    await anyio.lowlevel.checkpoint()
    before = await there.version()
    user = await Accounts(here).ensure_user("bob@example.com")
    await anyio.lowlevel.checkpoint()
    after = await there.version()
    seen = await Accounts(there).user_by_email("BOB@example.com")
    await here.close()
    await there.close()
    assert after != before
    assert seen == user


async def test_a_duplicate_key_is_a_clash_and_the_transaction_changes_nothing(
    tmp_path: Path, postgres_database_url: str
) -> None:
    store = await open_store(tmp_path, url=postgres_database_url)
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    record, _ = await accounts.mint(user, "one", ("mcp:read",), None)
    with pytest.raises(Clash):
        async with store.transaction() as tx:
            await tx.accounts.revoke_token(record.id, 1.0)
            await tx.accounts.add_token(record, "another digest")
    kept = await store.reads.accounts.token(record.id)
    await store.close()
    assert kept is not None and kept.revoked_at is None


async def test_rotating_the_key_seals_every_value_again_and_they_still_open(
    tmp_path: Path, postgres_database_url: str
) -> None:
    store = await open_store(tmp_path, url=postgres_database_url)
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    tenant = await accounts.personal_tenant(user.id)
    async with store.transaction() as tx:
        await tx.support.add_project("prj_1", tenant, "api", "us-east", 0.0)
        await tx.env.put("prj_1", "DATABASE_URL", "postgres://secret", 0.0)
    rotated = await store.rotate_secret_key()
    await store.close()
    reopened = await open_store(tmp_path, url=postgres_database_url)
    values = await reopened.reads.env.values("prj_1")
    await reopened.close()
    assert rotated == 1
    assert values == {"DATABASE_URL": "postgres://secret"}


async def test_a_database_that_goes_away_fails_calls_with_a_sentence_and_serving_resumes(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    store = await open_store(tmp_path, url=own_postgres.url)
    try:
        async with product_server(store, tmp_path) as env:
            user = await env.user()
            token = await env.token(user)
            await env.make_project(user)
            arguments = {"project": "api", "key": "KEPT", "value": "1"}
            await env.structured(token, "set_env_var", arguments)
            await anyio.to_thread.run_sync(own_postgres.stop)
            await anyio.lowlevel.checkpoint()
            listing = {"name": "list_env_vars", "arguments": {"project": "api"}}
            gone = await env.rpc(token, "tools/call", listing)
            await anyio.to_thread.run_sync(own_postgres.start)
            await anyio.lowlevel.checkpoint()
            back = await env.structured(token, "list_env_vars", {"project": "api"})
    finally:
        await store.close()
    assert (gone.status_code, gone.headers["retry-after"]) == (503, "1")
    assert gone.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32603, "message": UNREADABLE},
    }
    assert [item["key"] for item in back["items"]] == ["KEPT"]


async def test_a_write_while_the_database_is_gone_is_refused_and_changes_nothing(
    tmp_path: Path,
    own_postgres: OwnPostgres,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(postgres, "_told", [float("-inf")])
    store = await open_store(tmp_path, url=own_postgres.url)
    accounts = Accounts(store)
    user = await accounts.ensure_user("ada@example.com")
    await anyio.to_thread.run_sync(own_postgres.stop)
    with pytest.raises(StoreUnavailable) as refused:
        await accounts.mint(user, "late", ("mcp:read",), None)
    await anyio.to_thread.run_sync(own_postgres.start)
    tokens = await accounts.list_tokens(user)
    await store.close()
    assert refused.value.message == (
        "The server's database cannot be reached, so nothing was changed; try again shortly."
    )
    assert tokens == []
    told = [r for r in caplog.records if r.name == "sp00ky_mcp.store"]
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in told] == [
        ("WARNING", "the database failed a request")
    ]


async def test_an_email_with_a_capital_beyond_ascii_is_found_as_stored_in_a_utf8_database(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    """Emails compare ASCII case aside, as the email columns' "C" collation folds them; a
    database whose default collation folds more ("É" to "é") must not fold the address looked
    for differently from the stored one."""
    psql(
        own_postgres.url,
        "CREATE DATABASE utf8 TEMPLATE template0 ENCODING 'UTF8' "
        "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'",
    )
    store = await open_store(tmp_path, url=with_database(own_postgres.url, "utf8"))
    try:
        accounts = Accounts(store)
        made = await accounts.ensure_user("Émile@example.com")
        found = await store.reads.accounts.user_by_email("Émile@EXAMPLE.com")
    finally:
        await store.close()
    assert found is not None and found.id == made.id


def test_token_tokens_and_revoke_work_on_postgresql(
    tmp_path: Path, postgres_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--data-dir", str(tmp_path), "--database-url", postgres_database_url]
    user = ["--user", "ada@example.com", "--json"]
    minted = main(["mcp", "token", *where, *user, "--name", "ci", "--yes"])
    token = orjson.loads(capsys.readouterr().out)
    listed = main(["mcp", "tokens", *where, *user])
    rows = orjson.loads(capsys.readouterr().out)
    revoked = main(["mcp", "revoke", "ci", *where, *user])
    said = orjson.loads(capsys.readouterr().out)
    assert (minted, listed, revoked) == (0, 0, 0)
    assert [(row["id"], row["name"], row["status"]) for row in rows] == [
        (token["id"], "ci", "active")
    ]
    assert said == {"id": token["id"], "name": "ci", "status": "revoked"}


# --- a commit whose reply never comes back ---------------------------------------------------


def lose_commit_replies(monkeypatch: pytest.MonkeyPatch, when: Callable[[], bool]) -> None:
    """Each COMMIT that `when` picks reaches PostgreSQL and is applied, then its reply is lost:
    the connection breaks before the client reads it."""
    real = asyncpg.transaction.Transaction.commit

    async def commit(self: Any) -> None:
        await real(self)
        if when():
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )

    monkeypatch.setattr(asyncpg.transaction.Transaction, "commit", commit)


async def test_a_closed_store_is_not_ready_and_opens_no_connection_to_say_so(
    tmp_path: Path, postgres_database_url: str
) -> None:
    store = cast(PostgresStore, await open_store(tmp_path, url=postgres_database_url))
    await store.ready()
    await store.close()
    with pytest.raises(StoreUnavailable) as closed:
        await store.ready()
    assert closed.value.message == "The server's data store is closed, so nothing was changed."
    assert store._probe is None


async def test_a_commit_whose_reply_is_lost_is_in_doubt_and_its_change_was_made(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = Accounts(postgres_store)
    user = await accounts.ensure_user("ada@example.com")
    tenant = await accounts.personal_tenant(user.id)
    lose_commit_replies(monkeypatch, lambda: True)
    with pytest.raises(StoreInDoubt) as doubt:
        async with postgres_store.transaction() as tx:
            await tx.support.add_project("prj_1", tenant, "api", "us-east", 0.0)
    monkeypatch.undo()
    assert doubt.value.message == (
        "The server's database stopped answering while saving this change, so it may or may "
        "not have been made; check before trying again."
    )
    assert await postgres_store.reads.support.count("projects") == 1


async def test_a_deploy_whose_commit_reply_is_lost_says_so_and_a_retry_with_its_key_runs_nothing(
    tmp_path: Path, postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with product_server(postgres_store, tmp_path) as env:
        token, _ = await env.token_and_project()
        added: list[bool] = []
        real_add = DeploymentsRepo.add

        async def add(self: DeploymentsRepo, deployment: Any) -> None:
            await real_add(self, deployment)
            added.append(True)

        monkeypatch.setattr(DeploymentsRepo, "add", add)
        lose_commit_replies(monkeypatch, lambda: bool(added) and added.pop())
        args = {"project": "api", "idempotency_key": "deploy-1"}
        doubt = await env.rpc(token, "tools/call", {"name": "deploy", "arguments": args})
        retried = await env.error_text(token, "deploy", args)
        deployments = await env.count("deployments")
    assert (doubt.status_code, doubt.json()["error"]) == (
        200,
        {"code": -32603, "message": IN_DOUBT},
    )
    assert retried == CHANGED_UNRECORDED
    assert deployments == 1


async def test_a_result_whose_record_cannot_be_kept_still_reaches_the_client(
    tmp_path: Path, postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with product_server(postgres_store, tmp_path) as env:
        token, _ = await env.token_and_project()
        results_not_kept(monkeypatch)
        args = {"project": "api", "idempotency_key": "deploy-2"}
        done = await env.ok(token, "deploy", args)
        retried = await env.error_text(token, "deploy", args)
        deployments = await env.count("deployments")
    assert done["status"] == "live"
    assert retried == CHANGED_UNRECORDED
    assert deployments == 1


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (["SELECT pg_terminate_backend(pg_backend_pid())"], UNREACHABLE),
        (["SET LOCAL statement_timeout = 1", "SELECT pg_sleep(5)"], STALLED),
    ],
    ids=["connection killed", "statement timeout"],
)
async def test_a_transaction_cut_short_says_why_in_a_sentence_and_changes_nothing(
    postgres_store: Store, statements: list[str], message: str
) -> None:
    accounts = Accounts(postgres_store)
    user = await accounts.ensure_user("ada@example.com")
    tenant = await accounts.personal_tenant(user.id)
    with pytest.raises(StoreUnavailable) as refused:
        async with postgres_store.transaction() as tx:
            await tx.support.add_project("prj_1", tenant, "api", "us-east", 0.0)
            for statement in statements:
                await tx.db.run(statement)
    assert refused.value.message == message
    assert await postgres_store.reads.support.count("projects") == 0


async def test_a_transaction_that_outlasts_its_time_is_refused_whole_and_changes_nothing(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each statement well within the statement timeout, all of them together past the
    transaction's time: a database that answers ever more slowly holds a call a bounded time."""
    monkeypatch.setattr(postgres, "TRANSACTION_SECONDS", 0.3)
    accounts = Accounts(postgres_store)
    user = await accounts.ensure_user("ada@example.com")
    tenant = await accounts.personal_tenant(user.id)
    sent = 0
    with pytest.raises(StoreUnavailable) as refused:
        async with postgres_store.transaction() as tx:
            await tx.support.add_project("prj_1", tenant, "api", "us-east", 0.0)
            for _ in range(20):
                await tx.db.run("SELECT pg_sleep(0.05)")
                sent += 1
    assert refused.value.message == STALLED
    assert sent < 20
    assert await postgres_store.reads.support.count("projects") == 0


async def test_a_rollback_that_gets_no_reply_closes_its_connection_in_bounded_time(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(postgres_store, PostgresStore)
    monkeypatch.setattr(postgres, "RELEASE_TIMEOUT", 0.05)

    async def rollback(self: Any) -> None:
        # A database that stopped answering: no reply for far longer than RELEASE_TIMEOUT
        # (bounded, so that a rollback waited for fails the test rather than hanging it).
        with anyio.move_on_after(5):
            await anyio.Event().wait()

    monkeypatch.setattr(asyncpg.transaction.Transaction, "rollback", rollback)
    with pytest.raises(ZeroDivisionError):
        async with postgres_store.transaction() as tx:
            # The driver's connection behind the pool's proxy, which is let go at the end.
            connection = tx.db.connection._con  # type: ignore[attr-defined]
            _ = 1 / 0
    assert connection.is_closed()
    assert await postgres_store.reads.support.count("projects") == 0


async def test_a_read_waits_a_bounded_time_for_a_connection_when_the_pool_is_taken(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(postgres_store, PostgresStore)
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 0.05)
    pool = postgres_store.pool
    taken = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        with pytest.raises(StoreUnavailable) as refused:
            await postgres_store.reads.support.count("projects")
    finally:
        for connection in taken:
            await pool.release(connection)
    assert refused.value.message == UNREADABLE
    assert await postgres_store.reads.support.count("projects") == 0
