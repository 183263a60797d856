"""The PostgreSQL backend, for deployments of several processes on one database: selected by
`--database-url postgresql://…` and installed with the `[postgres]` extra (asyncpg; see
docs/performance.md for why).

- A bounded pool of connections per process; statements time out, and so does a session left
  idle inside a transaction.
- Write transactions take one transaction-scoped advisory lock, so that writes are serialised
  across every process exactly as SQLite's BEGIN IMMEDIATE serialises them in one: the control
  plane's check-then-write rules (a unique name, a count under a cap, a claimed idempotency
  key) hold across processes as they hold in one.  Reads never wait for it.
- Each write transaction raises a counter (`store_version`) in the same commit; read caches
  keep their values while it stays the same, read at most once per turn of the event loop, so
  a change made by another process is seen at the next request.
- A database that cannot be reached fails the calls that need it with `StoreUnavailable`
  (nothing changed); the pool opens new connections once it is back.  Reads, which change
  nothing, are tried once more on a connection that broke under them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from ..credentials import shown_url
from ..secretbox import (
    KEY_ID_BYTES,
    SEALED,
    KeyFileError,
    SecretBox,
    key_file_for,
    load_box,
)
from . import postgres_schema
from .port import (
    CLOSED,
    Busy,
    Clash,
    Row,
    Store,
    StoreError,
    StoreInDoubt,
    StoreUnavailable,
    Timings,
    TurnMemo,
    Unstorable,
    Vanished,
    Version,
    default_data_dir,
)
from .repos import Repos

try:
    import asyncpg
except ImportError:  # pragma: no cover - the extra is missing
    asyncpg = None

log = logging.getLogger("sp00ky_mcp.store")
POOL_SIZE = 10
STATEMENT_TIMEOUT_MS = 15_000
IDLE_IN_TRANSACTION_MS = 60_000
CONNECT_TIMEOUT = 10.0
# How long a statement may wait for its reply (the client's side of statement_timeout, for a
# server that stopped answering at all), and how long a transaction may take from BEGIN to
# its last statement: without the second, a database that froze would hold a call for a
# statement's wait once per statement.
COMMAND_SECONDS = STATEMENT_TIMEOUT_MS / 1000 + 5
TRANSACTION_SECONDS = COMMAND_SECONDS
# The advisory locks of this store: one every write takes, one for migrating.
WRITE_LOCK = 0x5370_3030_6B79_0001
MIGRATE_LOCK = 0x5370_3030_6B79_0002
UNREACHABLE = "The server's database cannot be reached, so nothing was changed; try again shortly."
UNREADABLE = "The server's database could not be read; try again shortly."
IN_DOUBT = (
    "The server's database stopped answering while saving this change, so it may or may not "
    "have been made; check before trying again."
)
STALLED = "The server's database took too long to answer, so nothing was changed; try again."
STALLED_READ = "The server's database took too long to answer; try again shortly."
# How long giving a connection back to the pool may take (its reset): past it, the connection
# is closed instead, so a database that stopped answering holds no request for long.
RELEASE_TIMEOUT = 2.0
_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str, cache: dict[str, str] = {}) -> str:  # noqa: B006 - a cache on purpose
    """`sql` with its `?` placeholders numbered as PostgreSQL wants them ($1, $2, …)."""
    found = cache.get(sql)
    if found is None:
        count = iter(range(1, 10_000))
        found = cache[sql] = _PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)
    return found


def _connection_lost(exc: BaseException) -> bool:
    """Errors that say the database, or the way to it, is gone rather than the SQL wrong."""
    if isinstance(exc, OSError | asyncio.TimeoutError | ConnectionError):
        return True
    names = (
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "TooManyConnectionsError",
        "AdminShutdownError",
        "CrashShutdownError",
        "InterfaceError",
        "InternalClientError",
        "ConnectionRejectionError",
        "InvalidAuthorizationSpecificationError",
    )
    return type(exc).__name__ in names or isinstance(exc, _lost_types())


def _worth_retrying(exc: BaseException) -> bool:
    """A connection that broke under a read (the database restarted): another may serve it.
    One that timed out is not tried again: the next would wait as long."""
    return _connection_lost(exc) and not isinstance(exc, asyncio.TimeoutError | TimeoutError)


def commit_error(exc: BaseException) -> BaseException:
    """Why a COMMIT failed, as the port says it: an error the server sent means it did not
    commit; a connection that broke or timed out before its reply leaves the outcome unknown."""
    unanswered = (
        OSError,
        asyncio.TimeoutError,
        asyncpg.InterfaceError,
        asyncpg.ConnectionDoesNotExistError,  # asyncpg's own word for a connection gone
    )
    if not isinstance(exc, unanswered):
        return port_error(exc)
    _tell_operator(exc)
    return StoreInDoubt(IN_DOUBT)


# When the log last said the database failed a request: an outage is told once in each
# TOLD_EVERY seconds, not once a request.
_told = [float("-inf")]
TOLD_EVERY = 10.0


def _tell_operator(exc: BaseException) -> None:
    now = time.monotonic()
    if now - _told[0] >= TOLD_EVERY:
        _told[0] = now
        log.warning("the database failed a request: %s", _said(exc))


def _lost_types() -> tuple[type[BaseException], ...]:
    return (asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


def port_error(exc: BaseException, reading: bool = False) -> BaseException:
    """A driver error as the port's (one place): a clash, a vanished row, a conflict worth
    retrying, an unreachable database, or (an error of the SQL, a bug) a StoreError whose text
    the client never sees.  Anything else is not the driver's and is left as it is."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Clash(str(exc))
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return Vanished(str(exc))
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return Busy(str(exc))
    if isinstance(exc, asyncpg.QueryCanceledError):  # statement_timeout: rolled back
        _tell_operator(exc)
        return StoreUnavailable(STALLED_READ if reading else STALLED)
    if _connection_lost(exc):
        _tell_operator(exc)
        return StoreUnavailable(UNREADABLE if reading else UNREACHABLE)
    if isinstance(exc, asyncpg.PostgresError):
        return StoreError(f"PostgreSQL: {exc}")
    return exc


