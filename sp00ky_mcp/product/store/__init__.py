"""Persistence: the embedded SQLite store (one file, WAL, foreign keys on, versioned
migrations).  The layers above use its small interface (transactions and a few lookups), so a
server database can implement the same interface later.

Writes go through `transaction()`, which is BEGIN IMMEDIATE ... COMMIT: a failed call rolls
back and changes nothing; an acknowledged write is on disk (synchronous=FULL in WAL mode),
except bookkeeping such as the audit log's, which the next transaction flushes (see `record`).

A store that cannot take writes is refused when it is opened, with a sentence for whoever runs
the server (read-only, locked by another process).  One that stops taking them while serving
(disk full, locked, I/O error) fails the write with `StoreUnavailable`, a JSON-RPC error whose
message says what happened without naming the server's paths.

Secret values are sealed (see `secretbox`) under a key file that the store loads before its
migrations run, since one of them seals what an earlier version stored in clear.  The data
directory is private to its owner (0700) and the database files to theirs (0600).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Generic, TypeVar

from ...engine.errors import INTERNAL_ERROR, JsonRpcError
from ..secretbox import (
    Key,
    KeyFileError,
    SecretBox,
    add_seal_function,
    ephemeral_box,
    key_file_for,
    key_ids_in_use,
    load_box,
    replace_keys,
    reseal_all,
)

DB_NAME = "sp00ky.db"
log = logging.getLogger("sp00ky_mcp.product.store")
K = TypeVar("K")
V = TypeVar("V")
Version = tuple[int, int]
ROWS_PER_INSERT = 100


class StoreError(Exception):
    """The data directory cannot be used; the message says what to fix."""


class StoreUnavailable(StoreError, JsonRpcError):
    """A write the store could not take while serving; nothing was changed.  It answers the
    request that needed the write, so its message is for the client."""

    def __init__(self, message: str) -> None:
        JsonRpcError.__init__(self, INTERNAL_ERROR, message)


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


def _fault(exc: sqlite3.Error) -> tuple[str, str] | None:
    """The two sentences for a fault of the store itself; None for an error of the SQL
    (extended codes, e.g. SQLITE_READONLY_DBMOVED, count as their primary code)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    for primary, sentences in _FAULTS.items():
        if name == primary or name.startswith(primary + "_"):
            return sentences
    return None


# A step in code: it gets the transaction's connection and the store's secret box, and says
# how many rows it rewrote that held plaintext (which the store then scrubs from its files).
Step = Callable[[sqlite3.Connection, SecretBox], int]
Migration = tuple[int, str | Step]
_MIGRATIONS: list[Migration] = []


def migration(version: int, step: str | Step) -> None:
    """Register a schema step (SQL, or code for what SQL cannot do).  Versions are applied in
    order, each in its own transaction."""
    if any(v == version for v, _ in _MIGRATIONS):
        raise ValueError(f"migration {version} registered twice")
    _MIGRATIONS.append((version, step))
    _MIGRATIONS.sort(key=lambda entry: entry[0])


migration(
    1,
    """
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'team')),
    plan TEXT NOT NULL DEFAULT 'hobby',
    created_at REAL NOT NULL
);
CREATE TABLE memberships (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE INDEX tokens_by_user ON tokens(user_id);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    token_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tenant_id TEXT,
    tool TEXT NOT NULL,
    arguments_digest TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_ms REAL NOT NULL
);
CREATE INDEX audit_by_token ON audit_log(token_id, at);
""",
)


