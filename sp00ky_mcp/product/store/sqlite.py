"""The SQLite backend: the embedded default, one file in the data directory (WAL, foreign
keys on), zero set-up.

No SQLite call runs on the event loop.  Each connection belongs to a thread of its own (a
`Worker`): one writer, and one reader that serves reads outside transactions (WAL lets it
read while a write is under way).  A database locked by another process therefore delays
only the calls that must write, while every other connection is served.

Writes go through `transaction()`: BEGIN IMMEDIATE ... COMMIT, with synchronous=FULL for the
commit, so an acknowledged write is on disk; `bookkeeping()` commits without that fsync (its
records survive a crash of the process at once and a loss of power from the next
transaction on).  A store that cannot take writes is refused when it is opened, with a
sentence for whoever runs the server; one that stops taking them while serving fails the
call with `StoreUnavailable`, whose message names no path of the server's.

Secret values are sealed (see `secretbox`) under a key file that is loaded before the
migrations run, since one of them seals what an earlier version stored in clear.  The data
directory is private to its owner (0700) and the database files to theirs (0600).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mmap
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ..secretbox import (
    KeyFileError,
    SecretBox,
    ephemeral_box,
    key_file_for,
    load_box,
)
from . import sqlite_schema
from .port import (
    CLOSED,
    Busy,
    Clash,
    Row,
    Store,
    StoreError,
    StoreUnavailable,
    Timings,
    TurnMemo,
    Vanished,
    Version,
    default_data_dir,
)
from .repos import Repos

DB_NAME = "sp00ky.db"
log = logging.getLogger("sp00ky_mcp.store")
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]

# SQLite's result codes for a store that cannot take a write, whatever the SQL: what the
# operator is told at start, and what a client is told when a call's write fails.
_FAULTS = {
    "SQLITE_FULL": (
        "cannot grow: the disk is full; free some space or pass another --data-dir",
        "The server's data store is full, so nothing was changed; try again once its "
        "operator has freed disk space.",
    ),
    "SQLITE_READONLY": (
        "is read-only; make it and its directory writable, or pass another --data-dir",
        "The server's data store is read-only, so nothing was changed; its operator must "
        "make it writable.",
    ),
    "SQLITE_BUSY": (
        "is locked by another process; stop that process or pass another --data-dir",
        "The server's data store is locked by another process, so nothing was changed; "
        "try again shortly.",
    ),
    "SQLITE_IOERR": (
        "cannot be written (an I/O error); check the disk or pass another --data-dir",
        "The server's data store could not be written (an I/O error), so nothing was "
        "changed; its operator should check the disk.",
    ),
}
_FAULTS["SQLITE_LOCKED"] = _FAULTS["SQLITE_BUSY"]
_FAULTS["SQLITE_CANTOPEN"] = _FAULTS["SQLITE_IOERR"]
_CLASHES = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _fault(exc: sqlite3.Error) -> tuple[str, str] | None:
    """The two sentences for a fault of the store itself; None for an error of the SQL
    (extended codes, e.g. SQLITE_READONLY_DBMOVED, count as their primary code)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    for primary, sentences in _FAULTS.items():
        if name == primary or name.startswith(primary + "_"):
            return sentences
    return None