def _holds_nul(params: Sequence[Any]) -> bool:
    """PostgreSQL text cannot hold NUL: nothing stored holds one, so a lookup by such a value
    finds nothing, and a write of one is refused."""
    return any(isinstance(p, str) and "\x00" in p for p in params)


class PostgresDb:
    """The `Db` of one connection (a transaction's)."""

    dialect = "postgres"

    def __init__(self, connection: Any, timings: Timings, deadline: float | None = None) -> None:
        self.connection = connection
        self.timed = timings.timed
        self.deadline = deadline  # time.monotonic() past which no statement is sent
        self.changed = 0

    async def one(self, sql: str, *params: Any) -> Row | None:
        if _holds_nul(params):
            return None
        row: Row | None = await self.send("fetchrow", numbered(sql), *params)
        return row

    async def all(self, sql: str, *params: Any) -> list[Row]:
        if _holds_nul(params):
            return []
        rows: list[Row] = await self.send("fetch", numbered(sql), *params)
        return rows

    async def run(self, sql: str, *params: Any) -> int:
        if _holds_nul(params):
            raise Unstorable()
        count = _rowcount(await self.send("execute", numbered(sql), *params))
        self.changed += count
        return count

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if any(_holds_nul(row) for row in rows):
            raise Unstorable()
        if rows:
            await self.send("executemany", numbered(sql), rows)
            self.changed += len(rows)  # asyncpg does not say; each row is a write

    async def send(self, method: str, *args: Any) -> Any:
        """A statement, waited for no longer than the transaction has left; one that would
        outlast it is refused (the transaction is then rolled back)."""
        wait = COMMAND_SECONDS
        if self.deadline is not None:
            wait = min(wait, self.deadline - time.monotonic())
        if wait <= 0:
            raise StoreUnavailable(STALLED)
        try:
            return await self.timed(getattr(self.connection, method)(*args, timeout=wait))
        except TimeoutError:
            _tell_operator(TimeoutError("no reply in time"))
            raise StoreUnavailable(STALLED) from None


