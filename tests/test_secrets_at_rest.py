"""Secret values at rest: env var values and vault key material are encrypted in the store
under a key file of their own; the key file, the data directory and the database files are
private; rotation keeps every value; a store an earlier version wrote in clear is encrypted at
its first start with this one."""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from sp00ky_mcp.cli.commands import main, run_server
from sp00ky_mcp.cli.common import CliError
from sp00ky_mcp.engine.config import ServerConfig
from sp00ky_mcp.engine.server import McpServer
from sp00ky_mcp.product.accounts import Accounts
from sp00ky_mcp.product.cloud import env as env_rules
from sp00ky_mcp.product.cloud.base import Cloud
from sp00ky_mcp.product.secretbox import (
    ENV_VALUE,
    KEY_FILE_NAME,
    UNREADABLE,
    VAULT_MATERIAL,
    Key,
    SecretBox,
    SecretUnreadable,
    create_keys,
    read_keys,
    replace_keys,
)
from sp00ky_mcp.product.store import Store, StoreError
from sp00ky_mcp.product.store.repos.projects import Project
from sp00ky_mcp.product.store.sqlite import DB_NAME, SqliteStore
from sp00ky_mcp.product.store.sqlite_schema import MIGRATIONS

from .product_support import REDACTED, ProductEnv

