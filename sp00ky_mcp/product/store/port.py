"""The storage port: what the control plane, accounts and tools may ask of a store.

A store hands out repositories (`Repos`) that take and return typed records, never driver rows
or connections.  Reads outside a write go through `store.reads`; a write is

    async with store.transaction() as tx:
        ...  # every read and write of the block through tx

and commits when the block ends (durably: an acknowledged write survives a crash) or changes
nothing if it raises.  Bookkeeping that nothing cached is read from (the audit log, a token's
last use) goes through `store.bookkeeping()`, which is cheaper and leaves `version` alone.

Two backends implement it: SQLite (`sqlite`, the embedded default) and PostgreSQL
(`postgres`).  Only they hold SQL; only the SQLite one imports `sqlite3`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ...engine.errors import INTERNAL_ERROR, JsonRpcError, ToolError
from ..secretbox import Key, SecretBox, replace_keys

T = TypeVar("T")

if TYPE_CHECKING:
    from .repos import Repos

K = TypeVar("K")
V = TypeVar("V")
# Changes whenever what the store holds may have changed (see `Store.version`).
Version = tuple[int, int]
Row = Mapping[str, Any]


CLOSED = "The server's data store is closed, so nothing was changed."


class StoreError(Exception):
    """The store cannot be used; the message says what to fix (for whoever runs the server)."""


class StoreUnavailable(StoreError, JsonRpcError):
    """A call the store could not serve while serving (disk full, locked, database gone);
    nothing was changed.  It answers the request that needed the store, so its message is for
    the client."""

    def __init__(self, message: str) -> None:
        JsonRpcError.__init__(self, INTERNAL_ERROR, message)


class StoreInDoubt(StoreUnavailable):
    """The database stopped answering after a transaction asked it to commit: the change may
    have been made, or not, and only a read once it is back can tell."""


class Unstorable(StoreError, ToolError):
    """Text the backend cannot hold (PostgreSQL refuses the NUL character): an error result
    the caller can correct."""

    def __init__(self) -> None:
        ToolError.__init__(
            self,
            "An argument holds a NUL character (\\u0000), which cannot be stored, so nothing "
            "was changed; remove it and call again.",
        )


class Clash(StoreError):
    """A write broke a uniqueness rule: another writer got there first."""


class Vanished(StoreError):
    """A write referred to a row that another writer has just deleted."""


class Busy(StoreError):
    """Two transactions got in each other's way (a deadlock or serialization failure) and
    this one was rolled back; running it again may succeed."""


class Db(Protocol):
    """What a repository runs its SQL on: a transaction's connection, or the store's reader.
    SQL is written once, with `?` placeholders, in the subset both backends speak; the
    PostgreSQL executor renumbers the placeholders."""

    dialect: str
    # Rows its statements changed so far: in a transaction, whether the block wrote anything.
    changed: int

    async def one(self, sql: str, *params: Any) -> Row | None: ...

    async def all(self, sql: str, *params: Any) -> list[Row]: ...

    async def run(self, sql: str, *params: Any) -> int:
        """Runs a statement; how many rows it changed."""
        ...

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class Timings:
    """Where a store tells how long each statement (or SQLite job) took and whether it
    failed: the server's metrics, when kept."""

    def __init__(self) -> None:
        self.observe: Callable[[float, bool], None] = _unobserved

    async def timed(self, work: Awaitable[T]) -> T:
        started, ok = time.perf_counter(), False
        try:
            result = await work
            ok = True
            return result
        finally:
            self.observe(time.perf_counter() - started, ok)


def _unobserved(seconds: float, ok: bool) -> None:
    return None


class Store(ABC):
    """A storage backend.  `secrets` seals and opens secret values; `reads` serves reads
    outside a transaction; `describe` names the store for people (no credentials)."""

    secrets: SecretBox
    describe: str
    timings: Timings
    # The migrations that opening this store applied (`spky mcp migrate` reports them).
    applied_at_open: list[int]

    @property
    @abstractmethod
    def reads(self) -> Repos: ...

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Repos]:
        """All or nothing, durable on commit; see the module's docstring."""

    @abstractmethod
    def bookkeeping(self) -> AbstractAsyncContextManager[Repos]:
        """A transaction for records written on every call that nothing cached is read from:
        committed without waiting for the disk, and not counted as a change by `version`."""

    @abstractmethod
    async def version(self) -> Version:
        """Changes whenever what the store holds may have changed, in this process or another
        one: read caches keep values for as long as it stays the same."""

    async def ready(self) -> None:
        """Returns while the store can serve (readiness), raises StoreError when not."""
        await self.version()

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def migrate(self) -> list[int]:
        """Applies the migrations not applied yet, in order; the versions it applied."""

    async def rotate_secret_key(self) -> int:
        """Seals every secret value under a new key; how many it sealed again.  The new key
        reaches the disk before any value is sealed with it, and the old ones leave it only
        once the transaction that no longer needs them has committed."""
        box = self.secrets
        if box.path is None:
            raise StoreError("A store in memory has no key file to rotate.")
        new = Key.new()
        _write_keys(box.path, [new, *box.keys])
        self.secrets = SecretBox([new, *box.keys], box.path)
        count = await self._reseal_all()
        _write_keys(box.path, [new])
        self.secrets = SecretBox([new], box.path)
        return count

    @abstractmethod
    async def _reseal_all(self) -> int:
        """Seals every stored secret value again under `secrets`' current key, in one
        transaction; how many there were."""

    @abstractmethod
    async def close(self) -> None: ...