class PooledDb:
    """The `Db` of reads outside a transaction: each statement on a connection of the pool,
    tried once more if the connection broke under it (a read changes nothing)."""

    dialect = "postgres"

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.changed = 0

    async def _fetch(self, method: str, sql: str, *params: Any) -> Any:
        if _holds_nul(params):
            if method == "execute":
                raise Unstorable()
            return None if method == "fetchrow" else []
        for attempt in (1, 2):
            try:
                async with self.store.connection(reading=True) as connection:
                    work = getattr(connection, method)(numbered(sql), *params)
                    return await self.store.timings.timed(work)
            except Exception as exc:
                if attempt == 2 or not _worth_retrying(exc):
                    raise port_error(exc, reading=True) from None
        raise AssertionError("unreachable")

    async def one(self, sql: str, *params: Any) -> Row | None:
        row: Row | None = await self._fetch("fetchrow", sql, *params)
        return row

    async def all(self, sql: str, *params: Any) -> list[Row]:
        rows: list[Row] = await self._fetch("fetch", sql, *params)
        return rows

    async def run(self, sql: str, *params: Any) -> int:
        count = _rowcount(await self._fetch("execute", sql, *params))
        self.changed += count
        return count

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._fetch("executemany", sql, rows)
        self.changed += len(rows)


