"""The PostgreSQL backend itself, against a real server: migrations once, a newer schema
refused; two processes' stores on one database, each seeing the other's writes at the next
turn; writes that clash; and a database that goes away while serving and comes back."""

from __future__ import annotations

from pathlib import Path

import anyio
import orjson
import pytest

from sp00ky_mcp.cli.commands import main
from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.store import Clash, StoreError, StoreUnavailable, open_store
from sp00ky_mcp.product.store.postgres import UNREADABLE, public_url
from sp00ky_mcp.product.store.postgres_schema import LATEST, MIGRATIONS
from tests.pg_support import OwnPostgres, psql
from tests.product_support import product_server

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
    assert gone.status_code == 503
    assert gone.headers["retry-after"] == "1"
    assert UNREADABLE in gone.text
    assert [item["key"] for item in back["items"]] == ["KEPT"]


async def test_a_write_while_the_database_is_gone_is_refused_and_changes_nothing(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
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