pytestmark = pytest.mark.anyio
REVEAL = "mcp:full,secrets:reveal"
PLAINTEXTS = {
    "DATABASE_URL": "postgres://ada:hunter2-correct-horse@db.internal:5432/prod",
    "STRIPE_KEY": "sk_live_51Hq2Zx9plaintextMustNeverReachTheDisk",
    "LONG": "long-secret-" + "x" * 9000,
    "UNICODE": "pässwörd-ünïcödé-✓-秘密",
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def raw_values(store: Store, project_id: str) -> list[bytes | str]:
    """The project's env values (by key) and vault material as the store holds them."""
    sealed = await store.reads.env.sealed(project_id)
    material = await store.reads.vault.sealed(project_id)
    values = [sealed[key] for key in sorted(sealed)]
    return values if material is None else [*values, material]


async def rotate_key(directory: Path) -> int:
    """`spky mcp rotate-key` on the store in `directory`, as another process runs it."""
    status: int = await anyio.to_thread.run_sync(
        main, ["mcp", "rotate-key", "--data-dir", str(directory)]
    )
    return status


def file_bytes(directory: Path) -> bytes:
    """Every byte of the database and of its write-ahead log and shared-memory files."""
    parts = [directory / DB_NAME, directory / f"{DB_NAME}-wal", directory / f"{DB_NAME}-shm"]
    return b"".join(part.read_bytes() for part in parts if part.exists())


async def set_all(env: ProductEnv, token: str, values: dict[str, str]) -> None:
    for key, value in values.items():
        arguments = {"project": "api", "key": key, "value": value}
        await env.ok(token, "set_env_var", arguments)


async def listing(env: ProductEnv, token: str) -> dict[str, str]:
    listed = await env.ok(token, "list_env_vars", {"project": "api"})
    return {item["key"]: item["value"] for item in listed["items"]}


# --- round trip and tampering ----------------------------------------------------------------


async def test_a_secret_value_is_stored_encrypted_and_listed_as_it_was_given(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user(), REVEAL)
    project_id = await env.make_project(await env.user())
    await set_all(env, token, PLAINTEXTS)
    assert await listing(env, token) == PLAINTEXTS
    masked = await env.token(await env.user(), "mcp:full", name="masked")
    assert set((await listing(env, masked)).values()) == {REDACTED}
    stored = [
        value for value in await raw_values(env.store, project_id) if isinstance(value, bytes)
    ]
    assert len(stored) == len(PLAINTEXTS)
    assert [p for p in PLAINTEXTS.values() for value in stored if p.encode() in value] == []


async def test_one_value_stored_twice_is_encrypted_differently_each_time(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user(), REVEAL)
    project_id = await env.make_project(await env.user())
    await set_all(env, token, {"A": "same-secret-value", "B": "same-secret-value"})
    first, second = await raw_values(env.store, project_id)
    assert first != second


async def test_a_tampered_value_is_a_generic_tool_error_and_is_logged(
    env: ProductEnv, caplog: pytest.LogCaptureFixture
) -> None:
    token = await env.token(await env.user(), REVEAL)
    project_id = await env.make_project(await env.user())
    await set_all(env, token, {"API_KEY": "sk-live-tampered-value"})
    async with env.store.transaction() as tx:
        stored = (await tx.env.sealed(project_id))["API_KEY"]
        assert isinstance(stored, bytes)
        sealed = bytearray(stored)
        sealed[-1] ^= 0x01
        await tx.env.replace_sealed(project_id, "API_KEY", bytes(sealed))
    with caplog.at_level(logging.ERROR, logger="sp00ky_mcp.secrets"):
        result = await env.call(token, "list_env_vars", {"project": "api"})
    assert (result["isError"], result["content"]) == (True, [{"type": "text", "text": UNREADABLE}])
    assert [r.getMessage() for r in caplog.records] == [
        f"the secret in env_vars.value of row ['{project_id}', 'API_KEY'] does not decrypt "
        "(InvalidTag): it was changed, moved or sealed under a key the key file does not hold"
    ]


async def test_a_value_copied_to_another_row_does_not_decrypt(env: ProductEnv) -> None:
    token = await env.token(await env.user(), REVEAL)
    project_id = await env.make_project(await env.user())
    await set_all(env, token, {"A": "value-of-a-123", "B": "value-of-b-456"})
    async with env.store.transaction() as tx:
        of_a = (await tx.env.sealed(project_id))["A"]
        assert isinstance(of_a, bytes)
        await tx.env.replace_sealed(project_id, "B", of_a)
    assert await env.error_text(token, "list_env_vars", {"project": "api"}) == UNREADABLE
    copied = (await env.store.reads.env.sealed(project_id))["B"]
    with pytest.raises(SecretUnreadable):
        env.store.secrets.open(ENV_VALUE, (project_id, "B"), copied)
    assert env.store.secrets.open(ENV_VALUE, (project_id, "A"), copied) == "value-of-a-123"


async def test_a_tampered_value_never_changes_a_row_on_a_write_that_needs_it(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user(), REVEAL)
    project_id = await env.make_project(await env.user())
    await set_all(env, token, {"A": "value-of-a-123"})
    async with env.store.transaction() as tx:
        await tx.env.replace_sealed(project_id, "A", b"\x00")
    before = await env.snapshot()
    arguments = {"project": "api", "values": {"A": "new-value-1", "C": "new-value-2"}}
    assert await env.error_text(token, "bulk_load_env_vars", arguments) == UNREADABLE
    assert await env.snapshot() == before


async def test_masking_decrypts_once_per_change_of_the_store_not_per_call(
    env: ProductEnv,
) -> None:
    token = await env.token(await env.user(), "mcp:full")
    await env.make_project(await env.user())
    await set_all(env, token, {"A": "value-of-a-123"})
    tenant_id = await env.personal(await env.user())
    first = await env.cloud.secret_values(tenant_id)
    assert first == ("value-of-a-123",)
    assert await env.cloud.secret_values(tenant_id) is first
    await set_all(env, token, {"B": "value-of-b-456"})
    assert set(await env.cloud.secret_values(tenant_id)) == {"value-of-a-123", "value-of-b-456"}


# --- a copy of the database reveals no secret -------------------------------------------------


async def test_the_database_files_hold_no_secret_value(
    sqlite_product: ProductEnv, tmp_path: Path
) -> None:
    env = sqlite_product
    token = await env.token(await env.user(), REVEAL)
    await env.make_project(await env.user())
    await set_all(env, token, PLAINTEXTS)
    await env.ok(token, "set_env_var", {"project": "api", "key": "STRIPE_KEY", "value": "rotated"})
    dotenv = "BULK_ONE=bulk-secret-one-98765\nBULK_TWO='bulk-secret-two-43210'\n"
    await env.ok(token, "bulk_load_env_vars", {"project": "api", "dotenv": dotenv})
    await env.ok(token, "delete_env_var", {"project": "api", "key": "BULK_ONE"})
    material = (await env.ok(token, "init_vault", {"project": "api"}))["key_material"]
    secrets = [*PLAINTEXTS.values(), "bulk-secret-one-98765", "bulk-secret-two-43210", material]
    env.server.shutdown()
    contents = file_bytes(tmp_path)
    assert len(contents) > 0
    assert [s for s in secrets if s.encode() in contents or s.encode("utf-16-le") in contents] == []


# --- the key file and the data directory ------------------------------------------------------


async def test_a_new_store_makes_its_key_file_and_files_private(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    store = await SqliteStore.open(directory)
    async with store.transaction():
        pass
    assert mode(directory) == 0o700
    assert mode(directory / KEY_FILE_NAME) == 0o600
    assert mode(directory / DB_NAME) == 0o600
    assert mode(directory / f"{DB_NAME}-wal") == 0o600
    assert mode(directory / f"{DB_NAME}-shm") == 0o600
    assert len(read_keys(directory / KEY_FILE_NAME)) == 1
    await store.close()


def test_an_existing_data_directory_and_database_with_wider_modes_are_tightened(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "data"
    SqliteStore.open_now(directory).close_now()
    directory.chmod(0o755)
    (directory / DB_NAME).chmod(0o644)
    SqliteStore.open_now(directory).close_now()
    assert (mode(directory), mode(directory / DB_NAME)) == (0o700, 0o600)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another user needs root")
def test_a_wider_data_directory_of_another_user_is_left_as_it_is_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "data"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    os.chown(directory, 65534, -1)
    with caplog.at_level(logging.WARNING, logger="sp00ky_mcp.store"):
        SqliteStore.open_now(directory).close_now()
    assert mode(directory) == 0o755
    assert [r.getMessage() for r in caplog.records] == [
        f"The data directory {directory} can be read by other users (mode 0755) and belongs "
        "to another user; have its owner run chmod 700 on it."
    ]


def test_a_key_file_other_users_can_read_is_refused_at_start(tmp_path: Path) -> None:
    SqliteStore.open_now(tmp_path).close_now()
    key_file = tmp_path / KEY_FILE_NAME
    key_file.chmod(0o644)
    with pytest.raises(StoreError) as refused:
        SqliteStore.open_now(tmp_path)
    assert str(refused.value) == (
        f"The secret key file {key_file} can be read by other users (mode 0644); "
        f"run `chmod 600 {key_file}`."
    )


def test_a_malformed_key_file_is_refused_at_start(tmp_path: Path) -> None:
    SqliteStore.open_now(tmp_path).close_now()
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_text("# keys\nnot a key\n")
    with pytest.raises(StoreError) as refused:
        SqliteStore.open_now(tmp_path)
    assert str(refused.value) == (
        f"Line 2 of the secret key file {key_file} is not '<16 hex digits> <base64 of 32 "
        "bytes>'; restore the file from its backup."
    )


def test_a_key_file_that_is_a_named_pipe_is_refused_at_once(tmp_path: Path) -> None:
    pipe = tmp_path / "keys"
    os.mkfifo(pipe)
    with pytest.raises(StoreError) as refused:
        SqliteStore.open_now(tmp_path / "data", pipe)
    assert str(refused.value) == f"The secret key file {pipe} is not a regular file; pass a file."


async def test_a_missing_key_file_is_refused_while_the_store_holds_secrets(
    sqlite_product: ProductEnv, tmp_path: Path
) -> None:
    env = sqlite_product
    token = await env.token(await env.user(), REVEAL)
    await env.make_project(await env.user())
    await set_all(env, token, {"A": "value-of-a-123"})
    key_file = tmp_path / KEY_FILE_NAME
    key_file.unlink()
    with pytest.raises(StoreError) as refused:
        await SqliteStore.open(tmp_path)
    assert str(refused.value) == (
        f"The secret key file {key_file} is missing, but the store holds secrets encrypted "
        "with it; restore it from its backup, or pass the --secret-key-file the store was "
        "written with."
    )
    assert not key_file.exists()


async def test_another_key_file_than_the_stores_is_refused_at_start(
    sqlite_product: ProductEnv, tmp_path: Path
) -> None:
    env = sqlite_product
    token = await env.token(await env.user(), REVEAL)
    await env.make_project(await env.user())
    await set_all(env, token, {"A": "value-of-a-123"})
    key_id = env.store.secrets.current.id.hex()
    other = tmp_path / "other.key"
    create_keys(other, [Key.new()])
    with pytest.raises(StoreError) as refused:
        await SqliteStore.open(tmp_path, other)
    assert str(refused.value) == (
        f"The secret key file {other} lacks the key {key_id} that encrypts secrets in the "
        "store; pass the --secret-key-file the store was written with."
    )


def test_a_key_file_given_elsewhere_keeps_the_key_out_of_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, keys = tmp_path / "data", tmp_path / "keys"
    keys.mkdir(mode=0o700)
    SqliteStore.open_now(directory, keys / "given.key").close_now()
    monkeypatch.setenv("SP00KY_MCP_SECRET_KEY_FILE", str(keys / "from-env.key"))
    SqliteStore.open_now(tmp_path / "elsewhere").close_now()
    assert sorted(p.name for p in keys.iterdir()) == ["from-env.key", "given.key"]
    assert not (directory / KEY_FILE_NAME).exists()
    assert not (tmp_path / "elsewhere" / KEY_FILE_NAME).exists()


# --- rotation ---------------------------------------------------------------------------------


async def test_rotate_key_keeps_every_value_and_the_old_key_no_longer_decrypts(
    sqlite_product: ProductEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = sqlite_product
    token = await env.token(await env.user(), REVEAL)
    project_id = await env.make_project(await env.user())
    await set_all(env, token, PLAINTEXTS)
    material = (await env.ok(token, "init_vault", {"project": "api"}))["key_material"]
    old = SecretBox(read_keys(tmp_path / KEY_FILE_NAME))
    assert await rotate_key(tmp_path) == 0
    assert capsys.readouterr().out == (
        f"Rotated the secret key in {tmp_path / KEY_FILE_NAME}: 5 stored secret values are now "
        "encrypted under the new key, and the old key is gone. Back up the key file now.\n"
    )
    new = read_keys(tmp_path / KEY_FILE_NAME)
    assert [key.id for key in new] != [key.id for key in old.keys]
    assert len(new) == 1
    assert mode(tmp_path / KEY_FILE_NAME) == 0o600
    assert await listing(env, token) == PLAINTEXTS
    assert await env.store.reads.vault.material(project_id) == material
    sealed = await env.store.reads.vault.sealed(project_id)
    with pytest.raises(SecretUnreadable):
        old.open(VAULT_MATERIAL, (project_id,), sealed)


async def test_a_server_running_during_a_rotation_seals_new_values_under_the_new_key(
    sqlite_product: ProductEnv, tmp_path: Path
) -> None:
    env = sqlite_product
    token = await env.token(await env.user(), REVEAL)
    project_id = await env.make_project(await env.user())
    await set_all(env, token, {"A": "value-of-a-123"})
    assert await rotate_key(tmp_path) == 0
    await set_all(env, token, {"B": "value-of-b-456"})
    # A process that reads only the key file now on disk opens both.
    reopened = await SqliteStore.open(tmp_path)
    assert await reopened.reads.env.values(project_id) == {
        "A": "value-of-a-123",
        "B": "value-of-b-456",
    }
    await reopened.close()


async def test_a_rotation_stopped_after_writing_the_new_key_loses_nothing(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path)
    project = await _seed_project(store)
    await env_rules.set_variable(Cloud(store, Accounts(store)), project, "A", "value-of-a-123")
    old = store.secrets.keys
    await store.close()
    # What a rotation leaves on disk if it stops after its first step: the new key in front.
    replace_keys(tmp_path / KEY_FILE_NAME, [Key.new(), *old])
    reopened = await SqliteStore.open(tmp_path)
    assert await reopened.reads.env.values(project.id) == {"A": "value-of-a-123"}
    assert await reopened.rotate_secret_key() == 1
    assert await reopened.reads.env.values(project.id) == {"A": "value-of-a-123"}
    assert len(read_keys(tmp_path / KEY_FILE_NAME)) == 1
    await reopened.close()


def test_rotate_key_without_a_store_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["mcp", "rotate-key", "--data-dir", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err == (
        f"spky: There is no token store in {tmp_path / 'none'}; pass the --data-dir that "
        "`spky mcp token` and `spky mcp serve` use.\n"
    )
    assert not (tmp_path / "none").exists()


# --- a store written in clear by an earlier version -------------------------------------------


def _earlier_store(directory: Path) -> None:
    """The store an earlier version left: every schema step before secrets were sealed, and
    env values and vault material in clear (one of them deleted, its bytes left behind)."""
    directory.mkdir(mode=0o700)
    with closing(sqlite3.connect(directory / DB_NAME, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        # As SQLite builds without SQLITE_SECURE_DELETE leave them: deleted bytes stay.
        db.execute("PRAGMA secure_delete = OFF")
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        for version, step in MIGRATIONS:
            if isinstance(step, str) and version < 70:
                db.executescript(step)
                db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        db.execute("INSERT INTO tenants VALUES ('tnt_1', 'ada', 'personal', 'hobby', 0)")
        db.execute("INSERT INTO projects VALUES ('prj_api', 'tnt_1', 'api', 'us-east', 0)")
        for key, value in PLAINTEXTS.items():
            db.execute("INSERT INTO env_vars VALUES ('prj_api', ?, ?, 0)", (key, value))
        gone = "deleted-secret-777-" + "y" * 6000  # long enough for pages of its own
        db.execute("INSERT INTO env_vars VALUES ('prj_api', 'GONE', ?, 0)", (gone,))
        db.execute("DELETE FROM env_vars WHERE key = 'GONE'")
        db.execute("INSERT INTO vaults VALUES ('prj_api', 'VGhlIGVhcmxpZXIgbWF0ZXJpYWw=', 0, 0)")


async def test_a_store_written_in_clear_is_encrypted_at_its_first_start(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    _earlier_store(directory)
    store = await SqliteStore.open(directory)
    assert await store.reads.env.values("prj_api") == PLAINTEXTS
    assert await store.reads.vault.material("prj_api") == "VGhlIGVhcmxpZXIgbWF0ZXJpYWw="
    assert all(isinstance(value, bytes) for value in await raw_values(store, "prj_api"))
    assert {70, 71} <= set(store.applied_at_open)
    await store.close()
    secrets = [*PLAINTEXTS.values(), "deleted-secret-777", "VGhlIGVhcmxpZXIgbWF0ZXJpYWw="]
    assert [s for s in secrets if s.encode() in file_bytes(directory)] == []


async def test_a_store_encrypted_once_is_not_encrypted_again(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    _earlier_store(directory)
    await (await SqliteStore.open(directory)).close()
    store = await SqliteStore.open(directory)
    before = await raw_values(store, "prj_api")
    await store.close()
    again = await SqliteStore.open(directory)
    assert await raw_values(again, "prj_api") == before
    assert await again.reads.env.values("prj_api") == PLAINTEXTS
    await again.close()


# --- helpers for tests below the tools --------------------------------------------------------


async def _seed_project(store: Store) -> Project:
    """Ada's project 'api', straight in the store."""
    accounts = Accounts(store)
    tenant_id = await accounts.personal_tenant((await accounts.ensure_user("ada@example.com")).id)
    async with store.transaction() as tx:
        await tx.support.add_project("prj_api", tenant_id, "api", "us-east", 0.0)
    project = await store.reads.projects.by_ref(tenant_id, "prj_api")
    assert project is not None
    return project


def test_the_key_file_is_never_overwritten_by_a_new_start(tmp_path: Path) -> None:
    SqliteStore.open_now(tmp_path).close_now()
    before = (tmp_path / KEY_FILE_NAME).read_bytes()
    SqliteStore.open_now(tmp_path).close_now()
    assert (tmp_path / KEY_FILE_NAME).read_bytes() == before
    assert os.stat(tmp_path / KEY_FILE_NAME).st_nlink == 1


# --- the command line -------------------------------------------------------------------------


def test_the_cli_keeps_the_key_where_secret_key_file_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, key_file = tmp_path / "data", tmp_path / "prod.key"
    minted = ["mcp", "token", "--data-dir", str(data), "--secret-key-file", str(key_file)]
    assert main([*minted, "--yes", "--json"]) == 0
    assert mode(key_file) == 0o600
    assert not (data / KEY_FILE_NAME).exists()
    key_file.chmod(0o640)
    capsys.readouterr()
    listed = ["mcp", "tokens", "--data-dir", str(data), "--secret-key-file", str(key_file)]
    assert main(listed) == 1
    assert capsys.readouterr().err == (
        f"spky: The secret key file {key_file} can be read by other users (mode 0640); "
        f"run `chmod 600 {key_file}`.\n"
    )


def readable_by_others(path: Path) -> str:
    create_keys(path, [Key.new()])
    path.chmod(0o604)
    return f"can be read by other users (mode 0604); run `chmod 600 {path}`."


def a_directory(path: Path) -> str:
    # It opens like a file and fails only when read; it was once reported as a port that
    # could not be bound.
    path.mkdir()
    return "is not a regular file; pass a file."


@pytest.mark.parametrize("make", [readable_by_others, a_directory])
async def test_serve_refuses_a_key_file_it_cannot_use_before_it_listens(
    tmp_path: Path, make: Callable[[Path], str]
) -> None:
    key_file = tmp_path / "prod.key"
    why = make(key_file)
    config = ServerConfig(port=0, data_dir=str(tmp_path / "data"))
    args = argparse.Namespace(
        user=None, secret_key_file=str(key_file), database_url=None, redis_url=None, worker=False
    )
    started: list[McpServer] = []
    with pytest.raises(CliError) as refused:
        await run_server(config, args, started)
    assert str(refused.value) == f"The secret key file {key_file} {why}"
    assert started == []