def _rowcount(status: str) -> int:
    """The rows a statement changed, from its status ("UPDATE 3", "INSERT 0 1")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def public_url(url: str) -> str:
    """`url` without its password, to be shown to people."""
    return shown_url(url)


class PostgresStore(Store):
    def __init__(self, url: str, pool: Any, secrets: SecretBox) -> None:
        self.url = url
        self.describe = public_url(url)
        self.pool = pool
        self.secrets = secrets
        self.timings = Timings()
        self.writes = 0
        self.applied_at_open: list[int] = []
        self._seen = TurnMemo()
        self._reads = Repos(PooledDb(self), secrets)
        self._probe: Any = None
        self._probing = anyio.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        data_dir: str | Path | None = None,
        key_file: str | Path | None = None,
        pool_size: int = POOL_SIZE,
    ) -> PostgresStore:
        """A pool on the database at `url`, migrated, with the secret key file (`key_file`, or
        secret.key in `data_dir`) that its sealed values need."""
        if asyncpg is None:
            raise StoreError(
                "PostgreSQL needs the asyncpg driver: pip install 'sp00ky-mcp[postgres]'."
            )
        pool = await _pool(url, pool_size)
        try:
            box = await _secrets(pool, data_dir, key_file)
            store = cls(url, pool, box)
            store.applied_at_open = await store.migrate()
            return store
        except BaseException:
            await pool.close()
            raise

    @property
    def reads(self) -> Repos:
        if self._reads.box is not self.secrets:
            self._reads = Repos(PooledDb(self), self.secrets)
        return self._reads

    # --- transactions ----------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repos]:
        try:
            async with self._committed(bump=True, seconds=TRANSACTION_SECONDS) as repos:
                yield repos
        finally:
            self.writes += 1

    @asynccontextmanager
    async def bookkeeping(self) -> AsyncIterator[Repos]:
        async with self._committed(bump=False, seconds=TRANSACTION_SECONDS) as repos:
            yield repos

    @asynccontextmanager
    async def _committed(self, bump: bool, seconds: float | None) -> AsyncIterator[Repos]:
        """A connection of the pool, BEGIN, the write lock, the block, the version raised,
        COMMIT, each statement sent by the time `seconds` after BEGIN; rolled back on any
        error.  The commit and the rollback run to their end even when the caller is
        cancelled: their outcome is what the database holds."""
        async with self.connection() as connection:
            deadline = None if seconds is None else time.monotonic() + seconds
            db = PostgresDb(connection, self.timings, deadline)
            transaction = await _begin(db)
            try:
                yield Repos(db, self.secrets)
                if bump:
                    await db.send("execute", "UPDATE store_version SET n = n + 1")
            except BaseException as exc:
                error = await _rolled_back(connection, transaction, exc)
                if error is None:
                    raise
                raise error from None
            with anyio.CancelScope(shield=True):
                try:
                    await self.timings.timed(transaction.commit())
                except Exception as exc:
                    raise commit_error(exc) from None

    @asynccontextmanager
    async def connection(self, reading: bool = False) -> AsyncIterator[Any]:
        """A connection of the pool, waited for at most CONNECT_TIMEOUT (a pool taken up by
        slow statements refuses the rest rather than queueing them), given back after."""
        try:
            connection = await self.timings.timed(self.pool.acquire(timeout=CONNECT_TIMEOUT))
        except Exception as exc:
            raise port_error(exc, reading) from None
        try:
            yield connection
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(connection)

    async def _release(self, connection: Any) -> None:
        """A connection that broke, or whose reset does not end in RELEASE_TIMEOUT, is closed
        rather than given back."""
        try:
            await self.pool.release(connection, timeout=RELEASE_TIMEOUT)
        except Exception:
            # A reset that failed may leave the connection counted as released already, when
            # it refuses to be closed; the pool replaces it either way.
            with contextlib.suppress(Exception):
                connection.terminate()

    # --- version, schema, keys -------------------------------------------------------------

    async def version(self) -> Version:
        seen = await self._seen.get(self._read_version)
        return seen, self.writes

    async def _read_version(self) -> int:
        row = await self.reads.db.one("SELECT n FROM store_version")
        return 0 if row is None else int(row["n"])

    async def ready(self) -> None:
        """The database answers, asked on a connection of its own: a pool taken up by slow
        calls is busy, not unready, and a load balancer told otherwise would take a loaded
        replica out of service (and every replica at once when the database is slow)."""
        async with self._probing:
            if self._closed:
                raise StoreUnavailable(CLOSED)
            try:
                if self._probe is None or self._probe.is_closed():
                    self._probe = await _connect(self.url)
                if self._closed:  # closed while the probe connected: it must not outlive it
                    raise StoreUnavailable(CLOSED)
                await self._probe.fetchval("SELECT n FROM store_version", timeout=CONNECT_TIMEOUT)
            except StoreUnavailable:
                self._drop_probe()
                raise
            except BaseException as exc:  # a cancelled probe is dropped too: left mid-query
                self._drop_probe()
                if isinstance(exc, Exception):
                    raise port_error(exc, True) from None
                raise

    def _drop_probe(self) -> None:
        if self._probe is not None:
            self._probe.terminate()
            self._probe = None

    async def schema_version(self) -> int:
        row = await self.reads.db.one("SELECT max(version) AS v FROM schema_migrations")
        return 0 if row is None or row["v"] is None else int(row["v"])

    async def migrate(self) -> list[int]:
        """Applies the migrations not applied yet, under an advisory lock so that processes
        started together migrate once; a schema newer than this code is refused."""
        async with self.pool.acquire() as connection:
            await connection.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
            try:
                return await _migrate(connection, self.describe)
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)

    async def _reseal_all(self) -> int:
        # Every sealed value in one transaction: as long as the store is large, not bounded.
        async with self._committed(bump=True, seconds=None) as tx:
            return await _reseal_all(tx, self.secrets)

    async def close(self) -> None:
        self._closed = True
        self._drop_probe()
        with anyio.CancelScope(shield=True):
            try:
                await asyncio.wait_for(self.pool.close(), CONNECT_TIMEOUT)
            except (TimeoutError, Exception):
                self.pool.terminate()


# What every connection of the store is opened with, the pool's and the readiness probe's.
CONNECTION_SETTINGS = {
    "timeout": CONNECT_TIMEOUT,
    "command_timeout": COMMAND_SECONDS,
    "server_settings": {
        "statement_timeout": str(STATEMENT_TIMEOUT_MS),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
        "application_name": "sp00ky-mcp",
    },
}


async def _connect(url: str) -> Any:
    return await asyncpg.connect(url, **CONNECTION_SETTINGS)


async def _pool(url: str, size: int) -> Any:
    try:
        return await asyncpg.create_pool(url, min_size=1, max_size=size, **CONNECTION_SETTINGS)
    except Exception as exc:
        raise StoreError(
            f"Cannot connect to the database at {public_url(url)}: {_said(exc)}; check the "
            "URL, that the server runs, and that its user may connect."
        ) from None


def _said(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__


async def _begin(db: PostgresDb) -> Any:
    """BEGIN and the write lock; rolled back when the lock is not had (a statement timeout,
    a cancellation), so the connection goes back to the pool with no transaction open."""
    connection = db.connection
    transaction = connection.transaction()
    try:
        await db.timed(transaction.start())
    except BaseException as exc:
        # Cut short (a cancellation, a lost reply), BEGIN may or may not have gone through:
        # the connection is closed rather than given back to the pool inside a transaction.
        _discard(connection)
        if isinstance(exc, Exception):
            raise port_error(exc) from None
        raise
    try:
        await db.one("SELECT pg_advisory_xact_lock(?)", WRITE_LOCK)
    except BaseException as exc:
        error = await _rolled_back(connection, transaction, exc)
        if error is None:
            raise
        raise error from None
    return transaction


async def _rolled_back(
    connection: Any, transaction: Any, exc: BaseException
) -> BaseException | None:
    """Rolls the transaction back after `exc`, even when cancelled (a connection that cannot
    be rolled back is closed, never given back to the pool inside a transaction); what to
    raise in its stead as the port says it (None: `exc` itself)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_TIMEOUT) as waited:
        if not await _quietly(transaction.rollback):
            _discard(connection)
    if waited.cancelled_caught:  # a database that stopped answering: its rollback never came
        _discard(connection)
    error = port_error(exc)
    return None if error is exc else error