def port_error(exc: sqlite3.Error) -> StoreError:
    """A driver error as the port's: a clash, a vanished row, a fault of the store, or (an
    error of the SQL, a bug) a StoreError whose text the client never sees."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name in _CLASHES:
        return Clash(str(exc))
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return Vanished(str(exc))
    fault = _fault(exc)
    if fault is not None:
        return StoreUnavailable(fault[1])
    return StoreError(f"SQLite: {exc}")


class Worker:
    """One thread that owns one connection and runs the jobs it is given, in order; the
    event loop awaits each job's result without ever blocking on SQLite."""

    def __init__(
        self, name: str, connect: Callable[[], sqlite3.Connection], timings: Timings
    ) -> None:
        self.timings = timings
        self._jobs: queue.SimpleQueue[tuple[Job, asyncio.AbstractEventLoop | None, Any] | None]
        self._jobs = queue.SimpleQueue()
        self._connect = connect
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.db: sqlite3.Connection | None = None
        self.running = False
        self.stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    async def call(self, job: Job) -> Any:
        if self.stopped:
            raise StoreUnavailable(CLOSED)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((job, loop, future))
        return await self.timings.timed(future)

    def queue(self, job: Job) -> None:
        """Runs `job` after the jobs already given, with nobody waiting for it."""
        if not self.stopped:
            self._jobs.put((job, None, (threading.Event(), [])))

    def call_now(self, job: Job) -> Any:
        """Runs `job` and waits for it on this thread: for opening and closing, outside any
        event loop."""
        done = threading.Event()
        box: list[Any] = []
        self._jobs.put((job, None, (done, box)))
        done.wait()
        if box[0] is not None:
            raise box[0]
        return box[1]

    def stop(self) -> None:
        """Ends the thread once the jobs already given have run; a job given later fails at
        once (a task left over after closing must not wait for ever)."""
        if self.stopped:
            return
        self.stopped = True
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        try:
            self.db = self._connect()
        except BaseException as exc:  # reported to the opener, on its thread
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        while (item := self._jobs.get()) is not None:
            self._run(*item)
        self.db.close()
        while not self._jobs.empty():
            left = self._jobs.get()
            if left is not None:
                self._run(_closed, left[1], left[2])

    def _run(self, job: Job, loop: asyncio.AbstractEventLoop | None, waiter: Any) -> None:
        assert self.db is not None
        result: Any = None
        error: BaseException | None = None
        self.running = True
        try:
            result = job(self.db)
        except sqlite3.Error as exc:
            error = port_error(exc)
        except BaseException as exc:  # handed to the awaiting task, which raises it
            error = exc
        finally:
            self.running = False
        if loop is None:
            done, box = waiter
            box.extend([error, result])
            done.set()
            return
        with suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, waiter, result, error)


def _closed(db: sqlite3.Connection) -> Any:
    raise StoreUnavailable(CLOSED)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteDb:
    """The `Db` of a worker's connection."""

    dialect = "sqlite"

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.changed = 0

    async def one(self, sql: str, *params: Any) -> Row | None:
        row: Row | None = await self.worker.call(lambda db: db.execute(sql, params).fetchone())
        return row

    async def all(self, sql: str, *params: Any) -> list[Row]:
        rows: list[Row] = await self.worker.call(lambda db: db.execute(sql, params).fetchall())
        return rows

    async def run(self, sql: str, *params: Any) -> int:
        count: int = await self.worker.call(lambda db: db.execute(sql, params).rowcount)
        self.changed += max(count, 0)
        return count

    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        count: int = await self.worker.call(lambda db: db.executemany(sql, rows).rowcount)
        self.changed += max(count, 0)


async def _shielded(worker: Worker, job: Job) -> Any:
    """A job that must run to its end even when the caller is cancelled (a COMMIT, a
    ROLLBACK): its outcome is what the store holds."""
    with anyio.CancelScope(shield=True):
        return await worker.call(job)