def default_data_dir() -> Path:
    """$SP00KY_MCP_DATA_DIR, else the platform's user data directory (XDG on Linux)."""
    configured = os.environ.get("SP00KY_MCP_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sp00ky-mcp"


class Store:
    """One connection, serialised by a lock; SQLite does the durable part."""

    def __init__(self, path: str | Path, key_file: str | Path | None = None) -> None:
        """`key_file`: where the secret key lives (default: $SP00KY_MCP_SECRET_KEY_FILE, else
        secret.key beside the database)."""
        self.path = str(path)
        self._lock = threading.RLock()
        self._on_disk = self.path != ":memory:"
        if self._on_disk:
            _private_files(self.path)
        self._db = _connect(self.path)
        self.writes = 0
        self._seen: int | None = None
        self._scrub = False
        self.secrets = self._load_secrets(key_file)
        add_seal_function(self._db, lambda: self.secrets)
        self.migrate()
        if self._on_disk:
            self._check_writable()
            self._scrub_plaintext()
            _private_files(self.path)

    @classmethod
    def open(cls, data_dir: str | Path | None, key_file: str | Path | None = None) -> Store:
        directory = Path(data_dir).expanduser() if data_dir else default_data_dir()
        if directory.exists() and not directory.is_dir():
            raise StoreError(
                f"The data directory {directory} is a file, not a directory; "
                "pass another --data-dir."
            )
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the data directory {directory}: {exc.strerror}; "
                "pass a writable --data-dir."
            ) from None
        _make_private(directory, 0o700, "data directory")
        return cls(directory / DB_NAME, key_file)

    def _load_secrets(self, key_file: str | Path | None) -> SecretBox:
        """The key file's keys, before any migration (one seals plaintext); a key file that
        cannot serve the values already sealed in the store refuses the start."""
        if not self._on_disk:
            return ephemeral_box()
        try:
            with self._lock:
                used = key_ids_in_use(self._db)
            return load_box(key_file_for(self.path, key_file), used)
        except (KeyFileError, sqlite3.Error) as exc:
            self._db.close()
            message = (
                str(exc)
                if isinstance(exc, KeyFileError)
                else self._start_problem(exc, "Cannot read")
            )
            raise StoreError(message) from None

    def _scrub_plaintext(self) -> None:
        """Once plaintext an earlier version stored has been sealed, its old bytes may remain
        in free pages and the write-ahead log: VACUUM rewrites the file, and the checkpoints
        empty the log."""
        if not self._scrub:
            return
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._scrub = False

    def rotate_secret_key(self) -> int:
        """Seals every secret value under a new key and retires the old ones; how many values
        it sealed again.  The new key reaches the disk before any value is sealed with it, and
        the old ones leave it only once no value needs them."""
        box = self.secrets
        if box.path is None:
            raise StoreError("A store in memory has no key file to rotate.")
        new = Key.new()
        _write_keys(box.path, [new, *box.keys])
        self.secrets = SecretBox([new, *box.keys], box.path)
        with self.transaction() as db:
            count = reseal_all(db, self.secrets)
        _write_keys(box.path, [new])
        self.secrets = SecretBox([new], box.path)
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return count

    @classmethod
    def in_memory(cls) -> Store:
        return cls(":memory:")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def schema_version(self) -> int:
        return max(self.applied(), default=0)

    def applied(self) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT version FROM schema_migrations").fetchall()
        return {int(row[0]) for row in rows}

    def migrate(self) -> None:
        """Applies every registered step not applied yet.  Applied versions are recorded one
        by one, so a step registered later (by a module imported later) is never skipped."""
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
        done = self.applied()
        for version, sql in _MIGRATIONS:
            if version not in done:
                self._apply(version, sql)

    def _apply(self, version: int, step: str | Step) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if isinstance(step, str):
                    for statement in _statements(step):
                        self._db.execute(statement)
                elif step(self._db, self.secrets):
                    self._scrub = True
                self._db.execute(
                    "INSERT INTO schema_migrations VALUES (?, julianday('now'))", (version,)
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._roll_back()
                raise StoreError(self._start_problem(exc, "Cannot migrate")) from None

    def _check_writable(self) -> None:
        """A store that opens but cannot take writes (a read-only file, another process
        holding the write lock) is refused now rather than by every write call later.  The
        probe takes the write lock and changes nothing."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM schema_migrations WHERE 0")
            except sqlite3.Error as exc:
                raise StoreError(self._start_problem(exc, "Cannot write to")) from None
            finally:
                self._roll_back()

    def _start_problem(self, exc: sqlite3.Error, doing: str) -> str:
        fault = _fault(exc)
        if fault is not None:
            return f"The store at {self.path} {fault[0]}."
        return f"{doing} the store at {self.path}: {exc}."

    def _roll_back(self) -> None:
        """SQLite has already rolled back after some errors (a full disk, for one); a second
        ROLLBACK would fail and hide the error that matters."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: the block's writes commit together or not at all, and are on disk
        when the block ends (synchronous=FULL for this commit).  A write the store cannot take
        raises `StoreUnavailable`."""
        with self._lock, self._synced():
            try:
                with self._committed() as db:
                    yield db
            finally:
                self.writes += 1

    @contextmanager
    def _committed(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE, the block, COMMIT; rolled back on any error, so the write lock is
        never left held.  A fault of the store becomes `StoreUnavailable`."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._roll_back()
            _raise_unavailable(exc)
            raise
        except BaseException:
            self._roll_back()
            raise

    @contextmanager
    def _synced(self) -> Iterator[None]:
        if self.path == ":memory:":
            yield
            return
        self._db.execute("PRAGMA synchronous = FULL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous = NORMAL")

    def record(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Statements committed together, for bookkeeping that is written on every call and
        that nothing cached is read from (the audit log, a token's last use).  The commit has
        no fsync of its own, so it survives a crash of the process at once and a loss of power
        from the next `transaction` on, whose commit flushes the write-ahead log it sits in;
        and it leaves `version` alone."""
        with self._lock, self._committed() as db:
            for sql, params in statements:
                db.execute(sql, params)

    def version(self) -> Version:
        """Changes whenever what the store holds may have changed: another connection
        committed (SQLite's PRAGMA data_version), or this one did through `transaction`.
        Caches of rows are kept for as long as it stays the same.

        On the event loop, another connection's commit is read once per turn of the loop:
        requests answered in one turn are concurrent with such a commit whichever way they
        see it, and a value read after it but kept under the earlier version is dropped at
        the next turn, so nothing older than its version is ever served."""
        with self._lock:
            seen = self._seen
            if seen is None:
                seen = int(self._db.execute("PRAGMA data_version").fetchone()[0])
                self._keep_until_next_turn(seen)
            return seen, self.writes

    def _keep_until_next_turn(self, seen: int) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._seen = seen
        loop.call_soon(self._forget_seen)

    def _forget_seen(self) -> None:
        self._seen = None

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())