def _discard(connection: Any) -> None:
    """Closed, never given back to the pool; one already gone (the pool has it back) is
    left as it is."""
    with contextlib.suppress(Exception):
        connection.terminate()


async def _quietly(step: Callable[[], Awaitable[object]]) -> bool:
    """A rollback on a connection that may be gone: asyncpg refuses one on a closed
    connection as soon as it is called, before there is anything to await.  Whether it
    went through."""
    try:
        await step()
    except Exception as exc:  # the error that matters is the one being raised
        log.debug("rollback failed: %s", exc)
        return False
    return True


async def _migrate(connection: Any, where: str) -> list[int]:
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version BIGINT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )
    done = {
        int(r["version"]) for r in await connection.fetch("SELECT version FROM schema_migrations")
    }
    newest = max(done, default=0)
    if newest > postgres_schema.LATEST:
        raise StoreError(
            f"The database at {where} has schema version {newest}, newer than this sp00ky-mcp "
            f"knows ({postgres_schema.LATEST}); upgrade sp00ky-mcp, or use another database."
        )
    ran: list[int] = []
    for version, sql in postgres_schema.MIGRATIONS:
        if version not in done:
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_migrations VALUES ($1, extract(epoch from now()))", version
                )
            ran.append(version)
    return ran


async def _secrets(
    pool: Any, data_dir: str | Path | None, key_file: str | Path | None
) -> SecretBox:
    """The key file's keys; one that cannot open the values already sealed refuses the start."""
    used = await _key_ids_in_use(pool)
    return await anyio.to_thread.run_sync(_load_secrets, data_dir, key_file, used)


def _load_secrets(
    data_dir: str | Path | None, key_file: str | Path | None, used: set[bytes]
) -> SecretBox:
    """The key file (`key_file`, else $SP00KY_MCP_SECRET_KEY_FILE, else secret.key in the
    data directory, made private if new)."""
    directory = Path(data_dir).expanduser() if data_dir else default_data_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Cannot create the directory {directory} for the secret key file: {exc.strerror}; "
            "pass a writable --data-dir or a --secret-key-file."
        ) from None
    try:
        return load_box(key_file_for(str(directory / "postgres"), key_file), used)
    except KeyFileError as exc:
        raise StoreError(str(exc)) from None


async def _key_ids_in_use(pool: Any) -> set[bytes]:
    ids: set[bytes] = set()
    async with pool.acquire() as connection:
        exists = await connection.fetchval("SELECT to_regclass('env_vars') IS NOT NULL")
        if not exists:
            return ids
        for column in SEALED:
            rows = await connection.fetch(
                f"SELECT DISTINCT substring({column.column} FROM 2 FOR {KEY_ID_BYTES}) AS id "
                f"FROM {column.table}"
            )
            ids.update(bytes(row["id"]) for row in rows)
    return ids


async def _reseal_all(tx: Repos, box: SecretBox) -> int:
    count = 0
    for column in SEALED:
        identity = ", ".join(column.identity)
        rows = await tx.db.all(f"SELECT {identity}, {column.column} AS sealed FROM {column.table}")
        where = " AND ".join(f"{part} = ?" for part in column.identity)
        for row in rows:
            key = [str(row[part]) for part in column.identity]
            value = box.seal(column, key, box.open(column, key, row["sealed"]))
            await tx.db.run(
                f"UPDATE {column.table} SET {column.column} = ? WHERE {where}", value, *key
            )
            count += 1
    return count