class TurnMemo:
    """A value read at most once per turn of the event loop: every request answered in one
    turn is concurrent with a change made meanwhile by another process, whichever way it
    sees it, and a value read after the change but kept under the older version is dropped
    at the next turn, so nothing older than its version is ever served."""

    def __init__(self) -> None:
        self._value: int | None = None
        self._reading: asyncio.Future[int] | None = None

    async def get(self, read: Any) -> int:
        if self._value is not None:
            return self._value
        if self._reading is None:
            self._reading = asyncio.ensure_future(read())
            self._reading.add_done_callback(self._keep)
        return await asyncio.shield(self._reading)

    def _keep(self, done: asyncio.Future[int]) -> None:
        self._reading = None
        if done.cancelled() or done.exception() is not None:
            return
        self._value = done.result()
        asyncio.get_running_loop().call_soon(self._forget)

    def _forget(self) -> None:
        self._value = None


class ReadCache(Generic[K, V]):
    """Values read from the store, kept while its version stays the same and all dropped when
    it changes, so nothing stale is ever served; at most `capacity` at a time (a full cache
    starts again empty)."""

    def __init__(self, store: Store, capacity: int) -> None:
        self.store = store
        self.capacity = capacity
        self._entries: dict[K, V] = {}
        self._version: Version = (-1, -1)

    async def get(self, key: K) -> tuple[V | None, Version]:
        """The value kept for `key`, if any, and the store's version now, which a value read
        from the store after this call is to be `put` with."""
        version = await self.store.version()
        if version != self._version:
            self._entries.clear()
            self._version = version
        return self._entries.get(key), version

    async def put(self, key: K, value: V, read_at: Version) -> None:
        """Keeps `value`, read from the store at version `read_at`, unless the store has
        changed since."""
        if read_at != self._version or await self.store.version() != read_at:
            return
        if len(self._entries) >= self.capacity:
            self._entries.clear()
        self._entries[key] = value

    def clear(self) -> None:
        self._entries.clear()


def default_data_dir() -> Path:
    """$SP00KY_MCP_DATA_DIR, else the platform's user data directory."""
    configured = os.environ.get("SP00KY_MCP_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return user_data_dir(sys.platform, os.environ, Path.home())


def user_data_dir(platform: str, environ: Mapping[str, str], home: Path) -> Path:
    """Where a user's application data lives, by the rules platformdirs follows: XDG on
    Linux and other Unixes, Application Support on macOS, the local AppData on Windows."""
    if platform == "darwin":
        return home / "Library" / "Application Support" / "sp00ky-mcp"
    if platform.startswith(("win32", "cygwin")):
        return Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "sp00ky-mcp"
    base = environ.get("XDG_DATA_HOME", "").strip()
    # XDG: a relative path is invalid and is ignored.
    return (Path(base) if base and Path(base).is_absolute() else home / ".local" / "share") / (
        "sp00ky-mcp"
    )


def database_url(given: str | None) -> str | None:
    """The PostgreSQL URL to use: `given` (--database-url), else $SP00KY_MCP_DATABASE_URL."""
    url = given or os.environ.get("SP00KY_MCP_DATABASE_URL") or None
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise StoreError(
            "The database URL must start with postgresql:// (e.g. "
            "postgresql://user:password@host:5432/sp00ky); leave it out to use the embedded "
            "SQLite store."
        )
    return url


async def open_store(
    data_dir: str | Path | None = None,
    key_file: str | Path | None = None,
    url: str | None = None,
) -> Store:
    """The store a server or command uses: PostgreSQL at `url` (or $SP00KY_MCP_DATABASE_URL),
    else SQLite in `data_dir`; migrated to the code's schema."""
    postgres_url = database_url(url)
    if postgres_url is not None:
        from .postgres import PostgresStore

        return await PostgresStore.open(postgres_url, data_dir, key_file)
    from .sqlite import SqliteStore

    return await SqliteStore.open(data_dir, key_file)


def _write_keys(path: Path, keys: Sequence[Key]) -> None:
    try:
        replace_keys(path, keys)
    except OSError as exc:
        raise StoreError(
            f"Cannot write the secret key file {path}: {exc.strerror}; make its directory "
            "writable, then rotate again."
        ) from None