class SqliteStore(Store):
    """One writer and one reader connection, each on a thread of its own (in memory: one
    connection for both, as SQLite keeps a memory database per connection)."""

    def __init__(self, path: str, key_file: str | Path | None = None) -> None:
        self.path = path
        self.describe = path
        self.applied_at_open: list[int] = []
        self._on_disk = path != ":memory:"
        if self._on_disk:
            _private_files(path)
        self.timings = Timings()
        self._writer = Worker("sp00ky-sqlite-writer", lambda: _connect(path), self.timings)
        self.secrets = self._load_secrets(key_file)
        self._writer.call_now(lambda db: _add_seal_function(db, lambda: self.secrets))
        self._reader = (
            Worker("sp00ky-sqlite-reader", lambda: _connect(path, reader=True), self.timings)
            if self._on_disk
            else self._writer
        )
        self._writing = anyio.Lock()
        self._file = _identity(path) if self._on_disk else None
        self._seen = TurnMemo()
        self._watch: WalWatch | None = None
        self._watchable = self._on_disk
        # The WAL index's header when the version was last read, and the version read.
        self._known: tuple[bytes, int] | None = None
        self.writes = 0
        self._reads = Repos(SqliteDb(self._reader), self.secrets)

    @classmethod
    async def open(
        cls, data_dir: str | Path | None, key_file: str | Path | None = None
    ) -> SqliteStore:
        """The store in `data_dir` (created private if missing), migrated."""
        return await anyio.to_thread.run_sync(cls.open_now, data_dir, key_file)

    @classmethod
    def open_now(
        cls, data_dir: str | Path | None, key_file: str | Path | None = None
    ) -> SqliteStore:
        directory = Path(data_dir).expanduser() if data_dir else default_data_dir()
        _make_directory(directory)
        store = cls(str(directory / DB_NAME), key_file)
        store.prepare_now()
        return store

    @classmethod
    def in_memory(cls) -> SqliteStore:
        store = cls(":memory:")
        store.prepare_now()
        return store

    def prepare_now(self) -> None:
        """Migrates, and refuses a store that cannot take writes; off any event loop."""
        try:
            self.applied_at_open = self._writer.call_now(
                lambda db: sqlite_schema.migrate(db, self.secrets, self.path)
            )
            if self._on_disk:
                self._writer.call_now(self._check_writable)
                _private_files(self.path)
        except BaseException:
            self.close_now()
            raise

    @property
    def reads(self) -> Repos:
        if self._reads.box is not self.secrets:
            self._reads = Repos(SqliteDb(self._reader), self.secrets)
        return self._reads

    def _load_secrets(self, key_file: str | Path | None) -> SecretBox:
        """The key file's keys, before any migration (one seals plaintext); a key file that
        cannot serve the values already sealed in the store refuses the start."""
        if not self._on_disk:
            return ephemeral_box()
        try:
            used = self._writer.call_now(sqlite_schema.key_ids_in_use)
            return load_box(key_file_for(self.path, key_file), used)
        except (KeyFileError, StoreError) as exc:
            self._writer.stop()
            raise StoreError(
                str(exc)
                if isinstance(exc, KeyFileError)
                else f"Cannot read the store at {self.path}: {exc}."
            ) from None

    def _check_writable(self, db: sqlite3.Connection) -> None:
        """A store that opens but cannot take writes (a read-only file, another process
        holding the write lock) is refused now rather than by every write call later.  The
        probe takes the write lock and changes nothing."""
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM schema_migrations WHERE 0")
        except sqlite3.Error as exc:
            raise StoreError(start_problem(self.path, exc, "Cannot write to")) from None
        finally:
            _roll_back(db)

    # --- transactions ----------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repos]:
        async with self._writing:
            try:
                async with self._committed(durable=self._on_disk, bump=True) as repos:
                    yield repos
            finally:
                self.writes += 1

    @asynccontextmanager
    async def bookkeeping(self) -> AsyncIterator[Repos]:
        async with self._writing, self._committed(durable=False, bump=False) as repos:
            yield repos

    @asynccontextmanager
    async def _committed(self, durable: bool, bump: bool) -> AsyncIterator[Repos]:
        """BEGIN IMMEDIATE, the block, the version raised (but for bookkeeping), COMMIT;
        rolled back on any error, so the write lock is never left held."""
        try:
            await self._writer.call(lambda db: _begin(db, durable))
        except BaseException:
            # Cancelled while BEGIN waited (on another process's lock, say), it may still go
            # through on the writer's thread, opening a transaction nobody would end, under
            # every later write: a rollback is queued behind it, before this process's write
            # lock is let go and another write can queue its own BEGIN.
            self._writer.queue(lambda db: _roll_back(db, durable))
            raise
        try:
            yield Repos(SqliteDb(self._writer), self.secrets)
        except BaseException:
            await _shielded(self._writer, lambda db: _roll_back(db, durable))
            raise
        await _shielded(self._writer, lambda db: _commit(db, durable, bump))

    async def version(self) -> Version:
        """The store's version counter, which every transaction of any process raises (and
        bookkeeping, which nothing cached is read from, does not), read once per turn of the
        loop; and this process's count of transactions.  In memory there is no other
        process."""
        if not self._on_disk:
            return 0, self.writes
        known, watch = self._known, self._watch
        if known is not None and watch is not None and watch.look() == known[0]:
            return known[1], self.writes  # nothing committed since: no read, no thread
        seen = await self._seen.get(self._read_version)
        return seen, self.writes

    async def ready(self) -> None:
        """Also, on disk, that the database file it has open is still the one its path names:
        writes to a file deleted or replaced under a running server would be lost to the next
        start."""
        await super().ready()
        if self._file is not None and not await self._reader.call(self._still_there):
            raise StoreUnavailable(f"The database file {self.path} was removed or replaced.")

    def _still_there(self, db: sqlite3.Connection) -> bool:
        try:
            return _identity(self.path) == self._file
        except OSError:
            return False

    async def _read_version(self) -> int:
        # The header is looked at before the read: the value read is at least that new, so
        # while the header stays as it is the value stays right.
        watch = self._watched()
        header = watch.look() if watch is not None else None
        value: int = await self._reader.call(
            lambda db: int(db.execute("SELECT n FROM store_version").fetchone()[0])
        )
        if header is not None:
            self._known = (header, value)
        return value

    def _watched(self) -> WalWatch | None:
        """The WAL index's header, mapped at the first read of the version (the index exists
        by then); without it, the version is read every turn as before."""
        if self._watch is None and self._watchable:
            try:
                self._watch = WalWatch(self.path)
            except (OSError, ValueError):
                self._watchable = False
        return self._watch

    async def schema_version(self) -> int:
        value: int = await self._writer.call(lambda db: max(sqlite_schema.applied(db), default=0))
        return value

    async def migrate(self) -> list[int]:
        applied: list[int] = await self._writer.call(
            lambda db: sqlite_schema.migrate(db, self.secrets, self.path)
        )
        return applied

    async def _reseal_all(self) -> int:
        async with self.transaction():
            count: int = await self._writer.call(
                lambda db: sqlite_schema.reseal_all(db, self.secrets)
            )
        # The old key's sealed values must not linger in the write-ahead log either.
        await self._writer.call(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        return count

    # --- the operator's (and the fault tests') handles on SQLite itself ----------------------

    @property
    def writer_busy(self) -> bool:
        """Whether the writer is running a job now (waiting on a lock, say)."""
        return self._writer.running

    async def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another process's lock before it fails."""
        milliseconds = int(seconds * 1000)
        for worker in {self._writer, self._reader}:
            await worker.call(lambda db: db.execute(f"PRAGMA busy_timeout = {milliseconds}"))

    async def page_count(self) -> int:
        count: int = await self._writer.call(
            lambda db: int(db.execute("PRAGMA page_count").fetchone()[0])
        )
        return count

    async def limit_pages(self, pages: int | None) -> None:
        """Caps the file at `pages` pages (None: SQLite's own cap): past it, a write fails
        exactly as it fails on a full disk."""
        cap = 1073741823 if pages is None else int(pages)
        await self._writer.call(lambda db: db.execute(f"PRAGMA max_page_count = {cap}"))

    async def integrity(self) -> str:
        """SQLite's verdict on the file: 'ok', or what is wrong."""
        verdict: str = await self._reader.call(
            lambda db: str(db.execute("PRAGMA integrity_check").fetchone()[0])
        )
        return verdict

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.close_now)

    def close_now(self) -> None:
        self._watchable = False
        if self._watch is not None:
            watch, self._watch, self._known = self._watch, None, None
            watch.close()
        if self._reader is not self._writer:
            self._reader.stop()
        self._writer.stop()