def inserts(
    table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> Iterator[tuple[str, list[Any]]]:
    """`rows` as multi-row INSERT statements for `record`: one statement per hundred rows
    costs a third less than one per row, and stays under SQLite's oldest limit of 999
    parameters for tables of up to nine columns."""
    into = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    one = "(" + ", ".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        yield into + ", ".join([one] * len(chunk)), [value for row in chunk for value in row]


class ReadCache(Generic[K, V]):
    """Values read from the store, kept while its version stays the same and all dropped when
    it changes, so nothing stale is ever served; at most `capacity` at a time (a full cache
    starts again empty)."""

    def __init__(self, store: Store, capacity: int) -> None:
        self.store = store
        self.capacity = capacity
        self._entries: dict[K, V] = {}
        self._version: Version = (-1, -1)

    def get(self, key: K) -> tuple[V | None, Version]:
        """The value kept for `key`, if any, and the store's version now, which a value read
        from the store after this call is to be `put` with."""
        version = self.store.version()
        if version != self._version:
            self._entries.clear()
            self._version = version
        return self._entries.get(key), version

    def put(self, key: K, value: V, read_at: Version) -> None:
        """Keeps `value`, read from the store at version `read_at`, unless the store has
        changed since."""
        if read_at != self._version or self.store.version() != read_at:
            return
        if len(self._entries) >= self.capacity:
            self._entries.clear()
        self._entries[key] = value

    def clear(self) -> None:
        self._entries.clear()


def _connect(path: str) -> sqlite3.Connection:
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
            # NORMAL for `record`'s bookkeeping; `transaction` raises it to FULL for its commit.
            db.execute("PRAGMA synchronous = NORMAL")
        return db
    except sqlite3.Error as exc:
        raise StoreError(
            f"Cannot open the store at {path}: {exc}; check that the data "
            "directory is writable, has free space and is not locked."
        ) from None


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


def _write_keys(path: Path, keys: Sequence[Key]) -> None:
    try:
        replace_keys(path, keys)
    except OSError as exc:
        raise StoreError(
            f"Cannot write the secret key file {path}: {exc.strerror}; make its directory "
            "writable, then rotate again."
        ) from None


def _raise_unavailable(exc: sqlite3.Error) -> None:
    """A fault of the store becomes `StoreUnavailable`; an error of the SQL stays as it is."""
    fault = _fault(exc)
    if fault is not None:
        raise StoreUnavailable(fault[1]) from None


def _statements(sql: str) -> list[str]:
    return [part.strip() for part in sql.split(";") if part.strip()]