# The header of a WAL database's index (its -shm file, which every connection to it maps,
# in every process): two copies of a 48-byte header that each commit rewrites (the frame
# count, or the salts when the log starts over).  https://www.sqlite.org/walformat.html,
# section 2.1; the format is fixed, as processes of different SQLite versions share it.
WAL_INDEX_HEADER = 96


class WalWatch:
    """Whether anything may have been committed, by any process, since an earlier look: the
    WAL index's header through a read-only shared mapping, read with no system call."""

    def __init__(self, path: str) -> None:
        descriptor = os.open(path + "-shm", os.O_RDONLY)
        try:
            self._map = mmap.mmap(descriptor, WAL_INDEX_HEADER, access=mmap.ACCESS_READ)
        finally:
            os.close(descriptor)

    def look(self) -> bytes:
        """The header now; empty once closed (by a store closing on another thread), which
        matches no header looked at before, so the version is read and the closed store
        says so."""
        try:
            return self._map[:WAL_INDEX_HEADER]
        except ValueError:
            return b""

    def close(self) -> None:
        self._map.close()


def _begin(db: sqlite3.Connection, durable: bool) -> None:
    if durable:
        db.execute("PRAGMA synchronous = FULL")
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        _restore(db, durable)
        raise


def _commit(db: sqlite3.Connection, durable: bool, bump: bool) -> None:
    try:
        if bump:
            db.execute("UPDATE store_version SET n = n + 1")
        db.execute("COMMIT")
    except sqlite3.Error:
        _roll_back(db, durable)
        raise
    _restore(db, durable)


def _roll_back(db: sqlite3.Connection, durable: bool = False) -> None:
    """SQLite has already rolled back after some errors (a full disk, for one); a second
    ROLLBACK would fail and hide the error that matters."""
    if db.in_transaction:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
    _restore(db, durable)


def _restore(db: sqlite3.Connection, durable: bool) -> None:
    """Back to synchronous=NORMAL, for bookkeeping's commits."""
    if durable:
        with suppress(sqlite3.Error):
            db.execute("PRAGMA synchronous = NORMAL")


def start_problem(path: str, exc: sqlite3.Error, doing: str) -> str:
    fault = _fault(exc)
    if fault is not None:
        return f"The store at {path} {fault[0]}."
    return f"{doing} the store at {path}: {exc}."


def _identity(path: str) -> tuple[int, int]:
    """Which file `path` names: its device and inode."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _connect(path: str, reader: bool = False) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        # Deleted and overwritten content is zeroed, so a secret's old bytes (plaintext an
        # earlier version stored, a ciphertext under a retired key) do not linger in the file.
        db.execute("PRAGMA secure_delete = ON")
        db.execute("PRAGMA busy_timeout = 5000")
        if path != ":memory:":
            db.execute("PRAGMA journal_mode = WAL")
            # NORMAL for bookkeeping; a transaction raises it to FULL for its commit.
            db.execute("PRAGMA synchronous = NORMAL")
        if reader:
            db.execute("PRAGMA query_only = ON")
        return db
    except sqlite3.Error as exc:
        raise StoreError(
            f"Cannot open the store at {path}: {exc}; check that the data "
            "directory is writable, has free space and is not locked."
        ) from None


def _add_seal_function(db: sqlite3.Connection, box: Callable[[], SecretBox]) -> None:
    sqlite_schema.add_seal_function(db, box)


def _make_directory(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise StoreError(
            f"The data directory {directory} is a file, not a directory; pass another --data-dir."
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"Cannot create the data directory {directory}: {exc.strerror}; "
            "pass a writable --data-dir."
        ) from None
    _make_private(directory, 0o700, "data directory")


def _private_files(path: str) -> None:
    """The database is made 0600 before SQLite opens it: SQLite gives its -wal and -shm files
    the database's mode.  Existing files with wider modes are tightened."""
    # It may exist already, or not be makeable: then _connect says what to fix.
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, path + "-wal", path + "-shm"):
        _make_private(Path(name), 0o600, "database file")


def _make_private(path: Path, mode: int, what: str) -> None:
    """Tightens `path` to `mode` if it is wider and ours; warns if it is someone else's."""
    try:
        info = path.stat()
    except OSError:
        return
    if not stat.S_IMODE(info.st_mode) & 0o077:
        return
    wide = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.getuid():
        log.warning(
            "The %s %s can be read by other users (mode %04o) and belongs to another user; "
            "have its owner run chmod %o on it.",
            what,
            path,
            wide,
            mode,
        )
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        # On a read-only mount nothing can be written there either: opening the store says so.
        if exc.errno != errno.EROFS:
            log.warning("Cannot make the %s %s private (mode %04o): %s.", what, path, wide, exc)


__all__ = ["DB_NAME", "Busy", "SqliteStore", "port_error"]
